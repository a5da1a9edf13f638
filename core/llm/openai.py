"""A streaming client for OpenAI-compatible chat completions (OpenAI, vLLM, Ollama,
llama.cpp, proxies, Godel's scripted server).

Usage mapping: OpenAI's ``prompt_tokens`` include cached tokens, so ``input_tokens`` is
``prompt_tokens - cached_tokens`` and the cached part goes to ``cache_read_tokens``; that
way ``Usage.total_tokens`` never counts a token twice.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from core.llm.http import RetryInfo, RetrySettings, StreamingEndpoint, iter_sse
from core.llm.types import (
    ChatMessage,
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

_STOP: dict[str, StopReason] = {
    "stop": "stop",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "length",
}


def _arguments_json(call: ToolCall) -> str:
    """The arguments as sent back to the API: the model's own text when it was valid JSON."""
    if call.raw_arguments:
        try:
            json.loads(call.raw_arguments)
            return call.raw_arguments
        except json.JSONDecodeError:
            pass
    return json.dumps(call.arguments)


def to_openai_messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for m in request.messages:
        out.append(_message(m))
    return out


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "user":
        return {"role": "user", "content": m.content}
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    msg: dict[str, Any] = {"role": "assistant", "content": m.content or None}
    if m.tool_calls:
        msg["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _arguments_json(c)},
            }
            for c in m.tool_calls
        ]
    return msg


def build_openai_body(
    request: ChatRequest,
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": to_openai_messages(request),
        "stream": True,
        "stream_options": {"include_usage": True},
        max_tokens_field: request.max_tokens,
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
    return body


def parse_arguments(raw: str) -> dict[str, Any]:
    """Parsed tool arguments; {} when the text is not a JSON object (raw is kept apart)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)

    def done(self, index: int) -> ToolCallDone:
        raw = "".join(self.parts)
        call = ToolCall(
            id=self.id or f"call_{index}",
            name=self.name,
            arguments=parse_arguments(raw),
            raw_arguments=raw,
        )
        return ToolCallDone(call=call)


class OpenAIClient:
    """``base_url`` ends before ``/chat/completions`` (e.g. ``https://api.openai.com/v1``)."""

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
        max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
        on_retry: Callable[[RetryInfo], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_tokens_field = max_tokens_field
        all_headers = {"Authorization": f"Bearer {api_key}", **(headers or {})}
        self._endpoint = StreamingEndpoint(
            "openai",
            f"{self.base_url}/chat/completions",
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
        body = build_openai_body(request, self.max_tokens_field)
        async for event in self._endpoint.stream(body, self._events):
            yield event

    async def _events(self, response: httpx.Response) -> AsyncGenerator[LLMEvent, None]:
        calls: dict[int, _PartialCall] = {}
        emitted = False
        done = False  # saw [DONE]
        finish_reason: str | None = None
        usage: Usage | None = None
        error: str | None = None
        try:
            async with contextlib.aclosing(iter_sse(response)) as messages:
                async for msg in messages:
                    if msg.data.strip() == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(msg.data)
                    except json.JSONDecodeError:
                        error = f"invalid JSON in the stream: {msg.data[:200]!r}"
                        break
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error"):
                        err = chunk["error"]
                        error = str(err.get("message") if isinstance(err, dict) else err)
                        break
                    if isinstance(chunk.get("usage"), dict):
                        usage = _usage(chunk["usage"])
                    for choice in chunk.get("choices") or []:
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if isinstance(text, str) and text:
                            yield TextDelta(text=text)
                        for frag in delta.get("tool_calls") or []:
                            _add_fragment(calls, frag)
                        if choice.get("finish_reason"):
                            finish_reason = str(choice["finish_reason"])
                            # The finish chunk closes every call's arguments.
                            if not emitted:
                                for i in sorted(calls):
                                    yield calls[i].done(i)
                                emitted = True
        except httpx.HTTPError as e:
            error = f"stream interrupted: {type(e).__name__}: {e}".rstrip(": ")
        if error is None and finish_reason is None and not done:
            # Either marker is enough (some servers send one only); neither means a cut stream.
            error = "the stream ended without a finish_reason or [DONE]"
        if error is None and not emitted:
            for i in sorted(calls):
                yield calls[i].done(i)
            emitted = True
        if usage is not None:
            yield UsageReport(usage=usage)
        if error is not None:
            yield Finish(stop_reason="error", error=error)
        elif finish_reason is None:
            yield Finish(stop_reason="tool_use" if calls else "stop")
        elif finish_reason in _STOP:
            yield Finish(stop_reason=_STOP[finish_reason])
        else:
            yield Finish(stop_reason="error", error=f"finish_reason {finish_reason!r}")

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _add_fragment(calls: dict[int, _PartialCall], frag: Any) -> None:
    if not isinstance(frag, dict):
        return
    index = frag.get("index")
    if not isinstance(index, int):
        # No index: a fragment with an id starts a new call, one without continues the last.
        index = len(calls) if frag.get("id") or not calls else max(calls)
    call = calls.setdefault(index, _PartialCall())
    if frag.get("id"):
        call.id = str(frag["id"])
    fn = frag.get("function") or {}
    if fn.get("name"):
        call.name = str(fn["name"])
    if isinstance(fn.get("arguments"), str):
        call.parts.append(fn["arguments"])


def _usage(u: dict[str, Any]) -> Usage:
    details = u.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    prompt = int(u.get("prompt_tokens") or 0)
    return Usage(
        input_tokens=max(0, prompt - cached),
        output_tokens=int(u.get("completion_tokens") or 0),
        cache_read_tokens=cached,
    )
