"""Pure render functions: a view's data -> the text and style of each cell.

No Textual here (only Rich styles by name), so every row and summary the console shows
is unit-tested without a UI, as k9s tests its renderers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from core.models import AgentStatus
from core.views.cells import AgentCell, SpendCell
from core.views.rows import DoRunRow, DoTaskRow

# One glyph per status (the peers' convention: filled = working, hollow = idle).
GLYPHS: dict[AgentStatus, tuple[str, str]] = {
    AgentStatus.STARTING: ("◐", "yellow"),
    AgentStatus.IDLE: ("○", "green"),
    AgentStatus.BUSY: ("●", "bold green"),
    AgentStatus.UNHEALTHY: ("▲", "bold red"),
    AgentStatus.STOPPED: ("■", "dim"),
    AgentStatus.LOST: ("✕", "bold red"),
    AgentStatus.FAILED: ("✕", "red"),
    AgentStatus.UNKNOWN: ("?", "magenta"),
}

Cell = tuple[str, str]  # text, Rich style ("" = default)


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int
    right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("name", "AGENT", 18),
    Column("status", "STATUS", 11),
    Column("source", "SOURCE · AGE", 18),
    Column("swarm", "SWARM", 10),
    Column("runtime", "RUNTIME", 7),
    Column("model", "MODEL", 12),
    Column("task", "TASK", 17),
    Column("health", "BREAKER", 9),
    Column("tokens", "TOKENS", 9, right=True),
    Column("cost", "COST", 9, right=True),
)


def age(seconds: float) -> str:
    """``4s``, ``12m``, ``3h``, ``2d``: short, as kubectl prints ages."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def tokens_text(n: int) -> str:
    if n < 10_000:
        return str(n)
    if n < 10_000_000:
        return f"{n / 1000:.0f}k"
    return f"{n / 1_000_000:.0f}M"


def cost_text(spend: SpendCell) -> Cell:
    """Dollars; unknown is ``?`` (never shown as free), a lower bound ``≥``."""
    if spend.cost is None:
        return ("?" if spend.cost_unknown else "-", "dim")
    text = f"${spend.cost:.4f}" if spend.cost < Decimal("1") else f"${spend.cost:.2f}"
    return (("≥" + text) if spend.cost_unknown else text, "")


def agent_label(a: AgentCell) -> str:
    return a.name or a.id


def agent_cells(a: AgentCell, now: datetime) -> list[Cell]:
    """One agent's row, in ``COLUMNS`` order."""
    glyph, style = GLYPHS.get(a.status, ("?", "magenta"))
    s = a.spend
    total = s.input + s.output + s.cache_read + s.cache_write
    since = age((now - a.status_at).total_seconds())
    return [
        (agent_label(a), "bold" if a.status is AgentStatus.BUSY else ""),
        (f"{glyph} {a.status.value}", style),
        (f"{a.status_source.value} · {since}", "dim"),
        (a.swarm or "-", "" if a.swarm else "dim"),
        (a.runtime, ""),
        (a.model or "-", "" if a.model else "dim"),
        (a.current_task or "-", "" if a.current_task else "dim"),
        _breaker_cell(a.breaker),
        (tokens_text(total), "" if total else "dim"),
        cost_text(s),
    ]


def _breaker_cell(state: str) -> Cell:
    return (state, {"closed": "green", "open": "bold red", "half_open": "yellow"}.get(state, ""))


def filter_fields(a: AgentCell) -> dict[str, str]:
    """What the ``/`` filter grammar matches on (``godel_tui.filter``), lower case."""
    return {
        "status": a.status.value,
        "runtime": a.runtime.lower(),
        "swarm": (a.swarm or "").lower(),
        "model": (a.model or "").lower(),
        "name": (a.name or "").lower(),
        "id": a.id.lower(),
        "task": (a.current_task or "").lower(),
        "source": a.status_source.value,
        "health": a.breaker,
    }


_BREAKER_RANK = {"open": 0, "half_open": 1, "closed": 2}  # the worst first


def _status_rank(a: AgentCell) -> int:
    return list(GLYPHS).index(a.status) if a.status in GLYPHS else len(GLYPHS)


SORT_KEYS: Mapping[str, Callable[[AgentCell], object]] = {
    "name": lambda a: agent_label(a),
    "status": _status_rank,
    "source": lambda a: a.status_at,
    "swarm": lambda a: a.swarm or "",
    "runtime": lambda a: a.runtime,
    "model": lambda a: a.model or "",
    "task": lambda a: a.current_task or "",
    "health": lambda a: _BREAKER_RANK.get(a.breaker, len(_BREAKER_RANK)),
    "tokens": lambda a: a.spend.input + a.spend.output + a.spend.cache_read + a.spend.cache_write,
    "cost": lambda a: a.spend.cost or Decimal(0),
}


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` cut or padded to ``width`` cells (a cut ends with an ellipsis)."""
    if len(text) > width:
        text = text[: max(0, width - 1)] + "…"
    return text.rjust(width) if right else text.ljust(width)


# --- godel do runs (the runs view, ``godel_tui.screens.runs``) --------------------------

RUN_GLYPHS: dict[str, Cell] = {
    "planning": ("◐", "yellow"),
    "running": ("●", "bold green"),
    "merged": ("✓", "green"),
    "failed": ("✕", "red"),
    "budget_exhausted": ("$", "bold yellow"),
    "interrupted": ("■", "yellow"),
    "error": ("✕", "bold red"),
}
TASK_GLYPHS: dict[str, Cell] = {
    "waiting": ("·", "dim"),
    "running": ("●", "bold green"),
    "gating": ("◐", "yellow"),
    "ready": ("◆", "cyan"),
    "merged": ("✓", "green"),
    "failed": ("✕", "red"),
    "skipped": ("-", "dim"),
}
ACTIVE_RUN_STATES = ("planning", "running")

RUN_COLUMNS: tuple[Column, ...] = (
    Column("state", "STATE", 18),
    Column("run", "RUN", 24),
    Column("intent", "INTENT", 32),
    Column("strategy", "STRATEGY", 9),
    Column("tasks", "MERGED", 7, right=True),
    Column("time", "TIME", 7, right=True),
    Column("exit", "EXIT", 4, right=True),
)
TASK_COLUMNS: tuple[Column, ...] = (
    Column("level", "LVL", 3, right=True),
    Column("name", "TASK", 16),
    Column("runtime", "RUNTIME", 8),
    Column("state", "STATE", 10),
    Column("agent", "AGENT", 13),
    Column("age", "AGE", 4, right=True),
    Column("line", "LAST STEP", 60),
)


def duration(seconds: float) -> str:
    """A run's elapsed time: ``0.2s`` under 10 s, then as ``age``."""
    return f"{seconds:.1f}s" if seconds < 10 else age(seconds)


def run_active(run: DoRunRow) -> bool:
    return run.state in ACTIVE_RUN_STATES and not run.finished


def merged_count(run: DoRunRow) -> tuple[int, int]:
    return sum(1 for t in run.tasks if t.state == "merged"), len(run.tasks)


def runs_newest_first(runs: Iterable[DoRunRow]) -> list[DoRunRow]:
    return sorted(runs, key=lambda r: (r.started_at, r.run), reverse=True)


def run_cells(run: DoRunRow, now: datetime) -> list[Cell]:
    """One run's row, in ``RUN_COLUMNS`` order: its time is the elapsed time once it
    finished, else how long ago it started."""
    glyph, style = RUN_GLYPHS.get(run.state, ("?", "magenta"))
    merged, total = merged_count(run)
    if run.elapsed_s is not None:
        when: Cell = (duration(run.elapsed_s), "")
    else:
        when = (age((now - run.started_at).total_seconds()), "dim")
    exit_cell: Cell = ("-", "dim") if run.exit_code is None else (str(run.exit_code), "")
    if run.exit_code:
        exit_cell = (exit_cell[0], "red")
    return [
        (f"{glyph} {run.state}", style),
        (run.run, "bold" if run_active(run) else ""),
        (run.intent, ""),
        (run.strategy, ""),
        (f"{merged}/{total}" if run.tasks else "-", "" if run.tasks else "dim"),
        when,
        exit_cell,
    ]


def task_cells(task: DoTaskRow, now: datetime) -> list[Cell]:
    """One task of a run, in ``TASK_COLUMNS`` order."""
    glyph, style = TASK_GLYPHS.get(task.state, ("?", "magenta"))
    since = age((now - task.at).total_seconds()) if task.at is not None else "-"
    return [
        (str(task.level), "dim"),
        (task.name, "bold" if task.state in ("running", "gating") else ""),
        (task.runtime, ""),
        (f"{glyph} {task.state}", style),
        (task.agent_id or "-", "" if task.agent_id else "dim"),
        (since, "dim"),
        (task.line or "-", "" if task.line else "dim"),
    ]


def run_title(run: DoRunRow) -> str:
    """The selected run's heading: what it does, where, how, and how it ended."""
    gate = f"gate `{run.gate}`" if run.gate else "no gate"
    head = f"{run.run}: {run.intent}  ·  {run.repo or '-'}  ·  {run.runtime}, {gate}"
    if run.plan_source:
        head += f", plan from {run.plan_source}"
    if run.message:
        head += f"  ·  {run.message}"
    return head


def runs_cue(runs: Iterable[DoRunRow], now: datetime, window: timedelta, key: str = "D") -> str:
    """The main screen's cue for ``godel do`` runs ("" when none): the active ones with
    their progress, and those that ended without merging within ``window``; ``key``
    opens the runs view."""
    active, failed = [], []
    for r in runs_newest_first(runs):
        merged, total = merged_count(r)
        if run_active(r):
            progress = f"{merged}/{total} merged" if r.tasks else "planning"
            active.append(f"do run {r.run}: {progress}")
        elif r.state != "merged" and r.finished_at and now - r.finished_at <= window:
            failed.append(f"do run {r.run} {r.state} (exit {r.exit_code})")
    parts = active[:2] + failed[:1]
    more = len(active) + len(failed) - len(parts)
    if not parts:
        return ""
    return "  ·  ".join(parts) + (f" +{more} more" if more > 0 else "") + f"  ({key} shows runs)"
