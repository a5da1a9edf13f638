"""A headless run (``godel run``): a plan's swarms and tasks, driven to completion.

The run does what the console does, through the same calls: it loads ``view.snapshot``,
follows ``events.subscribe`` from that snapshot's seq (so it misses nothing), creates
the plan's missing swarms (``swarm.create``), queues its tasks (``task.submit``) and
watches their ``task.changed`` events until every one is final. Task ids are made by
the daemon at submit, so a task is submitted once the tasks it depends on have ids: one
``task.submit`` per swarm and dependency level. With ``max_parallel`` N, a task is held
back until its dependencies are final and fewer than N of the run's tasks are
unfinished, so at most N run at once, whatever the swarms' sizes.

Lost events (``events.dropped``) are made up for by reading the run's unfinished tasks
(``task.get``). Ctrl-C cancels the run's unfinished tasks (``task.cancel``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.cli.batch_backends import Backend
from core.config.plan import Plan, PlanTask
from core.errors import (
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    DaemonError,
    GodelError,
)
from core.events.recording import ConsoleRecording

FINAL = frozenset({"succeeded", "failed", "cancelled"})
# In a failed task's error: a budget stopped it (core.engine.budgets' wording).
BUDGET_EXHAUSTED = "budget exhausted"


@dataclass
class TaskState:
    name: str
    id: str | None = None
    status: str = "pending"  # not submitted yet
    attempts: int = 0
    agent: str | None = None
    error: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL


@dataclass
class Outcome:
    exit_code: int
    outcome: str  # succeeded, failed, budget_exhausted, interrupted
    tasks: list[TaskState]
    elapsed_s: float
    cancelled: int = 0  # tasks Ctrl-C cancelled
    counts: dict[str, int] = field(default_factory=dict)


class Reporter(Protocol):
    def submitted(self, t: TaskState) -> None: ...
    def started(self, t: TaskState) -> None: ...
    def finished(self, t: TaskState) -> None: ...
    def done(self, outcome: Outcome) -> None: ...


class Run:
    def __init__(
        self,
        backend: Backend,
        plan: Plan,
        reporter: Reporter,
        *,
        max_parallel: int | None = None,
        record: ConsoleRecording | None = None,
        budget: str | None = None,
    ) -> None:
        self.budget = budget
        self.backend = backend
        self.plan = plan
        self.reporter = reporter
        self.max_parallel = max_parallel
        self.record = record
        self.states = {t.name: TaskState(t.name) for t in plan.task}
        self.by_id: dict[str, TaskState] = {}
        self._changed = asyncio.Event()
        self._interrupted = asyncio.Event()
        self._resync = False
        # task.changed events of ids not known yet, while a submit is under way: its
        # tasks' first events may arrive before its reply.
        self._stash: dict[str, list[dict[str, Any]]] | None = None
        self._started = time.monotonic()

    # the run ------------------------------------------------------------------------------

    async def execute(self) -> Outcome:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._interrupt)
        try:
            return await self._execute()
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    def _interrupt(self) -> None:
        self._interrupted.set()
        self._changed.set()

    async def _execute(self) -> Outcome:
        snap = await self.backend.call("view.snapshot")
        if self.record is not None:
            self.record.snapshot(int(snap["seq"]), snap)
        follow = asyncio.create_task(
            self.backend.call("events.subscribe", {"after_seq": snap["seq"]}, self._on_event)
        )
        follow.add_done_callback(lambda _t: self._changed.set())
        try:
            if self.budget is not None:
                await self.backend.call("budget.set", {"scope": "project", "amount": self.budget})
            await self._ensure_swarms()
            while True:
                # Cleared before the checks, never after: a wake-up that comes while
                # they run (an event, Ctrl-C, the stream's end) is kept for the wait.
                self._changed.clear()
                if self._interrupted.is_set():
                    break
                await self._submit_eligible()
                if all(s.final for s in self.states.values()):
                    break
                if follow.done():
                    follow.result()  # a lost connection raises here
                    raise DaemonError("the daemon stopped before the run finished")
                if self._resync:
                    await self._read_unfinished()
                    continue
                await self._changed.wait()
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError, GodelError):
                await follow
        if self._interrupted.is_set():
            return await self._cancel_unfinished()
        return self._outcome()

    async def _ensure_swarms(self) -> None:
        if not self.plan.swarm:
            return
        existing = {s["name"]: s for s in await self.backend.call("swarm.list")}
        for i, s in enumerate(self.plan.swarm):
            have = existing.get(s.name)
            if have is not None:
                if have["runtime"] != s.runtime:
                    raise ConfigError(
                        f"swarm[{i}]: swarm {s.name} exists with {have['runtime']} agents, "
                        f"the plan wants {s.runtime}: rename it in the plan, or "
                        f"`godel swarm destroy {s.name}`",
                        key=f"swarm[{i}]",
                    )
                continue
            params: dict[str, Any] = {
                "name": s.name,
                "runtime": s.runtime,
                "count": s.count,
                "skills": s.skills,
                "strategy": s.strategy,
            }
            if s.model is not None:
                params["model"] = s.model
            result = await self.backend.call("swarm.create", params)
            if result["failures"] and not result["agents"]:
                raise GodelError(
                    f"swarm {s.name}: no agent started: {result['failures'][0]}",
                    swarm=s.name,
                )

    def _eligible(self, t: PlanTask, active: int) -> bool:
        if self.states[t.name].status != "pending":
            return False
        deps = [self.states[d] for d in t.depends_on]
        if any(d.id is None for d in deps):
            return False
        if self.max_parallel is None:
            return True
        return all(d.final for d in deps) and active < self.max_parallel

    async def _submit_eligible(self) -> None:
        """Submit what can be, until nothing more can (a level's ids free the next's)."""
        while not self._interrupted.is_set():
            active = sum(1 for s in self.states.values() if s.id is not None and not s.final)
            batch: list[PlanTask] = []
            for t in self.plan.task:
                if self._eligible(t, active + len(batch)):
                    batch.append(t)
            if not batch:
                return
            by_swarm: dict[str | None, list[PlanTask]] = {}
            for t in batch:
                by_swarm.setdefault(self.plan.swarm_of(t), []).append(t)
            for tasks in by_swarm.values():
                await self._submit(tasks)

    async def _submit(self, tasks: list[PlanTask]) -> None:
        specs = [self.plan.spec(t, [str(self.states[d].id) for d in t.depends_on]) for t in tasks]
        self._stash = {}
        try:
            result = await self.backend.call("task.submit", {"tasks": specs})
        finally:
            stash, self._stash = self._stash, None
        for t, made in zip(tasks, result, strict=True):
            state = self.states[t.name]
            state.id = made["id"]
            self.by_id[made["id"]] = state
            self._apply(state, made["status"], made.get("attempts", 0), None, made.get("error"))
            self.reporter.submitted(state)
            for data in stash.get(made["id"], []):
                self._apply_event(state, data)
            self._report(state, "pending")

    # events -------------------------------------------------------------------------------

    def _on_event(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if self.record is not None:
            self.record.event(data)
        kind = data.get("type")
        if kind == "events.dropped":
            self._resync = True
            self._changed.set()
            return
        if kind != "task.changed":
            return
        task_id = data.get("task_id")
        state = self.by_id.get(task_id) if isinstance(task_id, str) else None
        if state is None:
            if self._stash is not None and isinstance(task_id, str):
                self._stash.setdefault(task_id, []).append(data)
            return
        before = state.status
        self._apply_event(state, data)
        self._report(state, before)
        self._changed.set()

    def _apply_event(self, state: TaskState, data: dict[str, Any]) -> None:
        self._apply(
            state,
            str(data["status"]),
            int(data.get("attempts", 0)),
            data.get("agent_id"),
            data.get("error"),
        )

    def _apply(
        self, state: TaskState, status: str, attempts: int, agent: str | None, error: Any
    ) -> None:
        if state.final:
            return  # final is final: a late or replayed event changes nothing
        state.status = status
        state.attempts = max(state.attempts, attempts)
        if agent is not None:
            state.agent = agent
        if isinstance(error, str) and error:
            state.error = error

    def _report(self, state: TaskState, before: str) -> None:
        if state.status == before:
            return
        if state.final:
            self.reporter.finished(state)
        elif state.status == "running":
            self.reporter.started(state)

    async def _read_unfinished(self) -> None:
        """Events were lost: read the run's unfinished tasks as they are now."""
        self._resync = False
        for state in list(self.by_id.values()):
            if state.final:
                continue
            task = await self.backend.call("task.get", {"id": state.id})
            before = state.status
            self._apply(
                state, task["status"], task["attempts"], task.get("lease_agent"), task.get("error")
            )
            self._report(state, before)

    # the end ------------------------------------------------------------------------------

    async def _cancel_unfinished(self) -> Outcome:
        cancelled = 0
        # Dependents first (the reverse of submission order): cancelling a task first
        # would fail its dependents for good before they could be cancelled.
        for state in reversed(list(self.by_id.values())):
            if state.final:
                continue
            try:
                await self.backend.call("task.cancel", {"id": state.id})
            except GodelError:
                continue  # it became final meanwhile
            state.status = "cancelled"
            state.error = state.error or "cancelled: godel run interrupted"
            cancelled += 1
        out = self._outcome()
        out.exit_code, out.outcome, out.cancelled = EXIT_INTERRUPTED, "interrupted", cancelled
        return out

    def _outcome(self) -> Outcome:
        tasks = list(self.states.values())
        counts: dict[str, int] = {}
        for t in tasks:
            counts[t.status] = counts.get(t.status, 0) + 1
        elapsed = round(time.monotonic() - self._started, 3)
        if all(t.status == "succeeded" for t in tasks):
            code, outcome = EXIT_OK, "succeeded"
        elif any(BUDGET_EXHAUSTED in t.error for t in tasks if t.status == "failed"):
            code, outcome = EXIT_BUDGET, "budget_exhausted"
        else:
            code, outcome = EXIT_FAILED, "failed"
        return Outcome(code, outcome, tasks, elapsed, counts=counts)
