"""The ``Store`` protocol: everything durable goes through it.

Writes that belong together (an agent row and the audit entry for its spawn) take an
optional ``AuditDraft`` and commit in one transaction, so a crash never leaves an
action without its audit entry or the other way round.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from core.audit import AuditHead
from core.models import (
    Agent,
    AgentStatus,
    AuditEntry,
    ExecRecord,
    ExecStatus,
    LogLine,
    StatusChange,
    Usage,
)


@dataclass(frozen=True)
class AuditDraft:
    """An audit entry before the store gives it a seq and hashes."""

    actor: str
    action: str
    subject: str
    result: str = "ok"
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputRow:
    agent_id: str
    exec_id: str | None
    stream: Literal["stdout", "stderr", "system"]
    at: datetime
    data: str


class Store(Protocol):
    path: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # agents
    async def insert_agent(self, agent: Agent, audit: AuditDraft | None = None) -> None: ...
    async def get_agent(self, agent_id: str) -> Agent | None: ...
    async def list_agents(self, *, include_ended: bool = True) -> list[Agent]: ...
    async def set_agent_status(
        self,
        agent_id: str,
        change: StatusChange,
        *,
        pid: int | None = None,
        pid_started_at: float | None = None,
        audit: AuditDraft | None = None,
    ) -> AgentStatus | None:
        """Record a status change; returns the previous status (None if no such agent)."""
        ...

    # execs and output
    async def insert_exec(
        self,
        record: ExecRecord,
        audit: AuditDraft | None = None,
        *,
        status: StatusChange | None = None,
    ) -> AgentStatus | None:
        """Insert a running exec; with ``status``, set its agent's status in the same
        transaction and return the previous status."""
        ...

    async def finish_exec(
        self,
        exec_id: str,
        status: ExecStatus,
        exit_code: int | None,
        reason: str,
        finished_at: datetime,
        audit: AuditDraft | None = None,
        *,
        usage: Usage | None = None,
        cost_usd: Decimal | None = None,
        output: Sequence[OutputRow] = (),
        agent_status: tuple[str, StatusChange] | None = None,
    ) -> AgentStatus | None:
        """End an exec; ``output`` rows and an (agent id, status) change commit with it."""
        ...

    async def running_execs(self) -> list[ExecRecord]: ...
    async def list_execs(self, agent_id: str, limit: int = 50) -> list[ExecRecord]: ...
    async def append_output(self, rows: Sequence[OutputRow]) -> None: ...
    async def read_output(
        self, agent_id: str, *, after_seq: int = 0, limit: int = 10_000
    ) -> list[LogLine]: ...

    # audit
    async def append_audit(self, draft: AuditDraft) -> AuditEntry: ...
    async def list_audit(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> list[AuditEntry]: ...
    def iter_audit(self, batch: int = 1000) -> AsyncIterator[AuditEntry]: ...
    async def audit_head(self) -> AuditHead | None: ...
