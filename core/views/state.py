"""``Views``: the read side's state, a snapshot plus ``apply(event)``. Pure: no I/O, no
clock; the daemon keeps one current (a tap on its bus), and any face can rebuild one
from a ``view.snapshot`` and the events after its seq."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from decimal import Decimal
from statistics import quantiles
from typing import Any

from core.events import (
    AgentCreated,
    AgentHealthChanged,
    AgentSpawned,
    AgentStatusChanged,
    BudgetChanged,
    DoFinished,
    DoPlanned,
    DoStarted,
    DoStep,
    Event,
    ExecFinished,
    ExecStarted,
    SwarmChanged,
    TaskChanged,
    TaskRouted,
)
from core.models import AgentStatus, Budget, StatusSource, Swarm
from core.views.cells import AgentCell, SpendCell, TaskCell
from core.views.rows import (
    AgentRow,
    Decision,
    DoRunRow,
    DoTaskRow,
    RouterState,
    SpendState,
    SwarmRow,
    TaskRow,
    ViewSnapshot,
)

__all__ = ["ACTIVE_TASK_STATUSES", "RECENT_DECISIONS", "RECENT_TASKS", "Views"]

ACTIVE_TASK_STATUSES = frozenset({"queued", "ready", "running"})
RECENT_TASKS = 100
RECENT_DECISIONS = 50
LATENCY_SAMPLES = 512
RATE_WINDOW_S = 10.0
RECENT_RUNS = 10  # godel do runs kept (the running ones and the last finished)
RUN_LINES = 200  # a run's last printed lines kept
_SWARM_EXTRA = {"agents_by_status", "tasks_by_status", "ready_by_priority"}
_PRIORITIES = ("critical", "high", "normal", "low")


class Views:
    def __init__(self, snapshot: ViewSnapshot | None = None) -> None:
        snap = snapshot if snapshot is not None else ViewSnapshot(seq=0)
        self.seq = snap.seq
        self.agents: dict[str, AgentCell] = {a.id: AgentCell.of(a) for a in snap.agents}
        self.swarms: dict[str, Swarm] = {
            s.name: Swarm.model_validate(s.model_dump(exclude=_SWARM_EXTRA)) for s in snap.swarms
        }
        self.task_counts: dict[str, dict[str, int]] = {
            k: dict(v) for k, v in snap.tasks_by_status.items()
        }
        self.tasks_active: dict[str, TaskCell] = {t.id: TaskCell.of(t) for t in snap.tasks_active}
        self.tasks_recent: deque[TaskCell] = deque(
            (TaskCell.of(t) for t in snap.tasks_recent), maxlen=RECENT_TASKS
        )
        r = snap.router
        self.decisions, self.routed, self.unroutable = r.decisions, r.routed, r.unroutable
        self.strategies: dict[str, str] = dict(r.strategies)
        self.recent_decisions: deque[Decision] = deque(r.recent, maxlen=RECENT_DECISIONS)
        # Seeded from the snapshot's latest decisions, so a face that starts from a
        # snapshot shows the latency and rate they carry rather than "no data yet".
        self._latencies: deque[float] = deque(
            (d.elapsed_ms for d in r.recent), maxlen=LATENCY_SAMPLES
        )
        self._decision_times: deque[float] = deque(d.at.timestamp() for d in r.recent)
        sp = snap.spend
        self.spend_total = SpendCell.of(sp.total)
        self.spend_by: dict[str, dict[str, SpendCell]] = {
            "swarm": {k: SpendCell.of(v) for k, v in sp.by_swarm.items()},
            "runtime": {k: SpendCell.of(v) for k, v in sp.by_runtime.items()},
            "model": {k: SpendCell.of(v) for k, v in sp.by_model.items()},
        }
        self.budgets: dict[tuple[str, str], Budget] = {(b.scope, b.unit): b for b in sp.budgets}
        self.runs: dict[str, DoRunRow] = {r.run: r.model_copy(deep=True) for r in snap.runs}

    # folding ----------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one event in. Events this view does not show are ignored."""
        if event.seq > self.seq:
            self.seq = event.seq
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def _agent_created(self, e: AgentCreated) -> None:
        self.agents[e.agent_id] = AgentCell(
            id=e.agent_id,
            name=e.name,
            runtime=e.runtime,
            model=e.model,
            swarm=e.swarm,
            skills=list(e.skills),
            status=AgentStatus.STARTING,
            status_source=StatusSource.SPAWN,
            status_reason=e.status_reason,
            status_at=e.at,
            pid=None,
            workspace=e.workspace,
            created_at=e.at,
        )

    def _agent_spawned(self, e: AgentSpawned) -> None:
        if (a := self.agents.get(e.agent_id)) is not None:
            a.pid = e.pid

    def _agent_status(self, e: AgentStatusChanged) -> None:
        if (a := self.agents.get(e.agent_id)) is not None:
            a.status, a.status_source = e.status, e.source
            a.status_reason, a.status_at = e.reason, e.at

    def _agent_health(self, e: AgentHealthChanged) -> None:
        if (a := self.agents.get(e.agent_id)) is not None:
            if a.breaker != e.breaker:
                a.breaker, a.breaker_at = e.breaker, e.at
            a.health_detail = e.detail

    def _exec_started(self, e: ExecStarted) -> None:
        if (a := self.agents.get(e.agent_id)) is not None:
            a.spend.execs += 1
            a.current_exec = e.exec_id

    def _exec_finished(self, e: ExecFinished) -> None:
        cost = None if e.cost_usd is None else Decimal(e.cost_usd)
        a = self.agents.get(e.agent_id)
        if a is not None:
            if a.current_exec == e.exec_id:
                a.current_exec = None
            a.spend.add(e.usage, cost)
        by = self.spend_by
        for totals in (
            self.spend_total,
            _cell(by["swarm"], (a.swarm if a else None) or ""),
            _cell(by["runtime"], a.runtime if a else "unknown"),
            _cell(by["model"], e.model or ""),
        ):
            totals.execs += 1
            totals.add(e.usage, cost)

    def _task_changed(self, e: TaskChanged) -> None:
        counts = self.task_counts.setdefault(e.swarm or "", {})
        if e.previous is not None:
            left = counts.get(e.previous, 0) - 1
            if left > 0:
                counts[e.previous] = left
            else:
                counts.pop(e.previous, None)
        counts[e.status] = counts.get(e.status, 0) + 1
        row = TaskCell(
            e.task_id,
            e.swarm,
            e.status,
            e.agent_id,
            e.attempts,
            e.priority,
            e.runtime,
            e.error,
            e.input,
        )
        if e.previous is not None and e.previous not in ACTIVE_TASK_STATUSES:
            # Out of the finished ones again (a retry): the store lists it there no more.
            self._forget_recent(e.task_id)
        if e.status in ACTIVE_TASK_STATUSES:
            self.tasks_active[e.task_id] = row
        else:
            self.tasks_active.pop(e.task_id, None)
            self._forget_recent(e.task_id)
            self.tasks_recent.append(row)
        if e.previous == "running":
            for agent_id in {e.previous_agent, e.agent_id}:
                was = self.agents.get(agent_id) if agent_id else None
                if was is not None and was.current_task == e.task_id:
                    was.current_task = None
        if e.status == "running" and e.agent_id and (a := self.agents.get(e.agent_id)):
            a.current_task = e.task_id

    def _forget_recent(self, task_id: str) -> None:
        recent = self.tasks_recent
        if any(t.id == task_id for t in recent):
            self.tasks_recent = deque((t for t in recent if t.id != task_id), maxlen=RECENT_TASKS)

    def _swarm_changed(self, e: SwarmChanged) -> None:
        s = e.swarm
        if s.status == "active":
            self.swarms[s.name] = s
            self.strategies[s.name] = s.strategy
        else:
            self.swarms.pop(s.name, None)
            self.strategies.pop(s.name, None)

    def _budget_changed(self, e: BudgetChanged) -> None:
        key = (e.budget.scope, e.budget.unit)
        if e.cleared:
            self.budgets.pop(key, None)
        else:
            self.budgets[key] = e.budget

    def _do_started(self, e: DoStarted) -> None:
        self.runs[e.run] = DoRunRow(
            run=e.run,
            intent=e.intent,
            strategy=e.strategy,
            runtime=e.runtime,
            gate=e.gate,
            repo=e.repo,
            started_at=e.at,
        )
        while len(self.runs) > RECENT_RUNS:
            # Forget the oldest finished run (never a running one).
            done = [r for r in self.runs.values() if r.finished]
            if not done:
                break
            del self.runs[done[0].run]

    def _do_planned(self, e: DoPlanned) -> None:
        run = self.runs.get(e.run)
        if run is None:
            return
        run.state, run.plan_source = "running", e.source
        run.tasks = [
            DoTaskRow(name=t.name, level=t.level, runtime=t.runtime, files=list(t.files))
            for t in e.tasks
        ]

    def _do_step(self, e: DoStep) -> None:
        run = self.runs.get(e.run)
        if run is None:
            return
        run.lines.append(e.line)
        if len(run.lines) > RUN_LINES:
            del run.lines[: len(run.lines) - RUN_LINES]
        task = next((t for t in run.tasks if t.name == e.task), None)
        if task is None:
            return
        task.line, task.at = e.line, e.at
        if e.state is not None:
            task.state = e.state
        if e.agent_id is not None:
            task.agent_id = e.agent_id

    def _do_finished(self, e: DoFinished) -> None:
        run = self.runs.get(e.run)
        if run is None:
            return
        run.state, run.exit_code, run.elapsed_s = e.outcome, e.exit_code, e.elapsed_s
        run.finished_at, run.message = e.at, e.message

    def run_rows(self) -> list[DoRunRow]:
        return [r.model_copy(deep=True) for r in self.runs.values()]

    def _task_routed(self, e: TaskRouted) -> None:
        self.decisions += 1
        if e.agent_id is None:
            self.unroutable += 1
        else:
            self.routed += 1
        self.recent_decisions.append(
            Decision(
                task_id=e.task_id,
                agent_id=e.agent_id,
                swarm=e.swarm,
                strategy=e.strategy,
                reason=e.reason,
                elapsed_ms=e.elapsed_ms,
                at=e.at,
            )
        )
        self._latencies.append(e.elapsed_ms)
        t = e.at.timestamp()
        self._decision_times.append(t)
        while self._decision_times and self._decision_times[0] < t - RATE_WINDOW_S:
            self._decision_times.popleft()

    # reading ----------------------------------------------------------------------------

    def agent_rows(
        self,
        *,
        swarm: str | None = None,
        status: str | None = None,
        include_ended: bool = False,
    ) -> list[AgentRow]:
        out = []
        for a in self.agents.values():
            if not include_ended and status is None and a.status.is_terminal:
                continue
            if swarm is not None and a.swarm != swarm:
                continue
            if status is not None and a.status.value != status:
                continue
            out.append(a)
        out.sort(key=lambda a: (a.created_at, a.id))
        return [a.row() for a in out]

    def agent_row(self, agent_id: str) -> AgentRow | None:
        cell = self.agents.get(agent_id)
        return cell.row() if cell is not None else None

    def spend_state(self) -> SpendState:
        by = self.spend_by
        return SpendState(
            total=self.spend_total.totals(),
            by_swarm={k: v.totals() for k, v in sorted(by["swarm"].items())},
            by_runtime={k: v.totals() for k, v in sorted(by["runtime"].items())},
            by_model={k: v.totals() for k, v in sorted(by["model"].items())},
            budgets=[self.budgets[k] for k in sorted(self.budgets)],
        )

    def swarm_rows(self) -> list[SwarmRow]:
        by_swarm: dict[str, dict[str, int]] = {}
        for a in self.agents.values():
            if a.swarm is not None and not a.status.is_terminal:
                counts = by_swarm.setdefault(a.swarm, {})
                counts[a.status.value] = counts.get(a.status.value, 0) + 1
        ready: dict[str, dict[str, int]] = {}
        for t in self.tasks_active.values():
            if t.status == "ready" and t.swarm is not None:
                per = ready.setdefault(t.swarm, {})
                per[t.priority] = per.get(t.priority, 0) + 1
        return [
            SwarmRow(
                **s.model_dump(),
                agents_by_status=by_swarm.get(s.name, {}),
                tasks_by_status=dict(self.task_counts.get(s.name, {})),
                ready_by_priority={
                    p: ready[s.name][p] for p in _PRIORITIES if p in ready.get(s.name, {})
                },
            )
            for s in sorted(self.swarms.values(), key=lambda s: (s.created_at, s.name))
        ]

    def swarm_row(self, name: str) -> SwarmRow | None:
        return next((r for r in self.swarm_rows() if r.name == name), None)

    def router_state(self) -> RouterState:
        lat = list(self._latencies)
        p50 = p99 = None
        if len(lat) >= 2:
            q = quantiles(lat, n=100, method="inclusive")
            p50, p99 = round(q[49], 3), round(q[98], 3)
        elif lat:
            p50 = p99 = round(lat[0], 3)
        rate = 0.0
        if len(self._decision_times) >= 2:
            span = self._decision_times[-1] - self._decision_times[0]
            rate = round(len(self._decision_times) / max(span, 1.0), 2)
        return RouterState(
            decisions=self.decisions,
            routed=self.routed,
            unroutable=self.unroutable,
            per_second=rate,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            strategies=dict(sorted(self.strategies.items())),
            breakers=self.breaker_counts(),
            recent=list(self.recent_decisions),
        )

    def breaker_counts(self) -> dict[str, int]:
        """Live agents' breakers that are not closed, by state."""
        out: dict[str, int] = {}
        for a in self.agents.values():
            if a.breaker != "closed" and not a.status.is_terminal:
                out[a.breaker] = out.get(a.breaker, 0) + 1
        return dict(sorted(out.items()))

    def task_state(self) -> tuple[dict[str, dict[str, int]], list[TaskRow], list[TaskRow]]:
        """Tasks by swarm and status, the unfinished ones, the last finished."""
        return (
            {k: dict(v) for k, v in sorted(self.task_counts.items()) if v},
            [t.row() for t in sorted(self.tasks_active.values(), key=_by_id)],
            [t.row() for t in self.tasks_recent],
        )

    def snapshot(self) -> ViewSnapshot:
        counts, active, recent = self.task_state()
        return ViewSnapshot(
            seq=self.seq,
            agents=self.agent_rows(include_ended=True),
            swarms=self.swarm_rows(),
            tasks_by_status=counts,
            tasks_active=active,
            tasks_recent=recent,
            router=self.router_state(),
            spend=self.spend_state(),
            runs=self.run_rows(),
        )


def _cell(cells: dict[str, SpendCell], key: str) -> SpendCell:
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = SpendCell()
    return cell


def _by_id(t: TaskCell) -> str:
    return t.id


_HANDLERS: dict[type, Callable[[Views, Any], None]] = {
    AgentCreated: Views._agent_created,
    AgentSpawned: Views._agent_spawned,
    AgentStatusChanged: Views._agent_status,
    AgentHealthChanged: Views._agent_health,
    ExecStarted: Views._exec_started,
    ExecFinished: Views._exec_finished,
    TaskChanged: Views._task_changed,
    SwarmChanged: Views._swarm_changed,
    TaskRouted: Views._task_routed,
    BudgetChanged: Views._budget_changed,
    DoStarted: Views._do_started,
    DoPlanned: Views._do_planned,
    DoStep: Views._do_step,
    DoFinished: Views._do_finished,
}
