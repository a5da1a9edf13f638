"""The scripted model server over real loopback HTTP: wire formats, scripts, determinism."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import ConfigError
from core.llm.scripted import (
    ErrorReply,
    Match,
    Reply,
    Rule,
    Script,
    ScriptedServer,
    serve_main,
)

RUN_HISTORY_OPENAI: list[dict[str, Any]] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "run: echo hello"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_x",
                "type": "function",
                "function": {"name": "bash", "arguments": '{"command":"echo hello"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_x", "content": "hello\n"},
]


def openai_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "scripted",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        **extra,
    }


def anthropic_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "scripted",
        "max_tokens": 100,
        "stream": True,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def sse_frames(raw: str) -> list[tuple[str | None, str]]:
    """(event, data) per SSE frame."""
    out = []
    for frame in raw.split("\n\n"):
        if not frame.strip():
            continue
        event = None
        data = []
        for line in frame.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((event, "\n".join(data)))
    return out


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


def test_openai_sse_tool_call_arrives_in_fragments(scripted_server: ScriptedServer) -> None:
    url = scripted_server.base_url + "/v1/chat/completions"
    r = httpx.post(url, json=openai_body("run: echo hello"), headers={"Authorization": "Bearer k1"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    frames = sse_frames(r.text)
    assert frames[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in frames[:-1]]
    frags = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert len(frags) >= 4 and all(f["index"] == 0 for f in frags)
    assert frags[0]["id"] and frags[0]["function"]["name"] == "bash"
    args = "".join(f["function"]["arguments"] for f in frags)
    assert json.loads(args) == {"command": "echo hello"}
    assert sum(1 for f in frags if f["function"]["arguments"]) >= 3  # several pieces
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert finishes == ["tool_calls"]
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 0
    }
    assert usage["usage"]["prompt_tokens"] > 0 and usage["usage"]["completion_tokens"] > 0
    rec = scripted_server.requests[-1]
    assert (rec.api, rec.api_key, rec.headers["authorization"]) == ("openai", "k1", "Bearer k1")
    assert rec.body["messages"][0]["content"][0]["text"] == "run: echo hello"


def test_openai_without_include_usage_sends_no_usage_chunk(
    scripted_server: ScriptedServer,
) -> None:
    body = openai_body("hi")
    del body["stream_options"]
    r = httpx.post(scripted_server.base_url + "/v1/chat/completions", json=body)
    chunks = [json.loads(d) for _, d in sse_frames(r.text)[:-1]]
    assert all("usage" not in c for c in chunks)
    text = "".join(ch["delta"].get("content", "") for c in chunks for ch in c["choices"])
    assert text == "You said: hi"
    assert [len(c["choices"]) for c in chunks] == [1] * len(chunks)


def test_anthropic_sse_has_event_lines_and_the_full_sequence(
    scripted_server: ScriptedServer,
) -> None:
    r = httpx.post(
        scripted_server.base_url + "/v1/messages",
        json=anthropic_body("write a.txt: hi"),
        headers={"x-api-key": "k2", "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 200
    frames = sse_frames(r.text)
    for event, payload in frames:
        assert event == json.loads(payload)["type"]  # every frame names its event
    events = [e for e, _ in frames]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    data = [json.loads(d) for _, d in frames]
    start = next(d for d in data if d["type"] == "content_block_start")
    assert start["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1_0",
        "name": "write",
        "input": {},
    }
    pieces = [d["delta"]["partial_json"] for d in data if d["type"] == "content_block_delta"]
    assert len(pieces) >= 3
    assert json.loads("".join(pieces)) == {"path": "a.txt", "content": "hi"}
    delta = next(d for d in data if d["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] > 0
    assert data[0]["message"]["usage"]["input_tokens"] > 0
    rec = scripted_server.requests[-1]
    assert (rec.api, rec.api_key) == ("anthropic", "k2")


def test_same_request_same_bytes(scripted_server: ScriptedServer) -> None:
    base = scripted_server.base_url
    for path, body in (
        ("/v1/chat/completions", openai_body("run: ls -la")),
        ("/v1/messages", anthropic_body("run: ls -la")),
        ("/v1/chat/completions", {**openai_body("x"), "messages": RUN_HISTORY_OPENAI}),
    ):
        first = httpx.post(base + path, json=body)
        second = httpx.post(base + path, json=body)
        assert first.status_code == 200
        assert first.content == second.content
        assert first.headers == second.headers


def test_follow_up_quotes_the_tool_output_openai(scripted_server: ScriptedServer) -> None:
    body = {"model": "scripted", "messages": RUN_HISTORY_OPENAI}  # not streaming: JSON
    r = httpx.post(scripted_server.base_url + "/v1/chat/completions", json=body)
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert data["object"] == "chat.completion"
    choice = data["choices"][0]
    assert choice["message"]["content"] == "Ran `echo hello`; output:\nhello\n"
    assert choice["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] > 0


def test_follow_up_quotes_the_tool_output_anthropic(scripted_server: ScriptedServer) -> None:
    body = {
        "model": "scripted",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "read notes.txt"}]},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "tu1",
                        "name": "read",
                        "input": {"path": "notes.txt"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu1",
                        "content": [{"type": "text", "text": "line one"}],
                    },
                ],
            },
        ],
    }
    r = httpx.post(scripted_server.base_url + "/v1/messages", json=body)
    data = r.json()
    assert data["type"] == "message" and data["stop_reason"] == "end_turn"
    assert data["content"] == [{"type": "text", "text": "line one"}]


def test_default_script_commands(scripted_server: ScriptedServer) -> None:
    url = scripted_server.base_url + "/v1/chat/completions"

    def answer(text: str) -> dict[str, Any]:
        body = {"model": "m", "messages": [{"role": "user", "content": text}]}
        return dict(httpx.post(url, json=body).json()["choices"][0]["message"])

    def call(text: str) -> tuple[str, dict[str, Any]]:
        fn = answer(text)["tool_calls"][0]["function"]
        return fn["name"], json.loads(fn["arguments"])

    assert call("run: echo a && echo b") == ("bash", {"command": "echo a && echo b"})
    assert call("write dir/a.txt: two\nlines") == (
        "write",
        {"path": "dir/a.txt", "content": "two\nlines"},
    )
    assert call("read dir/a.txt") == ("read", {"path": "dir/a.txt"})
    assert answer("hello there")["content"] == "You said: hello there"
    assert answer("slow: a b")["content"] == "a b"
    r = httpx.post(url, json={"model": "m", "messages": [{"role": "user", "content": "fail: 429"}]})
    assert r.status_code == 429
    assert r.json()["error"]["message"] == "scripted failure: HTTP 429"
    # After a write, the answer names the path it recovered from the history.
    history = [
        {"role": "user", "content": "write a.txt: hi"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "write",
                        "arguments": '{"path": "a.txt", "content": "hi"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    r = httpx.post(url, json={"model": "m", "messages": history})
    assert r.json()["choices"][0]["message"]["content"] == "Wrote a.txt."


def test_anthropic_error_body_and_retry_after(make_server: Any) -> None:
    server = make_server(
        Rule(reply=Reply(error=ErrorReply(status=529, message="busy", retry_after=0.5)))
    )
    r = httpx.post(server.base_url + "/v1/messages", json=anthropic_body("x"))
    assert r.status_code == 529
    assert r.headers["retry-after"] == "0.5"
    assert r.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    r = httpx.post(server.base_url + "/v1/chat/completions", json=openai_body("x"))
    assert r.json()["error"]["message"] == "busy" and r.json()["error"]["type"] == "server_error"
    assert [q.status for q in server.requests] == [529, 529]


def test_nth_request_model_and_templates(make_server: Any) -> None:
    server = make_server(
        Rule(
            match=Match(user_regex=r"^flaky", nth_request=1),
            reply=Reply(error=ErrorReply(status=503)),
        ),
        Rule(match=Match(model="other"), reply=Reply(text="other model {model}")),
        Rule(
            match=Match(user_regex=r"^(\w+) (?P<who>\w+)"),
            reply=Reply(text="{1}/{who}/{0}", usage={"input_tokens": 7, "output_tokens": 3}),
        ),
    )
    url = server.base_url + "/v1/chat/completions"

    def post(text: str, model: str = "m") -> httpx.Response:
        return httpx.post(
            url, json={"model": model, "messages": [{"role": "user", "content": text}]}
        )

    assert post("flaky one").status_code == 503
    r = post("flaky one")
    assert r.json()["choices"][0]["message"]["content"] == "flaky/one/flaky one"
    assert r.json()["usage"]["prompt_tokens"] == 7 and r.json()["usage"]["completion_tokens"] == 3
    assert post("flaky one").status_code == 200  # nth_request 1 only fires once
    assert post("x", model="other").json()["choices"][0]["message"]["content"] == (
        "other model other"
    )
    r = post("nomatch")
    assert r.status_code == 400 and "no rule matched" in r.json()["error"]["message"]
    assert [q.rule for q in server.requests] == [0, 2, 2, 1, None]
    server.reset()
    assert server.requests == [] and post("flaky one").status_code == 503


def test_tool_result_rules_need_a_tool_result_last(make_server: Any) -> None:
    server = make_server(
        Rule(match=Match(tool_result_regex=r"(?P<n>\d+) files"), reply=Reply(text="{n} found")),
        Rule(reply=Reply(text="fallback")),
    )
    url = server.base_url + "/v1/chat/completions"
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "count"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "bash", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "12 files"},
    ]
    r = httpx.post(url, json={"model": "m", "messages": msgs})
    assert r.json()["choices"][0]["message"]["content"] == "12 found"
    msgs.append({"role": "user", "content": "and now?"})
    r = httpx.post(url, json={"model": "m", "messages": msgs})
    assert r.json()["choices"][0]["message"]["content"] == "fallback"


def test_script_file_errors_name_the_file_and_rule(tmp_path: Path) -> None:
    f = tmp_path / "my-script.json"
    cases = {
        '{"rules": [{"reply": {"text": "ok"}}, {"match": {"user_regex": "("}, '
        '"reply": {"text": "x"}}]}': ("rule 1", "invalid regex"),
        '[{"reply": {"text": "ok"}}, {"reply": {"text": "x"}}, '
        '{"match": {"user_regex": "(a)"}, "reply": {"text": "{2} {nope}"}}]': ("rule 2", "{2}"),
        '[{"match": {"user_regex": "a"}, "reply": {"text": "{nope}"}}]': ("rule 0", "{nope}"),
        '[{"match": {"usr_regex": "a"}, "reply": {"text": "x"}}]': ("rule 0", "usr_regex"),
        '[{"reply": {}}]': ("rule 0", "needs 'text'"),
        '[{"reply": {"error": {"status": 200}}}]': ("rule 0 (reply.error)", "400-599"),
        '{"rules": [': ("line 1", "invalid JSON"),
    }
    for text, (where, problem) in cases.items():
        f.write_text(text)
        with pytest.raises(ConfigError) as e:
            Script.load(f)
        assert str(f) in e.value.message and where in e.value.message, e.value.message
        assert problem in e.value.message, e.value.message
        assert e.value.data["file"] == str(f)
    with pytest.raises(ConfigError, match="cannot read script"):
        ScriptedServer(tmp_path / "missing.json")
    f.write_text('[{"match": {"user_regex": "^x(?P<a>.)"}, "reply": {"text": "{a}"}}]')
    with ScriptedServer(f) as server:
        body = {"model": "m", "messages": [{"role": "user", "content": "xy"}]}
        r = httpx.post(server.base_url + "/v1/chat/completions", json=body)
        assert r.json()["choices"][0]["message"]["content"] == "y"


def test_the_bundled_script_loads() -> None:
    script = Script.default()
    assert len(script.rules) >= 8


def test_client_hang_up_is_recorded_quietly(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(Rule(reply=Reply(text="a b c d e f g h", chunk_delay_s=0.2)))
    caplog.set_level(logging.DEBUG, logger="godel.llm.scripted")
    t0 = time.monotonic()
    with httpx.stream("POST", server.base_url + "/v1/messages", json=anthropic_body("x")) as r:
        for line in r.iter_lines():
            if "text_delta" in line:
                break  # hang up after the first word
    rec = server.requests[-1]
    assert rec.finished.wait(2)
    # Well before the reply would have ended (behaviour, not speed: a wide margin).
    assert rec.disconnected and time.monotonic() - t0 < 4.0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_stop_ends_streams_at_once_and_frees_the_port(make_server: Any) -> None:
    server = make_server(Rule(reply=Reply(text="a b c d e", chunk_delay_s=5)))
    with httpx.stream("POST", server.base_url + "/v1/messages", json=anthropic_body("x")) as r:
        lines = r.iter_lines()
        next(lines)
        t0 = time.monotonic()
        server.stop()
        rest = list(lines)  # the stream ends (early) instead of hanging
        assert time.monotonic() - t0 < 4.0  # not the 5 s chunk delay: it ended at once
    assert not any("message_stop" in line for line in rest)
    with pytest.raises(httpx.ConnectError):
        httpx.post(server.base_url + "/v1/messages", json=anthropic_body("x"))


def test_unknown_paths_and_bad_bodies(scripted_server: ScriptedServer) -> None:
    base = scripted_server.base_url
    r = httpx.post(base + "/v2/nothing", json={})
    assert r.status_code == 404 and "no route" in r.json()["error"]["message"]
    r = httpx.post(base + "/v1/messages", content=b"not json")
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert httpx.get(base + "/health").json()["ok"] is True
    odd = {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": "x"}]}]}
    r = httpx.post(base + "/v1/chat/completions", json=odd)
    assert r.status_code == 500 and "scripted server error" in r.json()["error"]["message"]


def test_serve_main_runs_until_sigterm(tmp_path: Path) -> None:
    code = "import sys; from core.llm.scripted import serve_main; sys.exit(serve_main(None))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("Scripted model server on http://127.0.0.1:"), line
        url = line.split()[4]
        assert f"(OpenAI: {url}/v1, Anthropic: {url})" in line
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(url + "/v1/chat/completions", json=body)
        assert r.json()["choices"][0]["message"]["content"] == "You said: hi"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_main_reports_a_bad_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{}]")
    assert serve_main(bad, "127.0.0.1", 0) == 2
    assert "bad.json: rule 0" in capsys.readouterr().err
