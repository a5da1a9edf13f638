"""The task service: submit, cancel and retry tasks, explain how one would be routed, and
observe the dispatcher (federation's ``DispatchObserver`` port: routing decisions and
finished attempts become events, metrics and anomaly reports)."""

from __future__ import annotations

from typing import Any

from core.audit import AuditDraft
from core.engine.context import EngineContext
from core.engine.execs import ExecService
from core.engine.health import HealthService
from core.errors import InvalidInput, TaskNotFound
from core.events import QueuePressure, TaskFinished, TaskRouted
from core.federation.anomaly import AnomalyDetector
from core.federation.routing import Routed, RoutingTable
from core.models import Agent, ExecResult, Task, TaskSpec, TaskStatus
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

    async def submit(self, specs: list[TaskSpec], actor: str) -> list[Task]:
        if not specs:
            raise InvalidInput("no tasks to submit")
        swarm_name = specs[0].swarm
        queue = self.ctx.config.queue
        capacity = queue.default_capacity
        if swarm_name is not None:
            capacity = (await self.ctx.active_swarm(swarm_name)).capacity
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
        return done.tasks

    async def get(self, task_id: str) -> Task:
        task = await self.ctx.store.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"task {task_id!r} not found", task_id=task_id)
        return task

    async def cancel(self, task_id: str, actor: str) -> Task:
        prev, agent_id = await self.ctx.journal.commit(ops.CancelTask(task_id, actor))
        if prev is TaskStatus.RUNNING and agent_id is not None:
            await self.execs.abort_quietly(agent_id)
        self.ctx.wake_dispatcher()
        return await self.get(task_id)

    async def retry(self, task_id: str, actor: str) -> Task:
        task = await self.ctx.journal.commit(ops.RetryTask(task_id, actor))
        self.ctx.wake_dispatcher()
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
        task = await self.get(task_id)
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
        if result.usage.total_tokens:
            m.inc_tokens(
                task.swarm,
                runtime,
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
            )
        if result.cost_usd is not None:
            m.inc_cost(task.swarm, runtime, result.cost_usd)
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
