"""Encoding an answer in the OpenAI or Anthropic wire format: JSON bodies, SSE frames and
error bodies, all deterministic (no clock, no random ids).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from core.llm.scripted.answer import Answer, ErrorAnswer
from core.llm.scripted.request import ApiName

__all__ = [
    "Frame",
    "anthropic_json",
    "anthropic_stream",
    "error_body",
    "openai_json",
    "openai_stream",
]

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


def error_body(api: ApiName | None, err: ErrorAnswer) -> dict[str, Any]:
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


def openai_stream(a: Answer, model: str, turn: int, include_usage: bool) -> list[Frame]:
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


def _openai_usage(a: Answer) -> dict[str, Any]:
    prompt = a.input_tokens + a.cache_read_tokens  # OpenAI counts cached tokens in the prompt
    return {
        "prompt_tokens": prompt,
        "completion_tokens": a.output_tokens,
        "total_tokens": prompt + a.output_tokens,
        "prompt_tokens_details": {"cached_tokens": a.cache_read_tokens},
    }


def openai_json(a: Answer, model: str, turn: int) -> dict[str, Any]:
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


def _anthropic_usage(a: Answer) -> dict[str, int]:
    return {
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "cache_creation_input_tokens": a.cache_write_tokens,
        "cache_read_input_tokens": a.cache_read_tokens,
    }


def anthropic_stream(a: Answer, model: str, turn: int) -> list[Frame]:
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


def anthropic_json(a: Answer, model: str, turn: int) -> dict[str, Any]:
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
