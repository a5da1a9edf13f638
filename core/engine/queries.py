"""Read-only questions the faces ask: agents, swarms, tasks, metrics, the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator

from core.audit import VerifyReport, verify_chain
from core.engine.context import EngineContext
from core.models import Agent, AgentStatus, AuditEntry, RuntimeInfo, Task, TaskPriority, TaskStatus


class QueryService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def runtimes(self) -> list[RuntimeInfo]:
        return self.ctx.registry.info()

    async def list_agents(self, *, include_ended: bool = True) -> list[Agent]:
        return await self.ctx.store.list_agents(include_ended=include_ended)

    async def list_tasks(
        self, *, swarm: str | None = None, status: TaskStatus | None = None, limit: int = 100
    ) -> list[Task]:
        return await self.ctx.store.list_tasks(swarm=swarm, status=status, limit=limit)

    async def task_counts(self, swarm: str | None = None) -> dict[str, int]:
        """Tasks by status, of one swarm (None: of the default pool)."""
        return await self.ctx.store.count_tasks(swarm, any_swarm=False)

    async def metrics_text(self) -> bytes:
        """Prometheus exposition, with the gauges refreshed from the store first."""
        store, metrics = self.ctx.store, self.ctx.metrics
        counts: dict[tuple[str | None, str], int] = {}
        for a in await store.list_agents(include_ended=False):
            counts[(a.swarm, a.status.value)] = counts.get((a.swarm, a.status.value), 0) + 1
        pools: list[str | None] = [None, *[s.name for s in await store.list_swarms()]]
        for pool in pools:
            for st in AgentStatus:
                metrics.set_agents(pool, st.value, counts.get((pool, st.value), 0))
            ready = await store.ready_by_priority(pool)
            for prio in TaskPriority:
                metrics.set_queue_depth(pool, prio.value, ready.get(prio.value, 0))
        return metrics.exposition()

    async def audit_list(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> list[AuditEntry]:
        return await self.ctx.store.list_audit(after_seq=after_seq, limit=limit, subject=subject)

    def audit_entries(self) -> AsyncIterator[AuditEntry]:
        return self.ctx.store.iter_audit()

    async def audit_verify(self) -> VerifyReport:
        store = self.ctx.store
        # The anchor first: it never runs ahead of what is committed, so entries read
        # after it reach it (read the other way round, a commit between would look like
        # a rollback).
        anchor = await store.audit_anchor()
        entries = [e async for e in store.iter_audit()]
        return verify_chain(entries, await store.audit_head(), anchor)
