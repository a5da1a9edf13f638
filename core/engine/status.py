"""Recording an agent's status change: stored with its audit entry, mirrored in the live
copy, then published, in that order."""

from __future__ import annotations

from collections.abc import Sequence

from core.audit import AuditDraft
from core.engine.context import EngineContext
from core.events import AgentStatusChanged, Event
from core.models import AgentStatus, StatusChange
from core.store import ops


class StatusEvents:
    """The events of a status change, given the previous status the store returns;
    mirrors the change into the live copy first, so a subscriber that looks sees it."""

    def __init__(self, ctx: EngineContext, agent_id: str, change: StatusChange) -> None:
        self.ctx, self.agent_id, self.change = ctx, agent_id, change

    def __call__(self, previous: AgentStatus | None) -> Sequence[Event]:
        self.ctx.live.mirror(self.agent_id, self.change)
        return [
            AgentStatusChanged(
                at=self.change.at,  # the stored status_at: a view shows the same time
                agent_id=self.agent_id,
                status=self.change.status,
                source=self.change.source,
                reason=self.change.reason,
                previous=previous,
            )
        ]


async def record_status(
    ctx: EngineContext,
    agent_id: str,
    change: StatusChange,
    *,
    audit: AuditDraft | None = None,
    pid: int | None = None,
    pid_started_at: float | None = None,
) -> AgentStatus | None:
    return await ctx.journal.commit(
        ops.SetAgentStatus(agent_id, change, pid=pid, pid_started_at=pid_started_at),
        audit=() if audit is None else audit,
        events=StatusEvents(ctx, agent_id, change),
    )
