"""The task service: submit, cancel and retry tasks, explain how one would be routed and
why one waits, and observe the dispatcher (federation's ``DispatchObserver`` port:
routing decisions and finished attempts become events, metrics and anomaly reports).

Why a task waits (``Task.waiting``) is worked out from the live agents of its pool, in
the order a user would check: is there any agent, of its runtime, with its skills, able
to work, not cut off by its breaker, not busy? The first three failing mean that no agent
present could ever take it (``Task.stranded``): submits warn about that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from core.audit import AuditDraft
from core.engine.budgets import BudgetService
from core.engine.context import EngineContext
from core.engine.execs import ExecService
from core.engine.health import HealthService
from core.engine.pauses import ProviderPauses
from core.errors import InvalidInput, TaskNotFound, UnknownRuntime
from core.events import QueuePressure, TaskFinished, TaskRouted
from core.federation.anomaly import AnomalyDetector
from core.federation.dispatcher import AGENT_CAPACITY
from core.federation.routing import Routed, RoutingTable
from core.models import Agent, AgentStatus, ExecResult, Swarm, Task, TaskSpec, TaskStatus
from core.store import ops
from core.store.queue_rules import WARN_FRACTION


class TaskService:
    def __init__(
        self,
        ctx: EngineContext,
        execs: ExecService,
        health: HealthService,
        routing: RoutingTable,
    ) -> None:
        self.ctx = ctx
        self.execs = execs
        self.health = health
        self.routing = routing
        self.anomalies = AnomalyDetector()
        # Set by build: a budget at 90 % holds a task (``waiting`` says so).
        self.budgets: BudgetService | None = None
        # Set by build: a provider paused by its usage limit holds its agents' tasks.
        self.pauses: ProviderPauses | None = None

    async def submit(self, specs: list[TaskSpec], actor: str) -> list[Task]:
        """Queue ``specs``; the tasks come back with ``waiting`` and ``stranded`` set."""
        if not specs:
            raise InvalidInput("no tasks to submit")
        swarm_name = specs[0].swarm
        queue = self.ctx.config.queue
        capacity = queue.default_capacity
        swarm = None
        if swarm_name is not None:
            swarm = await self.ctx.active_swarm(swarm_name)
            capacity = swarm.capacity
        self._check_runtimes(specs, swarm)
        done = await self.ctx.journal.commit(
            ops.SubmitTasks(
                tuple(specs),
                swarm_capacity=capacity,
                overall_capacity=queue.capacity,
                actor=actor,
            )
        )
        if done.fill >= WARN_FRACTION:
            scope = f"swarm {swarm_name!r}" if swarm_name else "the default pool"
            self.ctx.journal.publish(
                QueuePressure(scope=scope, fraction=round(done.fill, 4), capacity=capacity)
            )
        self.ctx.wake_dispatcher()
        return await self.with_waiting(done.tasks)

    def _check_runtimes(self, specs: list[TaskSpec], swarm: Swarm | None) -> None:
        known = self.ctx.registry.names()
        for runtime in dict.fromkeys(s.runtime for s in specs if s.runtime is not None):
            if runtime not in known:
                raise UnknownRuntime(
                    f"unknown runtime {runtime!r} (known: {', '.join(known) or 'none'})",
                    runtime=runtime,
                    known=known,
                )
            if swarm is not None and runtime != swarm.runtime:
                raise InvalidInput(
                    f"swarm {swarm.name} runs {swarm.runtime} agents, and this task needs "
                    f"runtime {runtime}: submit it to a {runtime} swarm or without --swarm",
                    swarm=swarm.name,
                    runtime=runtime,
                )

    async def get(self, task_id: str) -> Task:
        """One task, with why it waits if it does."""
        task = await self.read(task_id)
        (task,) = await self.with_waiting([task], deps_detail=True)
        return task

    async def read(self, task_id: str) -> Task:
        """One task as stored (no waiting reason: cheap, for ``task wait``)."""
        task = await self.ctx.store.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"task {task_id!r} not found", task_id=task_id)
        return task

    # why tasks wait -------------------------------------------------------------------------

    async def with_waiting(self, tasks: list[Task], *, deps_detail: bool = False) -> list[Task]:
        """Copies of ``tasks`` with ``waiting`` (why each is not running) and ``stranded``
        (no agent present could ever take it). The pool checks are made once per kind of
        task, so a 10,000-task submit costs one read of the leases."""
        waiting = (TaskStatus.QUEUED, TaskStatus.READY)
        if not any(t.status in waiting for t in tasks):
            return tasks
        # An agent being spawned is not held yet, but it will take work: it counts.
        starting = [
            a
            for a in await self.ctx.store.list_agents(include_ended=False)
            if a.status is AgentStatus.STARTING and a.id not in self.ctx.live
        ]
        members = {
            pool: [lv.agent for lv in self.ctx.live.in_swarm(pool)]
            + [a for a in starting if a.swarm == pool]
            for pool in {t.swarm for t in tasks}
        }
        in_flight = await self.ctx.store.in_flight([a.id for ms in members.values() for a in ms])
        now = self.ctx.clock.time()
        placement: dict[tuple[str | None, str | None, frozenset[str]], tuple[str, bool]] = {}
        out = []
        for t in tasks:
            if t.status not in waiting:
                out.append(t)
                continue
            key = (t.swarm, t.runtime, frozenset(t.skills))
            if key not in placement:
                placement[key] = await self._placement(t, members[t.swarm], in_flight)
            text, stranded = placement[key]
            if not stranded:
                # Whatever the agents, these come first: the task cannot be claimed yet.
                if t.status is TaskStatus.QUEUED:
                    text = await self._deps_text(t, deps_detail)
                elif t.not_before > now:
                    until = datetime.fromtimestamp(t.not_before, UTC).strftime("%H:%M:%S UTC")
                    text = f"retry backoff until {until} (in {t.not_before - now:.1f}s)"
                elif self.budgets is not None and (hold := self.budgets.hold_reason(t)):
                    text = hold[0]
                elif self.pauses is not None and (
                    paused := self.pauses.waiting(_takers(t, members[t.swarm]))
                ):
                    text = paused
            out.append(t.model_copy(update={"waiting": text, "stranded": stranded}))
        return out

    async def _deps_text(self, task: Task, detail: bool) -> str:
        n = task.deps_pending
        if not detail:
            return f"dependencies pending: {n} of {len(task.depends_on)}"
        pending = []
        for dep_id in task.depends_on:
            dep = await self.ctx.store.get_task(dep_id)
            if dep is None or dep.status is not TaskStatus.SUCCEEDED:
                pending.append(f"{dep_id} ({dep.status.value if dep else 'gone'})")
        return f"dependencies pending: {', '.join(pending) or n}"

    async def _placement(
        self, task: Task, members: list[Agent], in_flight: Mapping[str, int]
    ) -> tuple[str, bool]:
        """Why no agent of the task's pool runs it now, and whether none ever could."""
        where = f"swarm {task.swarm}" if task.swarm else "the default pool"
        cannot = f"no agent in {where} can take this task"
        if not members:
            return await self._empty_pool(task, cannot)
        fit = [a for a in members if task.runtime is None or a.runtime == task.runtime]
        if not fit:
            here = _runtime_counts(members)
            hint = await self._elsewhere(task, f"spawn a {task.runtime} agent")
            return f"{cannot} (it needs runtime {task.runtime}; agents there: {here}; {hint})", True
        need = set(task.skills)
        able = [a for a in fit if need <= set(a.skills)]
        if not able:
            missing = sorted(need - {s for a in fit for s in a.skills})
            who = f"{task.runtime} agent" if task.runtime else "agent"
            has = f"skills {','.join(missing)}" if missing else "all of them"
            hint = await self._elsewhere(task, "spawn an agent with them")
            return (
                f"{cannot} (it needs skills {','.join(sorted(need))}; no {who} there has "
                f"{has}; {hint})",
                True,
            )
        working = [a for a in able if a.status in (AgentStatus.IDLE, AgentStatus.BUSY)]
        if not working:
            states = ", ".join(f"{n} {s}" for s, n in sorted(_counts(a.status for a in able)))
            return f"no agent that could take it can work now ({states})", False
        routable = {a.id for a in self.health.workers(task.swarm)}
        avail = [a for a in working if a.id in routable]
        cut_off = len(working) - len(avail)
        if not avail:
            return f"breakers open on {_n(cut_off, 'agent')} that could take it", False
        running = sum(in_flight.get(a.id, 0) for a in avail)
        free = sum(1 for a in avail if in_flight.get(a.id, 0) < AGENT_CAPACITY)
        more = f"; breakers open on {cut_off} more" if cut_off else ""
        if free == 0:
            busy = f"{_n(len(avail), 'agent')}, {_n(running, 'task')} in flight"
            return f"all busy ({busy}{more})", False
        return (
            f"an agent is free ({free} of {len(avail)}): the next dispatch round places it{more}",
            False,
        )

    async def _empty_pool(self, task: Task, cannot: str) -> tuple[str, bool]:
        if task.swarm is None:
            return f"{cannot} (no agents; {await self._elsewhere(task, 'spawn an agent')})", True
        swarm = await self.ctx.store.get_swarm(task.swarm)
        if swarm is None:
            return f"{cannot} (the swarm is gone)", True
        if swarm.desired > 0:
            return f"no agent in swarm {swarm.name} yet ({swarm.desired} being started)", False
        if self.ctx.config.autoscaler.enabled and swarm.max_agents > swarm.min_agents:
            return (
                f"no agent in swarm {swarm.name} yet (the autoscaler adds up to "
                f"{swarm.max_agents} for its ready tasks)",
                False,
            )
        return (
            f"{cannot} (no agents, and it stays at 0; `godel swarm scale {swarm.name} N` "
            "adds some)",
            True,
        )

    async def _elsewhere(self, task: Task, spawn: str) -> str:
        """What else exists, and what the user can do: the tail of a stranded message."""
        if task.swarm is not None:
            return f"submit it elsewhere or {spawn} outside the swarm"
        swarms = []
        for s in await self.ctx.store.list_swarms():
            n = len(self.ctx.live.in_swarm(s.name))
            swarms.append(f"{s.name} ({s.runtime}, {_n(n, 'agent')})")
        if not swarms:
            return f"no swarms; {spawn}"
        return f"swarms: {', '.join(swarms)}; submit with --swarm NAME or {spawn}"

    async def cancel(self, task_id: str, actor: str) -> Task:
        prev, agent_id = await self.ctx.journal.commit(ops.CancelTask(task_id, actor))
        if prev is TaskStatus.RUNNING and agent_id is not None:
            await self.execs.abort_quietly(agent_id)
        self.ctx.wake_dispatcher()
        return await self.get(task_id)

    async def retry(self, task_id: str, actor: str) -> Task:
        task = await self.ctx.journal.commit(ops.RetryTask(task_id, actor))
        self.ctx.wake_dispatcher()
        (task,) = await self.with_waiting([task])
        return task

    async def requeue_agent_tasks(self, agent: Agent, reason: str, on_its_own: bool) -> None:
        """Tasks leased to an agent that is gone go back to the queue at once."""
        await self.ctx.journal.commit(
            ops.RequeueAgent(agent.id, f"agent {agent.id}: {reason}", actor="daemon")
        )
        self.ctx.wake_dispatcher()

    async def explain_route(self, task_id: str) -> dict[str, Any]:
        """How the router would place this task now, every candidate scored, and how it
        was placed before (from the audit log)."""
        task = await self.read(task_id)
        strategy = None
        if task.swarm is not None:
            strategy = (await self.ctx.active_swarm(task.swarm)).strategy
        agents = self.health.workers(task.swarm)
        in_flight = await self.ctx.store.in_flight([a.id for a in agents])
        pool = self.routing.sync(task.swarm, strategy, agents, in_flight)
        decision = self.routing.explain(pool, task)
        past = [
            e for e in await self.ctx.store.list_audit(subject=task_id) if e.action == "task.route"
        ]
        return {"task": task, "now": decision.to_dict(), "past": past}

    # the DispatchObserver port ---------------------------------------------------------------

    def routed(self, task: Task, routed: Routed, elapsed_s: float) -> None:
        self.ctx.metrics.observe_route(routed.strategy, elapsed_s, routed.agent_id is not None)
        self.ctx.journal.publish(
            TaskRouted(
                task_id=task.id,
                agent_id=routed.agent_id,
                swarm=task.swarm,
                strategy=routed.strategy,
                reason=routed.reason,
                elapsed_ms=round(elapsed_s * 1000, 4),
            )
        )

    async def finished(
        self, task: Task, agent_id: str, result: ExecResult, status: TaskStatus
    ) -> None:
        """After the queue recorded an attempt: event, metrics, anomaly detection."""
        self.ctx.journal.publish(
            TaskFinished(
                task_id=task.id,
                status=status.value,
                agent_id=agent_id,
                exec_id=result.exec_id,
                reason=result.reason,
            )
        )
        live = self.ctx.live.get(agent_id)
        runtime = live.agent.runtime if live else "unknown"
        ok = status is TaskStatus.SUCCEEDED
        m = self.ctx.metrics
        m.inc_task(task.swarm, runtime, "retried" if status is TaskStatus.READY else status.value)
        m.observe_task(task.swarm, runtime, result.duration_s)
        m.observe_agent_task(agent_id, runtime, ok, result.duration_s)
        # Tokens and cost are counted by the exec service as every exec ends, task or not.
        anomaly = self.anomalies.record(runtime, ok, self.ctx.clock.monotonic())
        if anomaly is not None:
            await self.ctx.journal.audit(
                AuditDraft(
                    actor="daemon",
                    action="runtime.anomaly",
                    subject=runtime,
                    result=anomaly.kind,
                    payload=anomaly.model_dump(mode="json", exclude={"at", "seq", "type"}),
                ),
                events=[anomaly],
            )


def _counts(values: Iterable[str]) -> list[tuple[str, int]]:
    return list(Counter(values).items())


def _runtime_counts(agents: list[Agent]) -> str:
    return ", ".join(f"{n} {r}" for r, n in sorted(_counts(a.runtime for a in agents)))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _takers(task: Task, members: list[Agent]) -> list[Agent]:
    """The agents of the pool that could take ``task`` (its runtime and skills)."""
    need = set(task.skills)
    return [
        a
        for a in members
        if (task.runtime is None or a.runtime == task.runtime) and need <= set(a.skills)
    ]
