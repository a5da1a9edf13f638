"""The ``Store`` protocol: everything durable goes through it.

A store has one way to change state, ``commit(op, audit)``: the backend applies the
operation (``core.store.ops``) and appends the audit entries in ONE transaction, run as
one synchronous unit (for SQLite: one call to its database thread), so a crash never
leaves an action without its audit entry or the other way round. Only the journal
(``core.store.journal``) calls ``commit``; everything else reads.

A second backend implements the same reads and one handler per op, and reuses the
audit chain's maths from ``core.audit`` (``seal``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from core.audit import AuditDraft, AuditHead
from core.models import (
    Agent,
    AuditEntry,
    Budget,
    BudgetPeriodRecord,
    ExecRecord,
    LogLine,
    Swarm,
    Task,
    TaskStatus,
)
from core.store.ops import Op, OutputRow
from core.views import ViewSnapshot

__all__ = [
    "AuditDraft",
    "Changes",
    "Committed",
    "OnCommit",
    "OutputRow",
    "Store",
    "Taker",
    "TaskChange",
]

T = TypeVar("T")


# An agent as a task needs it: its runtime and its skills.
Taker = tuple[str, frozenset[str]]


@dataclass(frozen=True)
class TaskChange:
    """A task created (``previous`` None) or moved to another status by a commit."""

    task_id: str
    swarm: str | None
    status: str
    previous: str | None
    agent_id: str | None  # the lease holder now (None once released)
    previous_agent: str | None  # the lease holder before the change
    attempts: int
    priority: str
    runtime: str | None
    error: str
    input: str  # its first 200 characters


@dataclass(frozen=True)
class Changes:
    """What a commit changed in tasks and swarms, whichever op it was: the backend
    captures it (SQLite: temporary triggers), so no op can leave a change unannounced."""

    tasks: list[TaskChange] = field(default_factory=list)
    swarms: list[Swarm] = field(default_factory=list)


@dataclass(frozen=True)
class Committed(Generic[T]):
    """What a committed op returned, the audit entries it appended (in order) and the
    task and swarm changes it made."""

    value: T
    entries: list[AuditEntry] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)


OnCommit = Callable[[Committed[T]], None]


class Store(Protocol):
    path: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def commit(
        self,
        op: Op[T],
        audit: Sequence[AuditDraft] = (),
        on_commit: OnCommit[T] | None = None,
    ) -> Committed[T]:
        """Apply ``op`` and append ``audit`` in one transaction; raise and change
        nothing if any part fails. ``on_commit`` runs on the event loop right after the
        transaction committed, even if the caller was cancelled meanwhile (the journal
        publishes from it, so a committed change is never left unannounced)."""
        ...

    async def view_snapshot(self) -> ViewSnapshot:
        """Every view as the store holds it now (``seq`` 0: the caller knows the seq)."""
        ...

    # agents, execs, output
    async def get_agent(self, agent_id: str) -> Agent | None: ...
    async def list_agents(self, *, include_ended: bool = True) -> list[Agent]: ...
    async def running_execs(self) -> list[ExecRecord]: ...
    async def list_execs(self, agent_id: str, limit: int = 50) -> list[ExecRecord]: ...
    async def read_output(
        self,
        agent_id: str,
        *,
        after_seq: int = 0,
        limit: int = 10_000,
        max_bytes: int | None = None,
    ) -> list[LogLine]:
        """An agent's stored output after ``after_seq``, in order: at most ``limit``
        lines, and with ``max_bytes`` the lines up to the one that reaches it (one page
        of a stream: its size is bounded by ``max_bytes`` plus one line)."""
        ...

    async def get_exec(self, exec_id: str) -> ExecRecord | None: ...
    async def read_exec_output(
        self, exec_id: str, *, limit: int = 10_000, max_bytes: int = 8 * 1024 * 1024
    ) -> tuple[list[LogLine], bool]:
        """One exec's stored output, every stream, in order: the first lines, at most
        ``limit`` of them and about ``max_bytes``; and whether more is stored."""
        ...

    # swarms and the queue
    async def get_swarm(self, name: str) -> Swarm | None: ...
    async def list_swarms(self, *, include_destroyed: bool = False) -> list[Swarm]: ...
    async def get_task(self, task_id: str) -> Task | None: ...
    async def list_tasks(
        self,
        *,
        swarm: str | None = None,
        status: TaskStatus | None = None,
        limit: int = 1000,
        any_swarm: bool = True,
    ) -> list[Task]: ...
    async def count_tasks(
        self, swarm: str | None = None, any_swarm: bool = True
    ) -> dict[str, int]: ...
    async def ready_by_priority(self, swarm: str | None) -> dict[str, int]: ...
    async def ready_tasks(
        self,
        swarm: str | None,
        limit: int,
        now: float,
        *,
        takers: Collection[Taker] | None = None,
        exclude: Collection[str] = (),
    ) -> list[Task]:
        """Ready tasks in claim order: priority, then age (FIFO within a priority).
        With ``takers`` (each agent's runtime and skills), only tasks one of them could
        take: of its runtime (or none named), with all their skills among its own.
        ``exclude``: ids left out (the dispatcher's tasks held by a budget)."""
        ...

    async def in_flight(self, agent_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Running leases per agent: the only source of in-flight counts."""
        ...

    # budgets
    async def list_budgets(self) -> list[Budget]:
        """Every budget as stored (``RollBudgets`` first for this period's figures)."""
        ...

    async def budget_history(self, limit: int = 100) -> list[BudgetPeriodRecord]:
        """Finished periods and cleared budgets, newest first."""
        ...

    # audit
    async def list_audit(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> list[AuditEntry]: ...
    def iter_audit(self, batch: int = 1000) -> AsyncIterator[AuditEntry]: ...
    async def audit_head(self) -> AuditHead | None: ...
    async def audit_anchor(self) -> AuditHead | None:
        """The audit head last recorded beside the store (None: no such record)."""
        ...

    # backup
    async def backup(self, dest: str, *, force: bool = False) -> dict[str, Any]:
        """A consistent copy of the store at ``dest`` (0600), taken while it runs; returns
        what it holds (path, size, audit entries, last seq and hash, tasks, agents)."""
        ...
