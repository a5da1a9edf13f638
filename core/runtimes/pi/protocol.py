"""What ``pi --mode rpc`` speaks: JSONL framing and the messages Godel uses.

Everything here is pure (no I/O), so it is unit-tested without pi. The protocol is the
one of ``@mariozechner/pi-coding-agent`` 0.73.1 (``tools/pi/package.json`` pins it);
``tools/pi/node_modules/@mariozechner/pi-coding-agent/docs/rpc.md`` (installed by
``make setup``) is the spec; the recordings in ``tests/fixtures/pi/`` show how it behaves.

Framing: one JSON object per line, LF only; a trailing CR is stripped. Lines are split
on ``b"\\n"`` in bytes, never with a generic line reader (Unicode line separators are
valid inside JSON strings).

``message_update`` events repeat the whole partial message twice, so a long answer makes
megabytes of stdout; :func:`parse_line` reads only the delta type and text from them
without decoding the rest of the line.

pi's config files are written by :mod:`core.runtimes.pi.config`; what Godel makes of
these messages during an exec is decided by :mod:`core.runtimes.pi.run_loop`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from core.models import Usage

PI_VERSION = "0.73.1"

# Dialog requests block pi until answered; fire-and-forget ones need no answer.
DIALOG_METHODS = frozenset({"select", "confirm", "input", "editor"})


class LineSplitter:
    """Splits a byte stream into lines on ``\\n`` only, whatever the read boundaries."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete lines (without ``\\n`` and a trailing ``\\r``) ``data`` ends."""
        self._buf += data
        if b"\n" not in data:
            # Without this check a huge line arriving in many reads is re-split each time.
            return []
        *lines, rest = bytes(self._buf).split(b"\n")
        self._buf = bytearray(rest)
        return [_strip_cr(line) for line in lines]

    def flush(self) -> bytes | None:
        """At EOF: the unterminated last line, if any."""
        rest, self._buf = bytes(self._buf), bytearray()
        rest = _strip_cr(rest)
        return rest or None


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def encode_command(command: dict[str, Any]) -> bytes:
    """One command line for pi's stdin.

    ``ensure_ascii`` escapes every non-ASCII character, so no raw line separator (or
    anything else a reader could mistake for a record end) reaches pi.
    """
    return json.dumps(command, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


# --- What pi says ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to one command. ``id`` is None when pi could not read the command."""

    command: str
    success: bool
    id: str | None = None
    error: str | None = None
    data: Any = None


@dataclass(frozen=True, slots=True)
class AgentStart:
    pass


@dataclass(frozen=True, slots=True)
class AgentEnd:
    """The end of one agent run; not always the end of the prompt (retries follow)."""

    stop_reason: str | None  # of the run's last assistant message
    error_message: str | None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A user message entered the conversation: the prompt, or a steer being delivered."""

    text: str


@dataclass(frozen=True, slots=True)
class AssistantMessageEnd:
    """One model call finished; carries its final text, stop reason and usage."""

    text: str
    stop_reason: str | None
    error_message: str | None
    usage: Usage
    cost_total: float | None


@dataclass(frozen=True, slots=True)
class ToolStart:
    call_id: str
    name: str
    args: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolUpdate:
    """The tool's output so far (accumulated, not a delta)."""

    call_id: str
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolEnd:
    call_id: str
    name: str
    output: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class RetryStart:
    attempt: int
    max_attempts: int
    delay_ms: int
    error: str


@dataclass(frozen=True, slots=True)
class RetryEnd:
    success: bool
    attempt: int
    final_error: str | None


@dataclass(frozen=True, slots=True)
class ExtensionUIRequest:
    id: str
    method: str
    title: str


@dataclass(frozen=True, slots=True)
class ExtensionError:
    message: str


@dataclass(frozen=True, slots=True)
class Other:
    """An event Godel does not use (turn_start, queue_update, other message_update...)."""

    type: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A stdout line that is not a JSON object."""

    text: str
    error: str


PiMessage = (
    Response
    | AgentStart
    | AgentEnd
    | TextDelta
    | UserMessage
    | AssistantMessageEnd
    | ToolStart
    | ToolUpdate
    | ToolEnd
    | RetryStart
    | RetryEnd
    | ExtensionUIRequest
    | ExtensionError
    | Other
    | Malformed
)

# Events whose content Godel never needs: skipped from the line's first bytes.
_SKIPPED = frozenset({"turn_start", "turn_end", "queue_update", "compaction_start"})
_TYPE_PREFIX = re.compile(r'\{"type":"([A-Za-z_]+)"')
# pi writes message_update as {"type","assistantMessageEvent":{"type","contentIndex",
# "delta",...,"partial"},"message"}; the fast path relies on that order and falls back
# to a full parse when it does not match.
_UPDATE_PREFIX = re.compile(
    r'\{"type":"message_update","assistantMessageEvent":\{"type":"([a-z_]+)"'
)
_DELTA_AT = re.compile(r',"contentIndex":\d+,"delta":')
_DECODER = json.JSONDecoder()


def parse_line(line: bytes) -> PiMessage | None:
    """Parse one stdout line; None for a blank line."""
    text = line.decode("utf-8", errors="replace")
    if not text.strip():
        return None
    m = _TYPE_PREFIX.match(text)
    if m is not None:
        kind = m.group(1)
        if kind in _SKIPPED:
            return Other(kind)
        if kind == "message_update":
            fast = _fast_update(text)
            if fast is not None:
                return fast
    try:
        obj = json.loads(text)
    except ValueError as e:
        return Malformed(text[:500], str(e))
    if not isinstance(obj, dict):
        return Malformed(text[:500], "not a JSON object")
    return parse_object(obj)


def _fast_update(text: str) -> PiMessage | None:
    m = _UPDATE_PREFIX.match(text)
    if m is None:
        return None
    kind = m.group(1)
    if kind != "text_delta":
        return Other(f"message_update:{kind}")
    d = _DELTA_AT.match(text, m.end())
    if d is None:
        return None
    try:
        delta, _ = _DECODER.raw_decode(text, d.end())
    except ValueError:
        return None
    return TextDelta(delta) if isinstance(delta, str) else None


def parse_object(obj: dict[str, Any]) -> PiMessage:
    """Map one decoded stdout object to the message Godel uses."""
    kind = obj.get("type")
    if kind == "response":
        rid = obj.get("id")
        return Response(
            command=str(obj.get("command", "")),
            success=bool(obj.get("success")),
            id=rid if isinstance(rid, str) else None,
            error=_opt_str(obj.get("error")),
            data=obj.get("data"),
        )
    if kind == "message_update":
        ev = _dict(obj.get("assistantMessageEvent"))
        ev_kind = str(ev.get("type", ""))
        delta = ev.get("delta")
        if ev_kind == "text_delta" and isinstance(delta, str):
            return TextDelta(delta)
        return Other(f"message_update:{ev_kind}")
    if kind == "message_start":
        msg = _dict(obj.get("message"))
        if msg.get("role") == "user":
            return UserMessage(message_text(msg))
        return Other("message_start")
    if kind == "message_end":
        msg = _dict(obj.get("message"))
        if msg.get("role") == "assistant":
            usage, cost_total = usage_of(msg)
            return AssistantMessageEnd(
                text=message_text(msg),
                stop_reason=_opt_str(msg.get("stopReason")),
                error_message=_opt_str(msg.get("errorMessage")),
                usage=usage,
                cost_total=cost_total,
            )
        return Other("message_end")
    if kind == "agent_start":
        return AgentStart()
    if kind == "agent_end":
        last = _last_assistant(obj.get("messages"))
        return AgentEnd(
            stop_reason=_opt_str(last.get("stopReason")) if last else None,
            error_message=_opt_str(last.get("errorMessage")) if last else None,
        )
    if kind == "tool_execution_start":
        args = obj.get("args")
        return ToolStart(
            call_id=str(obj.get("toolCallId", "")),
            name=str(obj.get("toolName", "")),
            args=args if isinstance(args, dict) else {},
        )
    if kind == "tool_execution_update":
        return ToolUpdate(
            call_id=str(obj.get("toolCallId", "")),
            name=str(obj.get("toolName", "")),
            text=content_text(_dict(obj.get("partialResult")).get("content")),
        )
    if kind == "tool_execution_end":
        return ToolEnd(
            call_id=str(obj.get("toolCallId", "")),
            name=str(obj.get("toolName", "")),
            output=content_text(_dict(obj.get("result")).get("content")),
            is_error=bool(obj.get("isError")),
        )
    if kind == "auto_retry_start":
        return RetryStart(
            attempt=_int(obj.get("attempt")),
            max_attempts=_int(obj.get("maxAttempts")),
            delay_ms=_int(obj.get("delayMs")),
            error=str(obj.get("errorMessage", "")),
        )
    if kind == "auto_retry_end":
        return RetryEnd(
            success=bool(obj.get("success")),
            attempt=_int(obj.get("attempt")),
            final_error=_opt_str(obj.get("finalError")),
        )
    if kind == "extension_ui_request":
        return ExtensionUIRequest(
            id=str(obj.get("id", "")),
            method=str(obj.get("method", "")),
            title=str(obj.get("title", "")),
        )
    if kind == "extension_error":
        return ExtensionError(str(obj.get("error") or obj.get("message") or obj))
    return Other(str(kind))


def _dict(v: object) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _opt_str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: object) -> int:
    return int(v) if isinstance(v, int | float) else 0


def _last_assistant(messages: object) -> dict[str, Any] | None:
    if not isinstance(messages, list):
        return None
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            return msg
    return None


def content_text(content: object) -> str:
    """The text parts of a message or tool-result ``content`` (a string or a part list)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        p["text"]
        for p in content
        if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
    )


def message_text(message: dict[str, Any]) -> str:
    return content_text(message.get("content"))


def usage_of(message: dict[str, Any]) -> tuple[Usage, float | None]:
    """An assistant message's token usage, and pi's own cost total (float dollars)."""
    u = _dict(message.get("usage"))
    usage = Usage(
        input_tokens=_int(u.get("input")),
        output_tokens=_int(u.get("output")),
        cache_read_tokens=_int(u.get("cacheRead")),
        cache_write_tokens=_int(u.get("cacheWrite")),
    )
    total = _dict(u.get("cost")).get("total")
    return usage, float(total) if isinstance(total, int | float) else None


# pi's AgentSession._isRetryableError (0.73.1): an error agent_end matching this is
# followed at once by auto_retry_start (or by auto_retry_end when retries are used up).
_RETRYABLE = re.compile(
    r"overloaded|provider.?returned.?error|rate.?limit|too many requests|429|500|502|503|504"
    r"|service.?unavailable|server.?error|internal.?error|network.?error|connection.?error"
    r"|connection.?refused|connection.?lost|websocket.?closed|websocket.?error"
    r"|other side closed|fetch failed|upstream.?connect|reset before headers|socket hang up"
    r"|ended without|http2 request did not get a response|timed? out|timeout|terminated"
    r"|retry delay",
    re.IGNORECASE,
)


def looks_retryable(error_message: str | None) -> bool:
    """True if pi would auto-retry after an agent run that ended with this error."""
    return bool(error_message) and _RETRYABLE.search(error_message or "") is not None
