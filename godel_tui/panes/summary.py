"""Pure text for the router-metrics and budget panes and the header line."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from core.models import Budget
from core.views.rows import RouterState, SpendState, SpendTotals
from godel_tui.model import Attention
from godel_tui.render import tokens_text

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    vals = values[-width:]
    if not vals:
        return ""
    top = max(vals) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in vals)


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.1f} ms"


def router_text(
    state: RouterState, ready_by_priority: Mapping[str, int], latencies: list[float]
) -> str:
    lines = [
        f"decisions {state.decisions}  routed {state.routed}  unroutable {state.unroutable}",
        f"rate {state.per_second:.1f}/s   p50 {_ms(state.latency_p50_ms)}"
        f"   p99 {_ms(state.latency_p99_ms)}",
        f"latency {sparkline(latencies)}",
        "queue   "
        + ("  ".join(f"{p} {n}" for p, n in ready_by_priority.items() if n) or "no ready tasks"),
        "strategy "
        + ("  ".join(f"{s}={k}" for s, k in state.strategies.items()) or "default pool only"),
        "breakers " + ("  ".join(f"{k} {n}" for k, n in state.breakers.items()) or "all closed"),
        "",
        "latest decisions:",
    ]
    for d in reversed(state.recent[-8:]):
        who = d.agent_id or "nobody"
        lines.append(f" {d.at:%H:%M:%S} {d.task_id} → {who} [{d.strategy}] {d.reason}")
    if not state.recent:
        lines.append(" none since the daemon started")
    return "\n".join(lines)


def _money(t: SpendTotals) -> str:
    if t.cost_usd is None:
        # Unknown price: "?"; nothing that costs ran (shell): "-", never "$0".
        return "?" if t.cost_unknown_execs else "-"
    prefix = "≥" if t.cost_unknown_execs else ""
    return f"{prefix}${t.cost_usd:.4f}" if t.cost_usd < Decimal(1) else f"{prefix}${t.cost_usd:.2f}"


def spend_text(state: SpendState, burn_per_min: Decimal | None) -> str:
    t = state.total
    burn = "-" if burn_per_min is None else f"${burn_per_min:.4f}/min"
    lines = [
        f"total {_money(t)}  tokens {tokens_text(t.tokens.total)}  execs {t.execs}",
        f"burn  {burn}" + ("" if state.budgets else "   limit: none set (godel budget set)"),
        *(budget_line(b, burn_per_min) for b in state.budgets),
        "",
    ]
    for title, part in (
        ("swarm", state.by_swarm),
        ("runtime", state.by_runtime),
        ("model", state.by_model),
    ):
        if not part:
            continue
        lines.append(f"by {title}:")
        for name, s in part.items():
            lines.append(
                f"  {(name or '-'):<14} {_money(s):>10}  {tokens_text(s.tokens.total):>7} tok"
            )
    return "\n".join(lines)


def budget_line(b: Budget, burn_per_min: Decimal | None) -> str:
    """One line, e.g. "limit project $0.40/$1.00 40% (resets 11-28 00:00) ~2h left";
    the time left is projected for dollar budgets at the current burn rate."""
    if b.unit == "usd":
        amounts = f"${b.spent:.2f}/${b.limit:.2f}"
    else:
        amounts = f"{tokens_text(int(b.spent))}/{tokens_text(int(b.limit))} tok"
    pct = f"{b.spent / b.limit:.0%}" if b.limit > 0 else "100%"
    line = f"limit {b.scope} {amounts} {pct}"
    if b.reserved:
        line += " +reserved"
    if b.reset_at is not None:
        line += f" (resets {b.reset_at:%m-%d %H:%M})"
    if b.spent >= b.limit:
        return line + " EXHAUSTED"
    if b.unit == "usd" and burn_per_min is not None and burn_per_min > 0:
        minutes = (b.limit - b.spent) / burn_per_min
        line += f" ~{_duration(float(minutes))} left"
    return line


def _duration(minutes: float) -> str:
    if minutes < 60:
        return f"{minutes:.0f}m"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f}h"
    return f"{minutes / 1440:.0f}d"


def attention_text(att: Attention) -> str:
    if att.total == 0:
        return "nothing needs you"
    parts = []
    if att.failed_tasks:
        parts.append(_count(att.failed_tasks, "failed task"))
    if att.unhealthy:
        parts.append(_count(att.unhealthy, "unhealthy agent"))
    if att.lost_or_failed:
        parts.append(_count(att.lost_or_failed, "lost or failed agent"))
    if att.open_breakers:
        parts.append(_count(att.open_breakers, "open breaker"))
    return "needs you: " + ", ".join(parts) + "  (! jumps)"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"
