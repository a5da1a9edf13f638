"""JSON-RPC 2.0 dispatch: the spec's error codes and Godel's own, with named problems."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from core.api.jsonrpc import CallContext, Emit, RpcMethods
from core.errors import AgentNotFound

rpc = RpcMethods()


class EchoParams(BaseModel):
    text: str
    times: int = 1


@rpc.method("echo", EchoParams)
async def echo(p: EchoParams, ctx: CallContext, emit: Emit) -> Any:
    return {"text": p.text * p.times, "actor": ctx.actor}


@rpc.method("count", EchoParams, streaming=True)
async def count(p: EchoParams, ctx: CallContext, emit: Emit) -> Any:
    for i in range(p.times):
        await emit({"i": i})
    return {"done": p.times}


@rpc.method("missing", EchoParams)
async def missing(p: EchoParams, ctx: CallContext, emit: Emit) -> Any:
    raise AgentNotFound(f"agent {p.text!r} not found", agent_id=p.text)


@rpc.method("boom", EchoParams)
async def boom(p: EchoParams, ctx: CallContext, emit: Emit) -> Any:
    raise RuntimeError("kaput")


sent: list[Any] = []


async def collect(msg: Any) -> None:
    sent.append(msg)


async def handle(raw: str | bytes) -> Any:
    return await rpc.handle_line(raw, "tester", collect)


def req(method: str, params: Any = None, id: Any = 1) -> str:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg)


async def test_success() -> None:
    r = await handle(req("echo", {"text": "ab", "times": 2}))
    assert r == {"jsonrpc": "2.0", "id": 1, "result": {"text": "abab", "actor": "tester"}}


async def test_parse_error() -> None:
    r = await handle(b'{"jsonrpc": "2.0", "method": ')
    assert r["error"]["code"] == -32700 and r["id"] is None


async def test_invalid_requests() -> None:
    for raw in (
        '"just a string"',
        '{"method": "echo", "id": 1}',
        '{"jsonrpc": "2.0", "id": 1}',
        '{"jsonrpc": "2.0", "method": "echo", "id": {"a": 1}}',
        "[]",
    ):
        r = await handle(raw)
        assert r["error"]["code"] == -32600, raw


async def test_method_not_found_names_the_method() -> None:
    r = await handle(req("nope"))
    assert r["error"]["code"] == -32601
    assert r["error"]["data"] == {"method": "nope"}


async def test_invalid_params_name_the_param() -> None:
    r = await handle(req("echo", {"text": "x", "times": "many"}))
    assert r["error"]["code"] == -32602
    assert "times" in r["error"]["message"]
    assert r["error"]["data"]["problems"][0]["param"] == "times"
    r = await handle(req("echo", ["positional"]))
    assert r["error"]["code"] == -32602


async def test_godel_error_uses_its_code_and_data() -> None:
    r = await handle(req("missing", {"text": "shell-000000"}))
    assert r["error"] == {
        "code": -32001,
        "message": "agent 'shell-000000' not found",
        "data": {"kind": "agent_not_found", "agent_id": "shell-000000"},
    }


async def test_internal_error_is_reported_not_raised() -> None:
    r = await handle(req("boom", {"text": "x"}))
    assert r["error"]["code"] == -32603 and "kaput" in r["error"]["message"]


async def test_notification_gets_no_reply() -> None:
    assert await handle('{"jsonrpc": "2.0", "method": "echo", "params": {"text": "x"}}') is None


async def test_batch() -> None:
    r = await handle(
        json.dumps([json.loads(req("echo", {"text": "a"}, id=1)), json.loads(req("nope", id=2))])
    )
    assert [x["id"] for x in r] == [1, 2]
    assert "result" in r[0] and r[1]["error"]["code"] == -32601


async def test_streaming_sends_notifications_before_the_result() -> None:
    sent.clear()
    r = await handle(req("count", {"text": "x", "times": 3}, id="s1"))
    assert [m["params"] for m in sent] == [{"request_id": "s1", "data": {"i": i}} for i in range(3)]
    assert all(m["method"] == "stream" and "id" not in m for m in sent)
    assert r["result"] == {"done": 3}


async def test_a_request_nested_too_deep_gets_an_invalid_request_reply() -> None:
    rpc = RpcMethods()
    line = "[" * 100_000 + "]" * 100_000

    async def emit(msg: object) -> None:
        raise AssertionError("nothing streams here")

    reply = await rpc.handle_line(line, "test", emit)
    assert reply["error"]["code"] == -32600
    assert reply["error"]["message"] == "Invalid Request: nested too deep to be a request"
