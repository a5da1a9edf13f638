"""A scripted model server: real HTTP on loopback, speaking the OpenAI chat-completions and
the Anthropic Messages APIs (streaming and not), answering from a script of rules.

It stands in for a real model in tests, demos and ``godel model serve``: pi and Godel's own
clients talk to it exactly as they would to a provider. Every answer is a pure function of
the request (plus per-rule request counters for ``nth_request``), so the same requests
always produce the same bytes: no clock, no random ids.

Why threads and not asyncio: the server must never block the event loop of whoever embeds
it (the daemon's, or a test's), and replies deliberately sleep (``delay_s``,
``chunk_delay_s``). A stdlib ``ThreadingHTTPServer`` in a daemon thread, one thread per
connection, keeps all of that off the loop, works the same from sync and async code, and
needs no dependency.

Script format (JSON, or ``Script(rules=[...])`` in code)::

    {"rules": [
      {"match": {"user_regex": "^run:\\s*(?P<command>.+)$", "last": "user"},
       "reply": {"tool_calls": [{"name": "bash", "arguments": {"command": "{command}"}}]}},
      {"match": {"tool_name": "bash"},
       "reply": {"text": "Ran `{tool_args.command}`; output:\\n{tool_output}"}}
    ]}

Rules are tried in order; the first whose ``match`` holds answers. Match keys (all optional,
all must hold): ``user_regex`` (searched in the latest user message text),
``tool_result_regex`` (searched in the latest tool result; the last message must be a tool
result), ``tool_name`` (the tool whose result is the last message), ``last`` ("user" or
"tool_result": the kind of the last message), ``model`` (exact), ``nth_request`` (1-based:
only the Nth request, counting every request so far that met the rule's other conditions,
whichever rule answered it).

Templates (reply ``text``, error ``message``/``status``, tool names and string values in
tool ``arguments``) may use ``{1}``/``{name}`` (regex groups: numbered ones from
``user_regex`` if the rule has one, else from ``tool_result_regex``; named ones from both),
``{message}`` (latest user text), ``{tool_output}``, ``{tool_name}``, ``{model}`` and
``{tool_args.KEY}`` (an argument of the assistant tool call whose result is the latest, found
in the request's history since the server keeps no conversation state). Only placeholders of
that shape are replaced; other braces are literal text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import select
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from core.errors import ConfigError

log = logging.getLogger("godel.llm.scripted")

ApiName = Literal["openai", "anthropic"]
MessageKind = Literal["system", "user", "assistant", "tool_result"]

_PLACEHOLDER = re.compile(r"\{(\d+|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)\}")
_BUILTIN_VARS = frozenset({"message", "tool_output", "tool_name", "model"})
_DISCONNECT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


# --- the script --------------------------------------------------------------------------


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_regex: str | None = None
    tool_result_regex: str | None = None
    tool_name: str | None = None
    last: Literal["user", "tool_result"] | None = None
    model: str | None = None
    nth_request: int | None = Field(default=None, ge=1)


class ToolCallReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ErrorReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int | str  # an HTTP status, or a template such as "{status}"
    message: str = ""  # template; default "scripted error <status>"
    type: str | None = None  # the provider's error type; default derived from the status
    retry_after: float | None = Field(default=None, ge=0)  # sent as Retry-After (seconds)

    @model_validator(mode="after")
    def _error_status(self) -> ErrorReply:
        if isinstance(self.status, int) and not 400 <= self.status <= 599:
            raise ValueError(f"error.status {self.status} is not an HTTP error status (400-599)")
        return self


class UsageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: int | None = Field(default=None, ge=0)  # None: the chars/4 estimate
    output_tokens: int | None = Field(default=None, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    tool_calls: list[ToolCallReply] = Field(default_factory=list)
    error: ErrorReply | None = None
    delay_s: float = Field(default=0.0, ge=0)
    chunk_delay_s: float = Field(default=0.0, ge=0)
    usage: UsageSpec | None = None
    # Neutral ("stop", "tool_use", "length") or a raw provider value, sent as is.
    stop_reason: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Reply:
        if self.error is not None and (self.text is not None or self.tool_calls):
            raise ValueError("a reply with 'error' cannot also have 'text' or 'tool_calls'")
        if self.error is None and self.text is None and not self.tool_calls:
            raise ValueError("a reply needs 'text', 'tool_calls' or 'error'")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    match: Match = Field(default_factory=Match)
    reply: Reply

    _user_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _tool_re: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> Rule:
        self._user_re = _compile(self.match.user_regex, "user_regex")
        self._tool_re = _compile(self.match.tool_result_regex, "tool_result_regex")
        numbered = self._user_re or self._tool_re
        n_groups = numbered.groups if numbered else 0
        names = set(_BUILTIN_VARS)
        for rx in (self._user_re, self._tool_re):
            if rx is not None:
                names.update(rx.groupindex)
        for where, template in self._templates():
            for var in _PLACEHOLDER.findall(template):
                if var.isdigit():
                    if int(var) > n_groups:
                        raise ValueError(
                            f"{where}: {{{var}}} but the regex has only {n_groups} group(s)"
                        )
                elif "." in var:
                    if not var.startswith("tool_args."):
                        raise ValueError(f"{where}: unknown template variable {{{var}}}")
                elif var not in names:
                    raise ValueError(
                        f"{where}: unknown template variable {{{var}}} (known: "
                        f"{', '.join(sorted(names))}, tool_args.KEY, group numbers)"
                    )
        return self

    def _templates(self) -> Iterator[tuple[str, str]]:
        r = self.reply
        if r.text is not None:
            yield "reply.text", r.text
        for i, call in enumerate(r.tool_calls):
            yield f"reply.tool_calls[{i}].name", call.name
            yield from _strings(call.arguments, f"reply.tool_calls[{i}].arguments")
        if r.error is not None:
            yield "reply.error.message", r.error.message
            if isinstance(r.error.status, str):
                yield "reply.error.status", r.error.status


def _compile(pattern: str | None, what: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"match.{what}: invalid regex {pattern!r}: {e}") from e


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


class Script(BaseModel):
    """An ordered list of rules; the first that matches a request answers it."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    rules: list[Rule]

    @classmethod
    def load(cls, path: Path) -> Script:
        """Read a script file: ``{"rules": [...]}`` or a bare list of rules. Problems raise
        ``ConfigError`` naming the file and the rule index."""
        path = Path(path)
        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as e:
            raise ConfigError(
                f"{path}: cannot read script: {e.strerror or e}", file=str(path), problem=str(e)
            ) from e
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}",
                file=str(path),
                problem=e.msg,
            ) from e
        if isinstance(data, list):
            data = {"rules": data}
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = list(err["loc"])
            where = ""
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                where = f"rule {loc[1]}"
                rest = ".".join(str(p) for p in loc[2:])
                key = f"rules[{loc[1]}]" + (f".{rest}" if rest else "")
                if rest:
                    where += f" ({rest})"
            else:
                key = ".".join(str(p) for p in loc) or "(top level)"
                where = key
            problem = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(
                f"{path}: {where}: {problem}", file=str(path), key=key, problem=problem
            ) from e

    @classmethod
    def default(cls) -> Script:
        """The bundled script (``core/llm/scripts/default.json``)."""
        ref = resources.files("core.llm").joinpath("scripts/default.json")
        with resources.as_file(ref) as p:
            return cls.load(p)


# --- requests, normalised ----------------------------------------------------------------


@dataclass
class _Call:
    id: str
    name: str
    args: dict[str, Any]
    raw: str


@dataclass
class _Msg:
    kind: MessageKind
    text: str = ""
    calls: list[_Call] = field(default_factory=list)
    call_id: str | None = None
    tool_name: str | None = None


def _text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of parts/blocks with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return "\n".join(parts)
    return ""


def _parse_args(raw: Any) -> tuple[dict[str, Any], str]:
    if isinstance(raw, dict):
        return raw, json.dumps(raw)
    text = raw if isinstance(raw, str) else ""
    try:
        parsed = json.loads(text) if text else {}
    except json.JSONDecodeError:
        parsed = {}
    return (parsed if isinstance(parsed, dict) else {}), text


def _openai_messages(body: dict[str, Any]) -> list[_Msg]:
    out: list[_Msg] = []
    names: dict[str, str] = {}
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role in ("system", "developer"):
            out.append(_Msg("system", _text_of(m.get("content"))))
        elif role == "user":
            out.append(_Msg("user", _text_of(m.get("content"))))
        elif role == "assistant":
            calls = []
            for i, tc in enumerate(m.get("tool_calls") or []):
                if not isinstance(tc, dict):
                    continue
                fn = tc.get("function") or {}
                args, raw = _parse_args(fn.get("arguments"))
                call = _Call(str(tc.get("id") or f"call_{i}"), str(fn.get("name") or ""), args, raw)
                names[call.id] = call.name
                calls.append(call)
            out.append(_Msg("assistant", _text_of(m.get("content")), calls))
        elif role in ("tool", "function"):
            call_id = m.get("tool_call_id")
            name = m.get("name") or names.get(str(call_id))
            out.append(_Msg("tool_result", _text_of(m.get("content")), [], call_id, name))
    return out


def _anthropic_messages(body: dict[str, Any]) -> list[_Msg]:
    out: list[_Msg] = []
    if body.get("system"):
        out.append(_Msg("system", _text_of(body["system"])))
    names: dict[str, str] = {}
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        if m.get("role") == "user":
            texts = []
            for b in blocks:
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "tool_result":
                    call_id = b.get("tool_use_id")
                    name = names.get(str(call_id))
                    out.append(_Msg("tool_result", _text_of(b.get("content")), [], call_id, name))
                elif isinstance(b.get("text"), str):
                    texts.append(b["text"])
            if texts or not any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks
            ):
                out.append(_Msg("user", "\n".join(texts)))
        elif m.get("role") == "assistant":
            texts, calls = [], []
            for b in blocks:
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "tool_use":
                    args, raw = _parse_args(b.get("input"))
                    call = _Call(str(b.get("id") or ""), str(b.get("name") or ""), args, raw)
                    names[call.id] = call.name
                    calls.append(call)
                elif b.get("type") == "text" and isinstance(b.get("text"), str):
                    texts.append(b["text"])
            out.append(_Msg("assistant", "\n".join(texts), calls))
    return out


@dataclass
class _Context:
    """What rules match on and templates render from, for one request."""

    api: ApiName
    model: str
    messages: list[_Msg]

    @property
    def last(self) -> MessageKind | None:
        for m in reversed(self.messages):
            if m.kind != "system":
                return m.kind
        return None

    @property
    def user_text(self) -> str | None:
        return next((m.text for m in reversed(self.messages) if m.kind == "user"), None)

    @property
    def tool_result(self) -> _Msg | None:
        return next((m for m in reversed(self.messages) if m.kind == "tool_result"), None)

    @property
    def tool_call(self) -> _Call | None:
        """The assistant tool call answered by the latest tool result (else the latest call)."""
        result = self.tool_result
        calls = [c for m in self.messages if m.kind == "assistant" for c in m.calls]
        if result is not None and result.call_id is not None:
            for c in reversed(calls):
                if c.id == result.call_id:
                    return c
        return calls[-1] if calls else None

    @property
    def turn(self) -> int:
        return 1 + sum(1 for m in self.messages if m.kind == "assistant")

    def request_chars(self) -> int:
        return sum(
            len(m.text) + sum(len(c.name) + len(c.raw) for c in m.calls) for m in self.messages
        )


def _render(template: str, variables: dict[str, str], args: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var.startswith("tool_args."):
            value = args.get(var.removeprefix("tool_args."))
            if value is None:
                return ""
            return value if isinstance(value, str) else json.dumps(value)
        return variables.get(var, m.group(0))

    return _PLACEHOLDER.sub(sub, template)


def _render_value(value: Any, variables: dict[str, str], args: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _render(value, variables, args)
    if isinstance(value, dict):
        return {k: _render_value(v, variables, args) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, variables, args) for v in value]
    return value


# --- answers -------------------------------------------------------------------------------


@dataclass
class _Answer:
    """A rendered reply, provider-neutral."""

    text: str
    calls: list[tuple[str, str, dict[str, Any]]]  # (id, name, arguments)
    stop_reason: str  # neutral: stop | tool_use | length, or a raw provider value
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    chunk_delay_s: float


@dataclass
class _ErrorAnswer:
    status: int
    message: str
    type: str | None = None
    retry_after: float | None = None


_OPENAI_STOP = {"stop": "stop", "tool_use": "tool_calls", "length": "length"}
_ANTHROPIC_STOP = {"stop": "end_turn", "tool_use": "tool_use", "length": "max_tokens"}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def _error_body(api: ApiName | None, err: _ErrorAnswer) -> dict[str, Any]:
    if api == "anthropic":
        etype = err.type or _ANTHROPIC_ERROR_TYPES.get(err.status, "api_error")
        return {"type": "error", "error": {"type": etype, "message": err.message}}
    etype = err.type or _OPENAI_ERROR_TYPES.get(
        err.status, "server_error" if err.status >= 500 else "invalid_request_error"
    )
    return {"error": {"message": err.message, "type": etype, "param": None, "code": None}}


def _split_words(text: str) -> list[str]:
    """Streaming pieces: one word each, with the whitespace that follows it."""
    return [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]


def _split_n(text: str, n: int = 4) -> list[str]:
    """Split into up to n nearly equal pieces, so tool arguments arrive in fragments."""
    if not text:
        return []
    size = math.ceil(len(text) / n)
    return [text[i : i + size] for i in range(0, len(text), size)]


# A frame is (bytes, is_content); chunk_delay_s paces the content frames (text and tool
# argument pieces), so "slow:" costs chunk_delay_s per word and nothing more.
Frame = tuple[bytes, bool]


def _sse(obj: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(obj).encode() + b"\n\n"


def _openai_stream(a: _Answer, model: str, turn: int, include_usage: bool) -> list[Frame]:
    base: dict[str, Any] = {
        "id": f"chatcmpl-scripted-{turn}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, content: bool = True) -> Frame:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({**base, "choices": [choice]}), content

    frames = [chunk({"role": "assistant", "content": ""}, content=False)]
    frames += [chunk({"content": piece}) for piece in _split_words(a.text)]
    for i, (call_id, name, args) in enumerate(a.calls):
        first = {"index": i, "id": call_id, "type": "function"}
        frames.append(
            chunk({"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]})
        )
        for piece in _split_n(json.dumps(args)):
            frames.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    frames.append(chunk({}, _OPENAI_STOP.get(a.stop_reason, a.stop_reason), content=False))
    if include_usage:
        frames.append((_sse({**base, "choices": [], "usage": _openai_usage(a)}), False))
    frames.append((b"data: [DONE]\n\n", False))
    return frames


def _openai_usage(a: _Answer) -> dict[str, Any]:
    prompt = a.input_tokens + a.cache_read_tokens  # OpenAI counts cached tokens in the prompt
    return {
        "prompt_tokens": prompt,
        "completion_tokens": a.output_tokens,
        "total_tokens": prompt + a.output_tokens,
        "prompt_tokens_details": {"cached_tokens": a.cache_read_tokens},
    }


def _openai_json(a: _Answer, model: str, turn: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": a.text if a.text else None}
    if a.calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": n, "arguments": json.dumps(args)}}
            for cid, n, args in a.calls
        ]
    return {
        "id": f"chatcmpl-scripted-{turn}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _OPENAI_STOP.get(a.stop_reason, a.stop_reason),
            }
        ],
        "usage": _openai_usage(a),
    }


def _anthropic_usage(a: _Answer) -> dict[str, int]:
    return {
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "cache_creation_input_tokens": a.cache_write_tokens,
        "cache_read_input_tokens": a.cache_read_tokens,
    }


def _anthropic_stream(a: _Answer, model: str, turn: int) -> list[Frame]:
    message: dict[str, Any] = {
        "id": f"msg_scripted_{turn}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**_anthropic_usage(a), "output_tokens": 0},
    }
    frames: list[Frame] = [
        (_sse({"type": "message_start", "message": message}, "message_start"), False)
    ]
    index = 0

    def add(name: str, obj: dict[str, Any], content: bool = False) -> None:
        frames.append((_sse({"type": name, **obj}, name), content))

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        add("content_block_start", {"index": index, "content_block": start})
        for d in deltas:
            add("content_block_delta", {"index": index, "delta": d}, content=True)
        add("content_block_stop", {"index": index})
        index += 1

    if a.text or not a.calls:
        block(
            {"type": "text", "text": ""},
            [{"type": "text_delta", "text": p} for p in _split_words(a.text)],
        )
    for call_id, name, args in a.calls:
        block(
            {"type": "tool_use", "id": call_id, "name": name, "input": {}},
            [{"type": "input_json_delta", "partial_json": p} for p in _split_n(json.dumps(args))],
        )
    stop = _ANTHROPIC_STOP.get(a.stop_reason, a.stop_reason)
    add(
        "message_delta",
        {
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": a.output_tokens},
        },
    )
    add("message_stop", {})
    return frames


def _anthropic_json(a: _Answer, model: str, turn: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if a.text or not a.calls:
        content.append({"type": "text", "text": a.text})
    content += [
        {"type": "tool_use", "id": cid, "name": n, "input": args} for cid, n, args in a.calls
    ]
    return {
        "id": f"msg_scripted_{turn}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP.get(a.stop_reason, a.stop_reason),
        "stop_sequence": None,
        "usage": _anthropic_usage(a),
    }


# --- the server ----------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the server saw it. ``headers`` keys are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None if it was not JSON)
    api: ApiName | None  # None: a path the server does not serve
    api_key: str | None = None  # from Authorization: Bearer / x-api-key
    rule: int | None = None  # index of the rule that answered
    status: int = 0
    disconnected: bool = False  # the client hung up before the answer was complete
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


class _ClientGone(Exception):
    pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (*_DISCONNECT_ERRORS, _ClientGone)):
            log.debug("client %s hung up: %r", client_address, exc)
        else:
            log.exception("scripted server: error answering %s", client_address)


class _IPv6HTTPServer(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    server_version = "GodelScripted/1"

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, add=False)
        with contextlib.suppress(*_DISCONNECT_ERRORS, OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def version_string(self) -> str:
        return self.server_version  # no Python version, and stable bytes

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Thu, 01 Jan 1970 00:00:00 GMT"  # deterministic responses

    def do_GET(self) -> None:
        if self.path.split("?")[0] in ("/", "/health"):
            self._send_json(200, {"ok": True, "server": "godel-scripted"})
        else:
            self._send_json(404, _error_body(None, _ErrorAnswer(404, f"no route {self.path}")))

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        api: ApiName | None = None
        if path in ("/v1/chat/completions", "/chat/completions"):
            api = "openai"
        elif path == "/v1/messages":
            api = "anthropic"
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        rec = RecordedRequest("POST", self.path, headers, body, api, _api_key(headers))
        owner = self.server.owner
        owner.requests.append(rec)
        try:
            self._answer(rec, body)
        except (*_DISCONNECT_ERRORS, _ClientGone) as e:
            rec.disconnected = True
            self.close_connection = True
            log.debug("client hung up during %s: %r", self.path, e)
        except Exception as e:  # a bug or an odd request: answer 500 rather than hang up
            log.exception("scripted server: error answering %s", self.path)
            self.close_connection = True
            if rec.status == 0:
                with contextlib.suppress(OSError):
                    msg = f"scripted server error: {type(e).__name__}: {e}"
                    self._send_error(rec, rec.api, _ErrorAnswer(500, msg))
        finally:
            rec.finished.set()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer(self, rec: RecordedRequest, body: Any) -> None:
        api = rec.api
        if api is None:
            self._send_error(rec, None, _ErrorAnswer(404, f"no route {self.path}"))
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            msg = "request body must be a JSON object with a 'messages' list"
            self._send_error(rec, api, _ErrorAnswer(400, msg))
            return
        model = str(body.get("model") or "")
        messages = _openai_messages(body) if api == "openai" else _anthropic_messages(body)
        ctx = _Context(api, model, messages)
        owner = self.server.owner
        picked = owner._pick(ctx)
        if picked is None:
            last = ctx.last or "nothing"
            text = (
                (ctx.user_text or "") if last == "user" else (ctx.tool_result or _Msg("user")).text
            )
            msg = f"scripted server: no rule matched (last message: {last} {text[:80]!r})"
            self._send_error(rec, api, _ErrorAnswer(400, msg))
            return
        index, rule, variables = picked
        rec.rule = index
        reply = rule.reply
        if reply.delay_s:
            self._pause(reply.delay_s)
        answer = _build_answer(ctx, reply, variables)
        if isinstance(answer, _ErrorAnswer):
            self._send_error(rec, api, answer)
            return
        turn = ctx.turn
        if not body.get("stream"):
            obj = (_openai_json if api == "openai" else _anthropic_json)(answer, model, turn)
            rec.status = 200
            self._send_json(200, obj)
            return
        if api == "openai":
            opts = body.get("stream_options") or {}
            include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
            frames = _openai_stream(answer, model, turn, include_usage)
        else:
            frames = _anthropic_stream(answer, model, turn)
        rec.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the body ends when the connection closes
        self.end_headers()
        paced = False
        for frame, is_content in frames:
            if is_content and paced and answer.chunk_delay_s:
                self._pause(answer.chunk_delay_s)
            paced = paced or is_content
            self.wfile.write(frame)
        self.wfile.flush()

    def _pause(self, seconds: float) -> None:
        """Sleep, but notice at once when the client hangs up (or the server stops): the
        socket turns readable with EOF. Raises _ClientGone then."""
        r, _, _ = select.select([self.connection], [], [], seconds)
        if not r:
            return
        try:
            peek = self.connection.recv(1, socket.MSG_PEEK)
        except OSError as e:
            raise _ClientGone(str(e)) from e
        if not peek:
            raise _ClientGone("connection closed")
        # The client sent more bytes (a pipelined request): wait out the delay plainly.
        threading.Event().wait(seconds)

    def _send_error(self, rec: RecordedRequest, api: ApiName | None, err: _ErrorAnswer) -> None:
        rec.status = err.status
        extra = {}
        if err.retry_after is not None:
            ra = err.retry_after
            extra["Retry-After"] = str(int(ra)) if ra == int(ra) else str(ra)
        self._send_json(err.status, _error_body(api, err), extra)

    def _send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        self.send_response(status, phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _api_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key") or (auth or None)


def _build_answer(ctx: _Context, reply: Reply, variables: dict[str, str]) -> _Answer | _ErrorAnswer:
    call = ctx.tool_call
    args = call.args if call is not None else {}
    if reply.error is not None:
        e = reply.error
        status_text = _render(str(e.status), variables, args)
        try:
            status = int(status_text)
        except ValueError:
            status = 0
        if not 400 <= status <= 599:
            msg = f"scripted server: error status {status_text!r} is not an HTTP error status"
            return _ErrorAnswer(500, msg)
        message = _render(e.message, variables, args) or f"scripted error {status}"
        return _ErrorAnswer(status, message, e.type, e.retry_after)
    text = _render(reply.text or "", variables, args)
    prefix = "toolu" if ctx.api == "anthropic" else "call"
    calls = [
        (
            f"{prefix}_{ctx.turn}_{i}",
            _render(tc.name, variables, args),
            _render_value(tc.arguments, variables, args),
        )
        for i, tc in enumerate(reply.tool_calls)
    ]
    reply_chars = len(text) + sum(len(n) + len(json.dumps(a)) for _, n, a in calls)
    u = reply.usage or UsageSpec()
    return _Answer(
        text=text,
        calls=calls,
        stop_reason=reply.stop_reason or ("tool_use" if calls else "stop"),
        input_tokens=(
            u.input_tokens if u.input_tokens is not None else math.ceil(ctx.request_chars() / 4)
        ),
        output_tokens=u.output_tokens
        if u.output_tokens is not None
        else math.ceil(reply_chars / 4),
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        chunk_delay_s=reply.chunk_delay_s,
    )


def _match(rule: Rule, ctx: _Context) -> dict[str, str] | None:
    """The template variables if ``rule`` matches (ignoring nth_request), else None."""
    m = rule.match
    last = ctx.last
    if m.model is not None and m.model != ctx.model:
        return None
    if m.last is not None and m.last != last:
        return None
    needs_tool = m.tool_result_regex is not None or m.tool_name is not None
    result = ctx.tool_result
    if needs_tool and (last != "tool_result" or result is None):
        return None
    if m.tool_name is not None and (result is None or result.tool_name != m.tool_name):
        return None
    user_text = ctx.user_text
    user_m = tool_m = None
    if rule._user_re is not None:
        if user_text is None:
            return None
        user_m = rule._user_re.search(user_text)
        if user_m is None:
            return None
    if rule._tool_re is not None:
        assert result is not None
        tool_m = rule._tool_re.search(result.text)
        if tool_m is None:
            return None
    variables = {
        "message": user_text or "",
        "tool_output": result.text if result else "",
        "tool_name": (result.tool_name or "") if result else "",
        "model": ctx.model,
    }
    for rm in (tool_m, user_m):  # user_regex wins a clash of group names
        if rm is not None:
            variables.update({k: v or "" for k, v in rm.groupdict().items()})
    numbered = user_m or tool_m
    if numbered is not None:
        variables["0"] = numbered.group(0)
        for i, g in enumerate(numbered.groups(), start=1):
            variables[str(i)] = g or ""
    return variables


class ScriptedServer:
    """The scripted model server on a loopback port, served from a daemon thread."""

    def __init__(
        self, script: Script | Path | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if script is None:
            script = Script.default()
        elif not isinstance(script, Script):
            script = Script.load(Path(script))
        self.script: Script = script
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._counters: dict[int, int] = {}
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = threading.Event()

    # lifecycle

    def start(self) -> None:
        """Bind and start serving; returns once the port is listening."""
        if self._httpd is not None:
            return
        cls = _IPv6HTTPServer if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.port), _Handler)
        httpd.owner = self
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._stopping.clear()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(
            target=self._serve, name=f"scripted-model-server:{self.port}", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        # Our own accept loop instead of serve_forever(): stop() wakes it through a socket
        # pair at once, where serve_forever polls (0.5 s per stop, or idle wake-ups).
        assert self._httpd is not None and self._wake_r is not None
        httpd, wake = self._httpd, self._wake_r
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([httpd.fileno(), wake.fileno()], [], [])
            except (OSError, ValueError):
                return
            if self._stopping.is_set():
                return
            if httpd.fileno() in ready:
                httpd.handle_request()

    def stop(self) -> None:
        """Stop accepting, hang up on open connections, and free the port."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # wakes handlers sleeping in _pause; they end at once
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._httpd = self._thread = self._wake_r = self._wake_w = None

    def __enter__(self) -> ScriptedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``: OpenAI clients append ``/v1``, Anthropic ones use it as is."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def use_script(self, script: Script) -> None:
        """Swap the script and reset the ``nth_request`` counters."""
        with self._lock:
            self.script = script
            self._counters.clear()

    def reset(self) -> None:
        """Forget recorded requests and reset the ``nth_request`` counters."""
        with self._lock:
            self.requests.clear()
            self._counters.clear()

    # internals used by the handler

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _pick(self, ctx: _Context) -> tuple[int, Rule, dict[str, str]] | None:
        picked: tuple[int, Rule, dict[str, str]] | None = None
        with self._lock:  # counters must advance atomically across concurrent requests
            for i, rule in enumerate(self.script.rules):
                variables = _match(rule, ctx)
                if variables is None:
                    continue
                nth = rule.match.nth_request
                if nth is not None:
                    # Count every request that meets the rule's other conditions, even one
                    # an earlier rule answers, so "nth_request: 2" means the 2nd such request.
                    self._counters[i] = self._counters.get(i, 0) + 1
                    if self._counters[i] != nth:
                        continue
                if picked is None:
                    picked = (i, rule, variables)
        return picked


def serve_main(script: Path | None, host: str = "127.0.0.1", port: int = 0) -> int:
    """``godel model serve``: serve in the foreground until SIGINT/SIGTERM."""
    try:
        server = ScriptedServer(script, host, port)
        server.start()
    except ConfigError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = server.base_url
        print(f"Scripted model server on {url} (OpenAI: {url}/v1, Anthropic: {url})", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.stop()
    return 0
