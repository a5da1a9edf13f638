"""The fold's working state: slotted dataclasses, updated in place on every event.

Pydantic rows (``core.views.rows``) are what faces read; building or mutating one per
event cost more than the rest of publishing, so the fold keeps these and converts on
read (``row()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.models import AgentStatus, StatusSource, Usage
from core.views.rows import AgentRow, SpendTotals, TaskRow, Tokens

__all__ = ["AgentCell", "SpendCell", "TaskCell"]


@dataclass(slots=True)
class SpendCell:
    execs: int = 0
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost: Decimal | None = None
    cost_unknown: int = 0

    def add(self, usage: Usage, cost: Decimal | None) -> None:
        """A finished exec's usage (``execs`` is counted by the caller)."""
        self.input += usage.input_tokens
        self.output += usage.output_tokens
        self.cache_read += usage.cache_read_tokens
        self.cache_write += usage.cache_write_tokens
        if cost is not None:
            self.cost = (self.cost or Decimal(0)) + cost
        elif usage.total_tokens:
            self.cost_unknown += 1

    def tokens(self) -> Tokens:
        return Tokens(
            input=self.input,
            output=self.output,
            cache_read=self.cache_read,
            cache_write=self.cache_write,
        )

    def totals(self) -> SpendTotals:
        return SpendTotals(
            execs=self.execs,
            tokens=self.tokens(),
            cost_usd=self.cost,
            cost_unknown_execs=self.cost_unknown,
        )

    @staticmethod
    def of(t: SpendTotals | AgentRow) -> SpendCell:
        return SpendCell(
            execs=t.execs,
            input=t.tokens.input,
            output=t.tokens.output,
            cache_read=t.tokens.cache_read,
            cache_write=t.tokens.cache_write,
            cost=t.cost_usd,
            cost_unknown=t.cost_unknown_execs,
        )


@dataclass(slots=True)
class AgentCell:
    id: str
    name: str | None
    runtime: str
    model: str | None
    swarm: str | None
    skills: list[str]
    status: AgentStatus
    status_source: StatusSource
    status_reason: str
    status_at: datetime
    pid: int | None
    workspace: str
    created_at: datetime
    current_task: str | None = None
    current_exec: str | None = None
    spend: SpendCell = field(default_factory=SpendCell)
    breaker: str = "closed"  # closed | open | half_open, from ``agent.health`` events
    breaker_at: datetime | None = None
    health_detail: str = ""

    def row(self) -> AgentRow:
        s = self.spend
        return AgentRow(
            id=self.id,
            name=self.name,
            runtime=self.runtime,
            model=self.model,
            swarm=self.swarm,
            skills=list(self.skills),
            status=self.status,
            status_source=self.status_source,
            status_reason=self.status_reason,
            status_at=self.status_at,
            pid=self.pid,
            workspace=self.workspace,
            created_at=self.created_at,
            current_task=self.current_task,
            current_exec=self.current_exec,
            breaker=self.breaker,
            breaker_at=self.breaker_at,
            health_detail=self.health_detail,
            execs=s.execs,
            tokens=s.tokens(),
            cost_usd=s.cost,
            cost_unknown_execs=s.cost_unknown,
        )

    @staticmethod
    def of(a: AgentRow) -> AgentCell:
        return AgentCell(
            id=a.id,
            name=a.name,
            runtime=a.runtime,
            model=a.model,
            swarm=a.swarm,
            skills=list(a.skills),
            status=a.status,
            status_source=a.status_source,
            status_reason=a.status_reason,
            status_at=a.status_at,
            pid=a.pid,
            workspace=a.workspace,
            created_at=a.created_at,
            current_task=a.current_task,
            current_exec=a.current_exec,
            spend=SpendCell.of(a),
            breaker=a.breaker,
            breaker_at=a.breaker_at,
            health_detail=a.health_detail,
        )


@dataclass(slots=True)
class TaskCell:
    id: str
    swarm: str | None
    status: str
    lease_agent: str | None
    attempts: int
    priority: str
    runtime: str | None
    error: str
    input: str

    def row(self) -> TaskRow:
        return TaskRow(
            id=self.id,
            swarm=self.swarm,
            status=self.status,
            lease_agent=self.lease_agent,
            attempts=self.attempts,
            priority=self.priority,
            runtime=self.runtime,
            error=self.error,
            input=self.input,
        )

    @staticmethod
    def of(t: TaskRow) -> TaskCell:
        return TaskCell(
            t.id,
            t.swarm,
            t.status,
            t.lease_agent,
            t.attempts,
            t.priority,
            t.runtime,
            t.error,
            t.input,
        )
