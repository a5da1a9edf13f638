"""Matching a rule against a request and rendering its reply into a provider-neutral
``Answer`` (or ``ErrorAnswer``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from core.llm.scripted.request import Context
from core.llm.scripted.script import PLACEHOLDER, Reply, Rule, UsageSpec

__all__ = ["Answer", "ErrorAnswer", "build_answer", "match_rule"]


@dataclass
class Answer:
    """A rendered reply, provider-neutral."""

    text: str
    calls: list[tuple[str, str, dict[str, Any]]]  # (id, name, arguments)
    stop_reason: str  # neutral: stop | tool_use | length, or a raw provider value
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    chunk_delay_s: float


@dataclass
class ErrorAnswer:
    status: int
    message: str
    type: str | None = None
    retry_after: float | None = None


def _render(template: str, variables: dict[str, str], args: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var.startswith("tool_args."):
            value = args.get(var.removeprefix("tool_args."))
            if value is None:
                return ""
            return value if isinstance(value, str) else json.dumps(value)
        return variables.get(var, m.group(0))

    return PLACEHOLDER.sub(sub, template)


def _render_value(value: Any, variables: dict[str, str], args: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _render(value, variables, args)
    if isinstance(value, dict):
        return {k: _render_value(v, variables, args) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, variables, args) for v in value]
    return value


def build_answer(ctx: Context, reply: Reply, variables: dict[str, str]) -> Answer | ErrorAnswer:
    call = ctx.tool_call
    args = call.args if call is not None else {}
    if reply.error is not None:
        e = reply.error
        status_text = _render(str(e.status), variables, args)
        try:
            status = int(status_text)
        except ValueError:
            status = 0
        if not 400 <= status <= 599:
            msg = f"scripted server: error status {status_text!r} is not an HTTP error status"
            return ErrorAnswer(500, msg)
        message = _render(e.message, variables, args) or f"scripted error {status}"
        return ErrorAnswer(status, message, e.type, e.retry_after)
    text = _render(reply.text or "", variables, args)
    prefix = "toolu" if ctx.api == "anthropic" else "call"
    calls = [
        (
            f"{prefix}_{ctx.turn}_{i}",
            _render(tc.name, variables, args),
            _render_value(tc.arguments, variables, args),
        )
        for i, tc in enumerate(reply.tool_calls)
    ]
    reply_chars = len(text) + sum(len(n) + len(json.dumps(a)) for _, n, a in calls)
    u = reply.usage or UsageSpec()
    return Answer(
        text=text,
        calls=calls,
        stop_reason=reply.stop_reason or ("tool_use" if calls else "stop"),
        input_tokens=(
            u.input_tokens if u.input_tokens is not None else math.ceil(ctx.request_chars() / 4)
        ),
        output_tokens=u.output_tokens
        if u.output_tokens is not None
        else math.ceil(reply_chars / 4),
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        chunk_delay_s=reply.chunk_delay_s,
    )


def match_rule(rule: Rule, ctx: Context) -> dict[str, str] | None:
    """The template variables if ``rule`` matches (ignoring nth_request), else None."""
    m = rule.match
    last = ctx.last
    if m.model is not None and m.model != ctx.model:
        return None
    if m.last is not None and m.last != last:
        return None
    needs_tool = m.tool_result_regex is not None or m.tool_name is not None
    result = ctx.tool_result
    if needs_tool and (last != "tool_result" or result is None):
        return None
    if m.tool_name is not None and (result is None or result.tool_name != m.tool_name):
        return None
    if rule._system_re is not None and rule._system_re.search(ctx.system_text) is None:
        return None
    user_text = ctx.user_text
    user_m = tool_m = None
    if rule._user_re is not None:
        if user_text is None:
            return None
        user_m = rule._user_re.search(user_text)
        if user_m is None:
            return None
    if rule._tool_re is not None:
        assert result is not None
        tool_m = rule._tool_re.search(result.text)
        if tool_m is None:
            return None
    variables = {
        "message": user_text or "",
        "tool_output": result.text if result else "",
        "tool_name": (result.tool_name or "") if result else "",
        "model": ctx.model,
    }
    for rm in (tool_m, user_m):  # user_regex wins a clash of group names
        if rm is not None:
            variables.update({k: v or "" for k, v in rm.groupdict().items()})
    numbered = user_m or tool_m
    if numbered is not None:
        variables["0"] = numbered.group(0)
        for i, g in enumerate(numbered.groups(), start=1):
            variables[str(i)] = g or ""
    return variables
