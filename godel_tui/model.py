"""The console's state: the shared views plus what the console adds (order, filter,
marks, what changed since the last frame, what needs a human). Pure: no I/O, no Textual.

Events are applied as they arrive, and the widgets read the model once per frame: the
ids changed since the last frame (``take_dirty``) are the only rows rendered again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.events import (
    AgentCreated,
    AgentHealthChanged,
    AgentSpawned,
    AgentStatusChanged,
    DoFinished,
    DoPlanned,
    DoStarted,
    DoStep,
    Event,
    ExecFinished,
    ExecStarted,
    TaskChanged,
)
from core.models import AgentStatus
from core.views import Views, ViewSnapshot
from core.views.cells import AgentCell
from godel_tui.filter import AgentFilter, parse_filter
from godel_tui.render import SORT_KEYS, filter_fields

# A failed or lost agent needs a human for this long after it ended (then it is history).
ATTENTION_WINDOW = timedelta(hours=1)


@dataclass
class Attention:
    """What needs a human now, counted; ``agents`` are the rows the jump key visits."""

    failed_tasks: int = 0
    unhealthy: int = 0
    lost_or_failed: int = 0
    open_breakers: int = 0
    agents: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.failed_tasks + self.unhealthy + self.lost_or_failed + self.open_breakers


class ConsoleModel:
    def __init__(self, snapshot: ViewSnapshot | None = None) -> None:
        self.views = Views(snapshot)
        self.filter: AgentFilter = parse_filter("")
        self.sort_key = "swarm"
        self.sort_reverse = False
        self.show_ended = False
        self.marked: set[str] = set()
        self.version = 0  # bumps on every change the frame must show
        self._dirty: set[str] = set()
        self._order_stale = True
        self._order: list[str] = []
        # Per godel do run: bumped on each of its events (the runs view redraws a run
        # whose version moved), and its steps counted (the lines new since it looked).
        self.run_versions: dict[str, int] = {}
        self.run_steps: dict[str, int] = {}
        self.loads = 0  # snapshots loaded: the runs view starts over at each

    # state in ------------------------------------------------------------------------

    def load(self, snapshot: ViewSnapshot) -> None:
        """Start again from ``snapshot`` (first load, or a resync after a gap)."""
        self.views = Views(snapshot)
        self.marked &= set(self.views.agents)
        self.loads += 1
        self.run_versions = {r: self.run_versions.get(r, 0) + 1 for r in self.views.runs}
        self.run_steps = {r.run: len(r.lines) for r in self.views.runs.values()}
        self._all_dirty()

    def apply(self, event: Event) -> None:
        agent = getattr(event, "agent_id", None)
        cell = self.views.agents.get(agent) if isinstance(agent, str) else None
        was_ended = cell is not None and cell.status.is_terminal
        self.views.apply(event)
        self.version += 1
        if isinstance(event, AgentCreated | AgentSpawned):
            self._order_stale = True
        if isinstance(agent, str):
            self._dirty.add(agent)
            if self._reorders(event, was_ended):
                self._order_stale = True
        if isinstance(event, TaskChanged) and event.previous_agent:
            self._dirty.add(event.previous_agent)
        if isinstance(event, DoStarted | DoPlanned | DoStep | DoFinished):
            self.run_versions[event.run] = self.run_versions.get(event.run, 0) + 1
            if isinstance(event, DoStep):
                self.run_steps[event.run] = self.run_steps.get(event.run, 0) + 1

    def _reorders(self, event: Event, was_ended: bool) -> bool:
        """Whether an agent's event can move its row, or take it in or out of the list:
        re-sorting 1,000 rows on every status change, at hundreds a second, is what a
        frame must not pay for nothing."""
        if not self.filter.empty:
            return True  # any field may match now, or no longer
        if isinstance(event, AgentStatusChanged):
            ended = event.status.is_terminal
            return ended != was_ended or self.sort_key in ("status", "source")
        if isinstance(event, AgentHealthChanged):
            return self.sort_key == "health"
        if isinstance(event, ExecStarted | ExecFinished):
            return self.sort_key in ("tokens", "cost")
        if isinstance(event, TaskChanged):
            return self.sort_key == "task"
        return False

    def apply_all(self, events: Iterable[Event]) -> None:
        for e in events:
            self.apply(e)

    def set_filter(self, text: str) -> None:
        self.filter = parse_filter(text)  # FilterError propagates: the caller says why
        self._all_dirty()

    def set_sort(self, key: str, reverse: bool = False) -> None:
        if key not in SORT_KEYS:
            raise ValueError(f"cannot sort by {key!r}")
        self.sort_key, self.sort_reverse = key, reverse
        self._all_dirty()

    def toggle_mark(self, agent_id: str) -> None:
        self.marked ^= {agent_id}
        self._dirty.add(agent_id)
        self.version += 1

    def _all_dirty(self) -> None:
        self._order_stale = True
        self._dirty.update(self.views.agents)
        self.version += 1

    # state out -----------------------------------------------------------------------

    def take_dirty(self) -> set[str]:
        out, self._dirty = self._dirty, set()
        return out

    def agent(self, agent_id: str) -> AgentCell | None:
        return self.views.agents.get(agent_id)

    def order(self) -> list[str]:
        """Agent ids as shown: filtered, sorted (by swarm, then the sort key, then id)."""
        if self._order_stale:
            self._order = self._compute_order()
            self._order_stale = False
        return self._order

    def _compute_order(self) -> list[str]:
        flt = self.filter
        rows = [
            a
            for a in self.views.agents.values()
            if (self.show_ended or not a.status.is_terminal or a.id in self.marked)
            and (flt.empty or flt.matches(filter_fields(a)))
        ]
        key = SORT_KEYS[self.sort_key]
        rows.sort(key=lambda a: a.id)
        rows.sort(key=key, reverse=self.sort_reverse)  # type: ignore[arg-type]
        if self.sort_key != "swarm":
            rows.sort(key=lambda a: a.swarm or "")  # grouped by swarm, stable inside
        return [a.id for a in rows]

    def attention(self, now: datetime | None = None) -> Attention:
        now = now or datetime.now(UTC)
        att = Attention()
        for counts in self.views.task_counts.values():
            att.failed_tasks += counts.get("failed", 0)
        for a in self.views.agents.values():
            if a.status is AgentStatus.UNHEALTHY:
                att.unhealthy += 1
                att.agents.append(a.id)
            elif (
                a.status in (AgentStatus.LOST, AgentStatus.FAILED)
                and now - a.status_at <= ATTENTION_WINDOW
            ):
                att.lost_or_failed += 1
                att.agents.append(a.id)
            if a.breaker == "open" and not a.status.is_terminal:
                att.open_breakers += 1
                if a.id not in att.agents:
                    att.agents.append(a.id)
        return att
