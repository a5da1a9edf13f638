"""A streaming client for the Anthropic Messages API (and compatible endpoints).

Usage mapping: Anthropic's ``input_tokens`` already exclude cache reads and writes, which
arrive as ``cache_read_input_tokens`` / ``cache_creation_input_tokens``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.llm.http import RetryInfo, RetrySettings, StreamingEndpoint, iter_sse
from core.llm.openai import parse_arguments
from core.llm.types import (
    ChatRequest,
    Finish,
    LLMEvent,
    StopReason,
    TextDelta,
    ToolCall,
    ToolCallDone,
    UsageReport,
)
from core.models import Usage

ANTHROPIC_VERSION = "2023-06-01"

_STOP: dict[str, StopReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_use",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
}


def to_anthropic_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Messages as content blocks; tool results become ``tool_result`` blocks of a user
    message, and consecutive messages of one role are merged (tool results must all sit in
    the user message right after the assistant's ``tool_use`` blocks)."""
    out: list[dict[str, Any]] = []
    for m in request.messages:
        role = "assistant" if m.role == "assistant" else "user"
        blocks: list[dict[str, Any]] = []
        if m.role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": m.tool_call_id or "",
                "content": m.content,
            }
            if m.is_error:
                block["is_error"] = True
            blocks.append(block)
        else:
            if m.content:  # the API rejects empty text blocks
                blocks.append({"type": "text", "text": m.content})
            for c in m.tool_calls:
                blocks.append(
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                )
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def build_anthropic_body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": to_anthropic_messages(request),
        "stream": True,
    }
    if request.system:
        body["system"] = request.system
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
    return body


@dataclass
class _Block:
    type: str
    id: str = ""
    name: str = ""
    initial: dict[str, Any] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)

    def done(self) -> ToolCallDone:
        raw = "".join(self.parts)
        if raw:
            args = parse_arguments(raw)
        else:
            args, raw = self.initial, json.dumps(self.initial) if self.initial else ""
        return ToolCallDone(
            call=ToolCall(id=self.id, name=self.name, arguments=args, raw_arguments=raw)
        )


class AnthropicClient:
    """``base_url`` ends before ``/v1/messages`` (e.g. ``https://api.anthropic.com``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 600,
        connect_timeout: float = 10,
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_max_s: float = 60.0,
        headers: dict[str, str] | None = None,
        on_retry: Callable[[RetryInfo], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        all_headers = {
            "x-api-key": api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            **(headers or {}),
        }
        self._endpoint = StreamingEndpoint(
            "anthropic",
            f"{self.base_url}/v1/messages",
            all_headers,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=RetrySettings(max_retries, backoff_base_s, backoff_max_s, retry_after_max_s),
            on_retry=on_retry,
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[LLMEvent, None]:
        """Deltas and tool calls as they complete, then usage and one ``Finish``.

        Raises ``LLMError`` if the endpoint refuses or stays unavailable; a failure after
        the stream has started ends it with ``Finish(stop_reason="error")``. Close it
        early with ``contextlib.aclosing`` (or cancel the task) to hang up at once.
        """
        async for event in self._endpoint.stream(build_anthropic_body(request), self._events):
            yield event

    async def _events(self, response: httpx.Response) -> AsyncGenerator[LLMEvent, None]:
        blocks: dict[int, _Block] = {}
        usage: dict[str, int] = {}
        stop_reason: str | None = None
        stopped = False
        error: str | None = None
        try:
            async with contextlib.aclosing(iter_sse(response)) as messages:
                async for msg in messages:
                    try:
                        data = json.loads(msg.data)
                    except json.JSONDecodeError:
                        error = f"invalid JSON in the stream: {msg.data[:200]!r}"
                        break
                    if not isinstance(data, dict):
                        continue
                    kind = data.get("type") or msg.event
                    if kind == "message_start":
                        _merge_usage(usage, (data.get("message") or {}).get("usage"))
                    elif kind == "content_block_start":
                        cb = data.get("content_block") or {}
                        initial = cb.get("input")
                        block = _Block(
                            type=str(cb.get("type", "")),
                            id=str(cb.get("id") or ""),
                            name=str(cb.get("name") or ""),
                            initial=initial if isinstance(initial, dict) else {},
                        )
                        blocks[int(data.get("index", len(blocks)))] = block
                        if block.type == "text" and cb.get("text"):
                            yield TextDelta(text=str(cb["text"]))
                    elif kind == "content_block_delta":
                        delta = data.get("delta") or {}
                        block = blocks.get(int(data.get("index", 0))) or _Block("text")
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield TextDelta(text=str(delta["text"]))
                        elif delta.get("type") == "input_json_delta":
                            block.parts.append(str(delta.get("partial_json") or ""))
                    elif kind == "content_block_stop":
                        block = blocks.get(int(data.get("index", 0))) or _Block("text")
                        if block.type == "tool_use":
                            yield block.done()  # its arguments are complete now
                    elif kind == "message_delta":
                        stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                        _merge_usage(usage, data.get("usage"))
                    elif kind == "message_stop":
                        stopped = True
                        break
                    elif kind == "error":
                        err = data.get("error") or {}
                        error = str(err.get("message") if isinstance(err, dict) else err)
                        break
        except httpx.HTTPError as e:
            error = f"stream interrupted: {type(e).__name__}: {e}".rstrip(": ")
        if usage:
            yield UsageReport(
                usage=Usage(
                    input_tokens=usage.get("input_tokens", 0),
                    output_tokens=usage.get("output_tokens", 0),
                    cache_read_tokens=usage.get("cache_read_input_tokens", 0),
                    cache_write_tokens=usage.get("cache_creation_input_tokens", 0),
                )
            )
        if error is None and not stopped:
            error = "the stream ended before message_stop"
        if error is not None:
            yield Finish(stop_reason="error", error=error)
        elif stop_reason is None or stop_reason in _STOP:
            yield Finish(stop_reason=_STOP.get(stop_reason or "end_turn", "stop"))
        else:
            yield Finish(stop_reason="error", error=f"stop_reason {stop_reason!r}")

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _merge_usage(into: dict[str, int], usage: Any) -> None:
    """Later usage (message_delta) overrides earlier (message_start), field by field."""
    if not isinstance(usage, dict):
        return
    for key in (
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ):
        value = usage.get(key)
        if isinstance(value, int):
            into[key] = value
