"""A request of either API normalised into provider-neutral messages (``Context``), which
rules match against and templates render from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ApiName",
    "Call",
    "Context",
    "MessageKind",
    "Msg",
    "anthropic_messages",
    "openai_messages",
]

ApiName = Literal["openai", "anthropic"]
MessageKind = Literal["system", "user", "assistant", "tool_result"]


@dataclass
class Call:
    id: str
    name: str
    args: dict[str, Any]
    raw: str


@dataclass
class Msg:
    kind: MessageKind
    text: str = ""
    calls: list[Call] = field(default_factory=list)
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


def openai_messages(body: dict[str, Any]) -> list[Msg]:
    out: list[Msg] = []
    names: dict[str, str] = {}
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role in ("system", "developer"):
            out.append(Msg("system", _text_of(m.get("content"))))
        elif role == "user":
            out.append(Msg("user", _text_of(m.get("content"))))
        elif role == "assistant":
            calls = []
            for i, tc in enumerate(m.get("tool_calls") or []):
                if not isinstance(tc, dict):
                    continue
                fn = tc.get("function") or {}
                args, raw = _parse_args(fn.get("arguments"))
                call = Call(str(tc.get("id") or f"call_{i}"), str(fn.get("name") or ""), args, raw)
                names[call.id] = call.name
                calls.append(call)
            out.append(Msg("assistant", _text_of(m.get("content")), calls))
        elif role in ("tool", "function"):
            call_id = m.get("tool_call_id")
            name = m.get("name") or names.get(str(call_id))
            out.append(Msg("tool_result", _text_of(m.get("content")), [], call_id, name))
    return out


def anthropic_messages(body: dict[str, Any]) -> list[Msg]:
    out: list[Msg] = []
    if body.get("system"):
        out.append(Msg("system", _text_of(body["system"])))
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
                    out.append(Msg("tool_result", _text_of(b.get("content")), [], call_id, name))
                elif isinstance(b.get("text"), str):
                    texts.append(b["text"])
            if texts or not any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks
            ):
                out.append(Msg("user", "\n".join(texts)))
        elif m.get("role") == "assistant":
            texts, calls = [], []
            for b in blocks:
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "tool_use":
                    args, raw = _parse_args(b.get("input"))
                    call = Call(str(b.get("id") or ""), str(b.get("name") or ""), args, raw)
                    names[call.id] = call.name
                    calls.append(call)
                elif b.get("type") == "text" and isinstance(b.get("text"), str):
                    texts.append(b["text"])
            out.append(Msg("assistant", "\n".join(texts), calls))
    return out


@dataclass
class Context:
    """What rules match on and templates render from, for one request."""

    api: ApiName
    model: str
    messages: list[Msg]

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
    def system_text(self) -> str:
        """The system prompt ("" without one); several system messages are joined."""
        return "\n".join(m.text for m in self.messages if m.kind == "system")

    @property
    def tool_result(self) -> Msg | None:
        return next((m for m in reversed(self.messages) if m.kind == "tool_result"), None)

    @property
    def tool_call(self) -> Call | None:
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
