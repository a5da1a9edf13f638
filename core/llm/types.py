"""Provider-neutral types for talking to a chat model with tools.

Both clients (``core.llm.openai``, ``core.llm.anthropic``) take the same messages and
tools and yield the same ``LLMEvent`` stream, so an agent loop never sees which API it
is talking to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field

from core.errors import GodelError
from core.models import Usage


class ToolSpec(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any]  # parsed; {} if the model sent invalid JSON (see raw_arguments)
    raw_arguments: str = ""


class ChatMessage(BaseModel):
    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)  # assistant only
    tool_call_id: str | None = None  # tool only
    tool_name: str | None = None  # tool only
    is_error: bool = False  # tool only


StopReason = Literal["stop", "tool_use", "length", "error", "aborted"]


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ToolCallDone(BaseModel):
    """A complete tool call (arguments fully streamed and parsed)."""

    type: Literal["tool_call"] = "tool_call"
    call: ToolCall


class UsageReport(BaseModel):
    type: Literal["usage"] = "usage"
    usage: Usage


class Finish(BaseModel):
    type: Literal["finish"] = "finish"
    stop_reason: StopReason
    error: str | None = None


LLMEvent = Annotated[TextDelta | ToolCallDone | UsageReport | Finish, Field(discriminator="type")]


class LLMError(GodelError):
    """The endpoint failed after retries (or with a non-retryable status)."""

    code = -32010
    kind = "llm_error"


class UsageLimited(LLMError):
    """The provider's usage limit: an HTTP 429 whose Retry-After is longer than the client
    waits in place. Not retried: the caller pauses work on that provider until then."""

    def __init__(self, message: str, *, retry_after: float, **data: Any) -> None:
        super().__init__(message, retry_after=retry_after, **data)
        self.retry_after = retry_after


class ChatRequest(BaseModel):
    model: str  # the upstream model id
    system: str = ""
    messages: list[ChatMessage]
    tools: list[ToolSpec] = Field(default_factory=list)
    max_tokens: int = 4096


class LLMClient(Protocol):
    """One endpoint. ``stream`` yields deltas and complete tool calls, then a usage report
    (when the endpoint sends one) and exactly one ``Finish`` as the last event."""

    def stream(self, request: ChatRequest) -> AsyncIterator[LLMEvent]: ...

    async def aclose(self) -> None: ...
