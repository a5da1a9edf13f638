"""One readable line per runtime activity (tool calls, results, usage, notices).

Used for the agent's stored log (``godel agent logs``) and by ``godel agent exec``.
"""

from __future__ import annotations

import json

from core.models import (
    PolicyViolation,
    RuntimeEvent,
    RuntimeNotice,
    ToolCallFinished,
    ToolCallStarted,
    TurnUsage,
)


def activity_line(ev: RuntimeEvent) -> str:
    """One readable line per activity for ``godel agent logs`` (stream "system")."""
    if isinstance(ev, ToolCallStarted):
        return f"→ {ev.name} {json.dumps(ev.arguments, ensure_ascii=False)}\n"
    if isinstance(ev, ToolCallFinished):
        mark = "✗" if ev.is_error else "←"
        return f"{mark} {ev.name}: {ev.output}" + ("" if ev.output.endswith("\n") else "\n")
    if isinstance(ev, TurnUsage):
        cost = "unknown" if ev.cost_usd is None else f"${ev.cost_usd:.6f}"
        return (
            f"· {ev.model}: {ev.usage.input_tokens} in / {ev.usage.output_tokens} out, "
            f"cost {cost}\n"
        )
    if isinstance(ev, PolicyViolation):
        return f"! refused ({ev.rule}): {ev.detail}\n"
    if isinstance(ev, RuntimeNotice):
        return f"· {ev.message}\n"
    return ""
