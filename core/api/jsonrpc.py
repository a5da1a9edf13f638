"""JSON-RPC 2.0 dispatch, independent of the transport.

Standard errors follow the spec (-32700 parse error, -32600 invalid request, -32601
method not found, -32602 invalid params, -32603 internal error); Godel's own errors
use -32000..-32099 with a ``data`` object that names the problem.

Streaming methods send JSON-RPC notifications (``{"method": "stream", "params":
{"request_id": ID, "data": ...}}``) on the same connection before the response.
The wire constants live in ``core.api.protocol`` (the thin client needs them without
pydantic); they are re-exported here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from core.api.protocol import (
    EXIT_ALREADY_RUNNING,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_MESSAGE,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    STREAM_METHOD,
)
from core.errors import GodelError

__all__ = [
    "EXIT_ALREADY_RUNNING",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "JSON",
    "MAX_MESSAGE",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "STREAM_METHOD",
    "CallContext",
    "Emit",
    "Handler",
    "Method",
    "NoParams",
    "RpcMethods",
    "error_response",
]

log = logging.getLogger("godel.rpc")

JSON = Any
Emit = Callable[[JSON], Awaitable[None]]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class CallContext:
    """Who is calling: recorded as the actor of every audited action."""

    actor: str
    request_id: JSON = None


Handler = Callable[[Any, CallContext, Emit], Awaitable[JSON]]


@dataclass(frozen=True)
class Method:
    name: str
    params: type[BaseModel]
    handler: Handler
    streaming: bool
    doc: str


def error_response(req_id: JSON, code: int, message: str, data: JSON = None) -> dict[str, JSON]:
    err: dict[str, JSON] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": req_id, "error": err}


def _jsonable(value: JSON) -> JSON:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _validation_data(e: ValidationError) -> list[dict[str, JSON]]:
    return [
        {"param": _param_name(err["loc"]), "problem": err["msg"]}
        for err in e.errors(include_url=False)
    ]


def _param_name(loc: tuple[int | str, ...]) -> str:
    name = ".".join(str(p) for p in loc) or "(params)"
    # repr for a name with a newline or other control character: the error is one line.
    return name if name.isprintable() else repr(name)


class RpcMethods:
    def __init__(self) -> None:
        self.methods: dict[str, Method] = {}

    def method(
        self, name: str, params: type[BaseModel] = NoParams, *, streaming: bool = False
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.methods[name] = Method(name, params, fn, streaming, (fn.__doc__ or "").strip())
            return fn

        return deco

    async def handle_line(self, line: bytes | str, actor: str, emit_raw: Emit) -> JSON:
        """Handle one framed message; returns the response (None for notifications)."""
        try:
            msg = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return error_response(None, PARSE_ERROR, f"Parse error: {e}")
        except RecursionError:
            return error_response(
                None, INVALID_REQUEST, "Invalid Request: nested too deep to be a request"
            )
        if isinstance(msg, list):
            if not msg:
                return error_response(None, INVALID_REQUEST, "Invalid Request: empty batch")
            out = [await self.handle_one(m, actor, emit_raw) for m in msg]
            replies = [r for r in out if r is not None]
            return replies or None
        return await self.handle_one(msg, actor, emit_raw)

    async def handle_one(self, msg: JSON, actor: str, emit_raw: Emit) -> JSON:
        if not isinstance(msg, dict):
            return error_response(None, INVALID_REQUEST, "Invalid Request: not an object")
        req_id = msg.get("id")
        is_notification = "id" not in msg
        if req_id is not None and (
            isinstance(req_id, bool) or not isinstance(req_id, (str, int, float))
        ):
            return error_response(
                None, INVALID_REQUEST, "Invalid Request: id must be a string or number"
            )
        if msg.get("jsonrpc") != "2.0":
            return error_response(
                req_id, INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"'
            )
        name = msg.get("method")
        if not isinstance(name, str):
            return error_response(
                req_id, INVALID_REQUEST, 'Invalid Request: "method" must be a string'
            )
        params = msg.get("params", {})
        if not isinstance(params, dict):
            return error_response(
                req_id, INVALID_PARAMS, "Invalid params: params must be an object (named params)"
            )
        method = self.methods.get(name)
        if method is None:
            return error_response(
                req_id,
                METHOD_NOT_FOUND,
                # repr for a name with a newline or other control character: one line.
                f"Method not found: {name if name.isprintable() else repr(name)}",
                {"method": name},
            )
        try:
            parsed = method.params.model_validate(params)
        except ValidationError as e:
            problems = _validation_data(e)
            first = problems[0]
            return error_response(
                req_id,
                INVALID_PARAMS,
                f"Invalid params: {first['param']}: {first['problem']}",
                {"method": name, "problems": problems},
            )

        async def emit(data: JSON) -> None:
            await emit_raw(
                {
                    "jsonrpc": "2.0",
                    "method": STREAM_METHOD,
                    "params": {"request_id": req_id, "data": _jsonable(data)},
                }
            )

        ctx = CallContext(actor=actor, request_id=req_id)
        try:
            result = await method.handler(parsed, ctx, emit)
        except GodelError as e:
            return None if is_notification else error_response(req_id, e.code, e.message, e.data)
        except Exception as e:
            log.exception("internal error in %s", name)
            return (
                None
                if is_notification
                else error_response(
                    req_id,
                    INTERNAL_ERROR,
                    f"Internal error: {type(e).__name__}: {e}",
                    {"method": name},
                )
            )
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": req_id, "result": _jsonable(result)}
