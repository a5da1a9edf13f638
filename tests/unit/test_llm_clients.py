"""The OpenAI and Anthropic streaming clients against the real scripted server (loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from core.llm.anthropic import AnthropicClient, build_anthropic_body
from core.llm.http import RetryInfo
from core.llm.openai import OpenAIClient, _PartialCall, build_openai_body
from core.llm.scripted import ErrorReply, Match, Reply, Rule, Script, ScriptedServer
from core.llm.types import (
    ChatMessage,
    ChatRequest,
    Finish,
    LLMError,
    LLMEvent,
    TextDelta,
    ToolCall,
    ToolCallDone,
    ToolSpec,
    UsageLimited,
    UsageReport,
)

APIS = ["openai", "anthropic"]
BASH = ToolSpec(
    name="bash",
    description="Run a command",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}},
)

Client = OpenAIClient | AnthropicClient


def make_client(api: str, server: ScriptedServer, **kw: Any) -> Client:
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_max_s", 0.02)
    if api == "openai":
        return OpenAIClient(server.base_url + "/v1", "key-" + api, **kw)
    return AnthropicClient(server.base_url, "key-" + api, **kw)


def request(*messages: ChatMessage | str) -> ChatRequest:
    msgs = [ChatMessage(role="user", content=m) if isinstance(m, str) else m for m in messages]
    return ChatRequest(model="scripted", system="be brief", messages=msgs, tools=[BASH])


async def collect(client: Client, req: ChatRequest) -> list[LLMEvent]:
    return [ev async for ev in client.stream(req)]


def text_of(events: list[LLMEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.fixture
def make_server() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def make(*rules: Rule) -> ScriptedServer:
        s = ScriptedServer(Script(rules=list(rules)))
        s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(params=APIS)
async def client(
    request: pytest.FixtureRequest, scripted_server: ScriptedServer
) -> AsyncIterator[Client]:
    c = make_client(request.param, scripted_server)
    yield c
    await c.aclose()


async def test_plain_text_answer(client: Client, scripted_server: ScriptedServer) -> None:
    events = await collect(client, request("hello there"))
    assert text_of(events) == "You said: hello there"
    assert sum(isinstance(e, TextDelta) for e in events) == 4  # streamed a word at a time
    assert isinstance(events[-1], Finish) and events[-1].stop_reason == "stop"
    assert sum(isinstance(e, Finish) for e in events) == 1
    usage = [e for e in events if isinstance(e, UsageReport)]
    assert len(usage) == 1 and usage[0].usage.input_tokens > 0 and usage[0].usage.output_tokens > 0
    rec = scripted_server.requests[-1]
    assert rec.api_key == ("key-openai" if rec.api == "openai" else "key-anthropic")


async def test_run_produces_a_bash_call_and_the_follow_up_quotes_output(client: Client) -> None:
    events = await collect(client, request("run: echo hello"))
    calls = [e.call for e in events if isinstance(e, ToolCallDone)]
    assert [(c.name, c.arguments) for c in calls] == [("bash", {"command": "echo hello"})]
    assert calls[0].raw_arguments and calls[0].id
    assert isinstance(events[-1], Finish) and events[-1].stop_reason == "tool_use"
    follow = request(
        "run: echo hello",
        ChatMessage(role="assistant", tool_calls=calls),
        ChatMessage(role="tool", content="hello\n", tool_call_id=calls[0].id, tool_name="bash"),
    )
    events = await collect(client, follow)
    assert text_of(events) == "Ran `echo hello`; output:\nhello\n"
    assert isinstance(events[-1], Finish) and events[-1].stop_reason == "stop"


async def test_write_tool_call(client: Client) -> None:
    events = await collect(client, request("write a.txt: hi"))
    calls = [e.call for e in events if isinstance(e, ToolCallDone)]
    assert [(c.name, c.arguments) for c in calls] == [("write", {"path": "a.txt", "content": "hi"})]


async def test_usage_and_events_are_deterministic(client: Client) -> None:
    req = request("run: echo hello")
    first, second = await collect(client, req), await collect(client, req)
    assert first == second
    usage = next(e for e in first if isinstance(e, UsageReport)).usage
    # The default estimate: ceil(chars/4) of the request's text, and of the reply.
    assert usage.input_tokens == -(-len("be brief" + "run: echo hello") // 4)
    assert usage.output_tokens == -(-len('bash{"command": "echo hello"}') // 4)


@pytest.mark.parametrize("api", APIS)
async def test_request_bodies_follow_each_api(api: str, scripted_server: ScriptedServer) -> None:
    client = make_client(api, scripted_server)
    call = ToolCall(id="c1", name="bash", arguments={"command": "ls"})
    req = request(
        "run: ls",
        ChatMessage(role="assistant", content="", tool_calls=[call]),
        ChatMessage(role="tool", content="a\nb\n", tool_call_id="c1", tool_name="bash"),
    )
    events = await collect(client, req)
    await client.aclose()
    assert text_of(events) == "Ran `ls`; output:\na\nb\n"
    body = scripted_server.requests[-1].body
    if api == "openai":
        assert body == build_openai_body(req)
        assert body["messages"][0] == {"role": "system", "content": "be brief"}
        assert body["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"command": "ls"}'
        assert body["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "a\nb\n"}
        assert body["tools"][0]["function"]["name"] == "bash"
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert body == build_anthropic_body(req)
        assert body["system"] == "be brief"
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": "c1", "content": "a\nb\n"}
        ]
        assert body["tools"][0]["input_schema"]["type"] == "object"
        assert scripted_server.requests[-1].headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize("api", APIS)
async def test_400_raises_at_once(api: str, scripted_server: ScriptedServer) -> None:
    client = make_client(api, scripted_server)
    with pytest.raises(LLMError) as e:
        await collect(client, request("fail: 400"))
    await client.aclose()
    url = client._endpoint.url
    assert e.value.message == f"{api} endpoint {url}: HTTP 400: scripted failure: HTTP 400"
    assert e.value.data["status"] == 400 and e.value.data["retryable"] is False
    assert len(scripted_server.requests) == 1


@pytest.mark.parametrize("api", APIS)
async def test_503_once_is_retried(api: str, make_server: Any) -> None:
    server = make_server(
        Rule(match=Match(nth_request=1), reply=Reply(error=ErrorReply(status=503))),
        Rule(reply=Reply(text="fine")),
    )
    retries: list[RetryInfo] = []
    client = make_client(api, server, on_retry=retries.append)
    events = await collect(client, request("x"))
    await client.aclose()
    assert text_of(events) == "fine"
    assert [r.status for r in server.requests] == [503, 200]
    assert [(r.attempt, r.status) for r in retries] == [(1, 503)]


@pytest.mark.parametrize("api", APIS)
async def test_503_always_gives_up_after_max_retries(api: str, make_server: Any) -> None:
    server = make_server(Rule(reply=Reply(error=ErrorReply(status=503, message="down"))))
    client = make_client(api, server, max_retries=2)
    with pytest.raises(LLMError) as e:
        await collect(client, request("x"))
    await client.aclose()
    assert len(server.requests) == 3
    assert "HTTP 503: down (gave up after 3 attempts)" in e.value.message
    assert e.value.data["attempts"] == 3 and e.value.data["status"] == 503


async def test_retry_after_is_honoured_and_capped(make_server: Any) -> None:
    server = make_server(
        Rule(
            match=Match(nth_request=1), reply=Reply(error=ErrorReply(status=429, retry_after=0.1))
        ),
        Rule(match=Match(nth_request=2), reply=Reply(error=ErrorReply(status=429, retry_after=30))),
        Rule(reply=Reply(text="ok")),
    )
    client = make_client("openai", server, retry_after_max_s=0.15)
    t0 = time.monotonic()
    events = await collect(client, request("x"))
    elapsed = time.monotonic() - t0
    await client.aclose()
    assert text_of(events) == "ok"
    assert 0.25 <= elapsed < 10  # 0.1 s as asked + 30 s capped to 0.15 s (not 30 s)


async def test_a_long_retry_after_on_429_is_a_usage_limit(make_server: Any) -> None:
    """Not retried (the agent is not held for minutes): ``UsageLimited`` says when."""
    server = make_server(
        Rule(reply=Reply(error=ErrorReply(status=429, message="quota", retry_after=120))),
    )
    client = make_client("openai", server)
    with pytest.raises(UsageLimited) as e:
        await collect(client, request("x"))
    await client.aclose()
    assert e.value.retry_after == 120 and e.value.data["status"] == 429
    assert e.value.message.endswith("HTTP 429: quota (retry after 120s)")
    assert len(server.requests) == 1


async def test_connection_errors_are_retried() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIClient(
        f"http://127.0.0.1:{port}/v1", "k", max_retries=1, backoff_base_s=0.01, backoff_max_s=0.01
    )
    with pytest.raises(LLMError) as e:
        await collect(client, request("x"))
    await client.aclose()
    assert "ConnectError" in e.value.message and "gave up after 2 attempts" in e.value.message
    assert e.value.data["status"] is None


async def test_read_timeout_before_the_answer(make_server: Any) -> None:
    server = make_server(Rule(reply=Reply(text="late", delay_s=30)))
    client = make_client("anthropic", server, timeout=0.2, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="ReadTimeout"):
        await collect(client, request("x"))
    await client.aclose()
    # It gave up at its timeout, not when the late answer came (30 s).
    assert time.monotonic() - t0 < 10 and len(server.requests) == 1


@pytest.mark.parametrize("api", APIS)
async def test_breaking_off_closes_the_connection(
    api: str, scripted_server: ScriptedServer
) -> None:
    client = make_client(api, scripted_server)
    t0 = time.monotonic()
    async with contextlib.aclosing(client.stream(request("slow: one two three four five"))) as s:
        async for ev in s:
            if isinstance(ev, TextDelta):
                break
    rec = scripted_server.requests[-1]
    assert await asyncio.to_thread(rec.finished.wait, 2)
    assert rec.disconnected and time.monotonic() - t0 < 1.0  # not after all 5 words
    await client.aclose()


@pytest.mark.parametrize("api", APIS)
async def test_cancelling_the_task_closes_the_connection(
    api: str, scripted_server: ScriptedServer
) -> None:
    client = make_client(api, scripted_server)
    seen: list[LLMEvent] = []
    first_text = asyncio.Event()

    async def consume() -> None:
        async for ev in client.stream(request("slow: one two three four five")):
            seen.append(ev)
            if isinstance(ev, TextDelta):
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rec = scripted_server.requests[-1]
    assert await asyncio.to_thread(rec.finished.wait, 2)
    assert rec.disconnected
    assert text_of(seen) != "one two three four five"
    await client.aclose()


@pytest.mark.parametrize("api", APIS)
async def test_a_stream_cut_midway_finishes_with_an_error(api: str, make_server: Any) -> None:
    server = make_server(Rule(reply=Reply(text="a b c d", chunk_delay_s=5)))
    client = make_client(api, server)
    events: list[LLMEvent] = []
    async for ev in client.stream(request("x")):
        events.append(ev)
        if isinstance(ev, TextDelta):
            await asyncio.to_thread(server.stop)  # the server goes away mid-answer
    await client.aclose()
    assert text_of(events) == "a "
    assert isinstance(events[-1], Finish) and events[-1].stop_reason == "error"
    assert sum(isinstance(e, Finish) for e in events) == 1


@pytest.mark.parametrize("api", APIS)
async def test_length_stop_and_cached_usage(api: str, make_server: Any) -> None:
    server = make_server(
        Rule(
            reply=Reply(
                text="cut",
                stop_reason="length",
                usage={
                    "input_tokens": 10,
                    "output_tokens": 5,
                    "cache_read_tokens": 4,
                    "cache_write_tokens": 2,
                },
            )
        )
    )
    client = make_client(api, server)
    events = await collect(client, request("x"))
    await client.aclose()
    assert isinstance(events[-1], Finish) and events[-1].stop_reason == "length"
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (10, 5, 4)
    # OpenAI has no cache-write count; Anthropic reports it.
    assert usage.cache_write_tokens == (2 if api == "anthropic" else 0)


def test_invalid_tool_arguments_keep_the_raw_text() -> None:
    call = _PartialCall(id="c", name="bash", parts=['{"command": ', '"ls"']).done(0)
    assert call.call.arguments == {} and call.call.raw_arguments == '{"command": "ls"'
    call = _PartialCall(name="bash", parts=["[1, 2]"]).done(3)
    assert call.call.arguments == {} and call.call.id == "call_3"
