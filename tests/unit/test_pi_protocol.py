"""The pi RPC protocol layer: framing, event parsing, config files (no pi process)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from core.llm.catalog_types import ModelPrices, ResolvedModel
from core.models import Usage
from core.runtimes.pi.config import models_json, retry_enabled, settings_json
from core.runtimes.pi.protocol import (
    AgentEnd,
    AgentStart,
    AssistantMessageEnd,
    ExtensionUIRequest,
    LineSplitter,
    Malformed,
    Other,
    Response,
    RetryEnd,
    RetryStart,
    TextDelta,
    ToolEnd,
    ToolStart,
    ToolUpdate,
    UserMessage,
    encode_command,
    looks_retryable,
    parse_line,
)
from core.runtimes.pi.run_loop import OutputDiff


def line(obj: dict[str, Any]) -> bytes:
    # pi writes compact JSON (JSON.stringify), which the fast paths rely on.
    return json.dumps(obj, separators=(",", ":")).encode()


# --- framing -----------------------------------------------------------------------


def test_splitter_strips_cr_and_keeps_partial_lines() -> None:
    s = LineSplitter()
    assert s.feed(b'{"a":1}\r\n{"b":') == [b'{"a":1}']
    assert s.feed(b"2}") == []
    assert s.feed(b"\n") == [b'{"b":2}']
    assert s.flush() is None


def test_splitter_line_split_across_many_reads() -> None:
    payload = line({"type": "x", "text": "y" * 10_000})
    s = LineSplitter()
    out: list[bytes] = []
    for i in range(0, len(payload), 7):
        out += s.feed(payload[i : i + 7])
    out += s.feed(b"\n")
    assert out == [payload]


def test_splitter_does_not_split_on_unicode_line_separators() -> None:
    # U+2028 / U+2029 are valid inside JSON strings; only LF ends a record.
    raw = '{"type":"x","t":"a\u2028b\u2029c"}\n'.encode()
    assert LineSplitter().feed(raw) == [raw[:-1]]


def test_splitter_flush_returns_unterminated_tail() -> None:
    s = LineSplitter()
    assert s.feed(b'{"a":1}\n{"b":2}\r') == [b'{"a":1}']
    assert s.flush() == b'{"b":2}'


def test_encode_command_is_one_ascii_line() -> None:
    data = encode_command({"type": "prompt", "message": "é\u2028\nx"})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert data.isascii()
    assert json.loads(data) == {"type": "prompt", "message": "é\u2028\nx"}


# --- responses ---------------------------------------------------------------------


def test_response_with_id() -> None:
    msg = parse_line(
        line({"id": "g1", "type": "response", "command": "get_state", "success": True, "data": {}})
    )
    assert msg == Response(command="get_state", success=True, id="g1", data={})


def test_response_without_id() -> None:
    raw = {
        "type": "response",
        "command": "parse",
        "success": False,
        "error": "Failed to parse command: Unexpected token",
    }
    msg = parse_line(line(raw))
    assert isinstance(msg, Response)
    assert msg.id is None and not msg.success and msg.command == "parse"
    assert msg.error is not None and msg.error.startswith("Failed to parse")


def test_blank_and_malformed_lines() -> None:
    assert parse_line(b"") is None
    assert parse_line(b"   ") is None
    assert isinstance(parse_line(b"not json"), Malformed)
    assert isinstance(parse_line(b"[1,2]"), Malformed)


# --- events ------------------------------------------------------------------------


def _partial(text: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "usage": {"input": 0, "output": 0},
        "stopReason": "stop",
    }


def test_message_update_text_delta_fast_path() -> None:
    big = "z" * 50_000
    raw = line(
        {
            "type": "message_update",
            "assistantMessageEvent": {
                "type": "text_delta",
                "contentIndex": 0,
                "delta": 'He said "hi"\n\u2028',
                "partial": _partial(big),
            },
            "message": _partial(big),
        }
    )
    assert parse_line(raw) == TextDelta('He said "hi"\n\u2028')


def test_message_update_other_kinds_are_skipped() -> None:
    raw = line(
        {
            "type": "message_update",
            "assistantMessageEvent": {
                "type": "toolcall_delta",
                "contentIndex": 0,
                "delta": '{"comm',
                "partial": _partial(""),
            },
            "message": _partial(""),
        }
    )
    assert parse_line(raw) == Other("message_update:toolcall_delta")


def test_message_update_in_another_key_order_falls_back_to_full_parse() -> None:
    raw = line(
        {
            "message": _partial("ab"),
            "type": "message_update",
            "assistantMessageEvent": {"delta": "b", "type": "text_delta", "contentIndex": 0},
        }
    )
    assert parse_line(raw) == TextDelta("b")
    spaced = json.dumps(
        {
            "type": "message_update",
            "assistantMessageEvent": {"type": "text_delta", "contentIndex": 0, "delta": "c"},
        }
    ).encode()
    assert parse_line(spaced) == TextDelta("c")


def test_assistant_message_end_usage_and_text() -> None:
    msg = {
        "role": "assistant",
        "content": [{"type": "text", "text": "Ran it"}, {"type": "toolCall", "id": "c1"}],
        "usage": {
            "input": 1389,
            "output": 12,
            "cacheRead": 5,
            "cacheWrite": 7,
            "totalTokens": 1413,
            "cost": {"total": 0.001413},
        },
        "stopReason": "stop",
    }
    ev = parse_line(line({"type": "message_end", "message": msg}))
    assert ev == AssistantMessageEnd(
        text="Ran it",
        stop_reason="stop",
        error_message=None,
        usage=Usage(input_tokens=1389, output_tokens=12, cache_read_tokens=5, cache_write_tokens=7),
        cost_total=0.001413,
    )


def test_user_message_start_and_other_message_ends() -> None:
    user = {"role": "user", "content": [{"type": "text", "text": "run: ls"}]}
    assert parse_line(line({"type": "message_start", "message": user})) == UserMessage("run: ls")
    tool = {"role": "toolResult", "content": [{"type": "text", "text": "x"}]}
    assert parse_line(line({"type": "message_end", "message": tool})) == Other("message_end")


def test_agent_end_takes_the_last_assistant_message() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "stopReason": "toolUse"},
        {"role": "toolResult", "content": []},
        {"role": "assistant", "stopReason": "error", "errorMessage": "503 overloaded"},
    ]
    ev = parse_line(line({"type": "agent_end", "messages": messages}))
    assert ev == AgentEnd(stop_reason="error", error_message="503 overloaded")
    assert parse_line(line({"type": "agent_end", "messages": []})) == AgentEnd(None, None)
    assert parse_line(line({"type": "agent_start"})) == AgentStart()


def test_tool_events() -> None:
    start = {
        "type": "tool_execution_start",
        "toolCallId": "c1",
        "toolName": "bash",
        "args": {"command": "echo hello"},
    }
    assert parse_line(line(start)) == ToolStart("c1", "bash", {"command": "echo hello"})
    update = {
        "type": "tool_execution_update",
        "toolCallId": "c1",
        "toolName": "bash",
        "args": {},
        "partialResult": {"content": [{"type": "text", "text": "hel"}]},
    }
    assert parse_line(line(update)) == ToolUpdate("c1", "bash", "hel")
    end = {
        "type": "tool_execution_end",
        "toolCallId": "c1",
        "toolName": "bash",
        "result": {"content": [{"type": "text", "text": "hello\n"}]},
        "isError": False,
    }
    assert parse_line(line(end)) == ToolEnd("c1", "bash", "hello\n", False)


def test_retry_events() -> None:
    start = {
        "type": "auto_retry_start",
        "attempt": 1,
        "maxAttempts": 2,
        "delayMs": 200,
        "errorMessage": "503 x",
    }
    assert parse_line(line(start)) == RetryStart(1, 2, 200, "503 x")
    end = {"type": "auto_retry_end", "success": False, "attempt": 2, "finalError": "503 x"}
    assert parse_line(line(end)) == RetryEnd(False, 2, "503 x")


def test_skipped_and_unknown_events() -> None:
    assert parse_line(line({"type": "turn_end", "message": _partial("x" * 1000)})) == Other(
        "turn_end"
    )
    assert parse_line(line({"type": "something_new"})) == Other("something_new")
    ui = {"type": "extension_ui_request", "id": "u1", "method": "confirm", "title": "Sure?"}
    assert parse_line(line(ui)) == ExtensionUIRequest("u1", "confirm", "Sure?")


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        ("503 scripted failure 503", True),
        ("429 Too Many Requests", True),
        ("Connection error.", True),
        ("Request timed out.", True),
        ("400 scripted failure 400", False),
        ("401 invalid api key", False),
        (None, False),
    ],
)
def test_looks_retryable(error: str | None, retryable: bool) -> None:
    assert looks_retryable(error) is retryable


def test_output_diff() -> None:
    d = OutputDiff()
    assert d.update("") == ""
    assert d.update("hel") == "hel"
    assert d.update("hello\n") == "lo\n"
    assert d.final("hello\n\nCommand exited with code 1") == "\nCommand exited with code 1"
    d = OutputDiff()
    d.update("line1\nline2\n")
    # pi dropped the head (its output window): streaming stops with one note.
    assert d.update("line2\nline3\n") == OutputDiff.TRUNCATED
    assert d.update("line2\nline3\nline4\n") == ""
    assert d.final("line3\nline4\n") == ""


# --- config ------------------------------------------------------------------------


def _model(**kw: Any) -> ResolvedModel:
    base: dict[str, Any] = {
        "name": "scripted",
        "provider": "scripted",
        "api": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "upstream_id": "up-1",
        "api_key_env": "GODEL_SCRIPTED_API_KEY",
        "api_key": "secret",
        "prices": ModelPrices(input_mtok=Decimal("1.5"), output_mtok=Decimal(2)),
        "context_window": 32000,
        "max_tokens": 4096,
    }
    base.update(kw)
    return ResolvedModel(**base)


def test_models_json_openai() -> None:
    cfg = models_json(_model())
    provider = cfg["providers"]["godel"]
    assert provider["api"] == "openai-completions"
    assert provider["baseUrl"] == "http://127.0.0.1:9/v1"
    assert provider["apiKey"] == "GODEL_SCRIPTED_API_KEY"  # the name; pi reads the env
    assert "secret" not in json.dumps(cfg)
    (m,) = provider["models"]
    assert m["id"] == "up-1" and m["name"] == "scripted"
    assert m["contextWindow"] == 32000 and m["maxTokens"] == 4096
    assert m["cost"] == {"input": 1.5, "output": 2.0, "cacheRead": 0.0, "cacheWrite": 0.0}


def test_models_json_anthropic_drops_v1_and_unknown_prices_are_zero() -> None:
    cfg = models_json(_model(api="anthropic", base_url="http://h:1/v1/", prices=None))
    provider = cfg["providers"]["godel"]
    assert provider["api"] == "anthropic-messages"
    assert provider["baseUrl"] == "http://h:1"
    assert set(provider["models"][0]["cost"].values()) == {0.0}
    cfg = models_json(_model(api="anthropic", base_url="http://h:1"))
    assert cfg["providers"]["godel"]["baseUrl"] == "http://h:1"


def test_settings_defaults_and_deep_merge() -> None:
    s = settings_json()
    assert s["compaction"] == {"enabled": False}
    assert s["retry"] == {
        "enabled": True,
        "maxRetries": 2,
        "baseDelayMs": 200,
        "provider": {"maxRetries": 0},
    }
    merged = settings_json({"retry": {"provider": {"timeoutMs": 5000}}})
    assert merged["retry"]["maxRetries"] == 2
    assert merged["retry"]["provider"] == {"maxRetries": 0, "timeoutMs": 5000}
    assert retry_enabled(merged)
    assert not retry_enabled(settings_json({"retry": {"enabled": False}}))
