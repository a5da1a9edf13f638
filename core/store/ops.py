"""Changes to durable state, as data: the journal hands one to ``Store.commit``.

Each op is a frozen dataclass typed by what committing it returns (``Op[T]``). A backend
has one handler per op and runs it, with the op's audit entries, as one transaction.
Some ops append audit entries of their own where the entries depend on what the
transaction finds (which tasks a claim won, which dependents a failure takes down).
Times that rules depend on (``now``) come in the op, from the engine's clock, so
tests can drive leases and backoff with a fake clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from core.audit import AuditDraft
from core.models import (
    Agent,
    AgentStatus,
    Budget,
    BudgetPeriod,
    BudgetUnit,
    ExecRecord,
    ExecResult,
    ExecStatus,
    Lease,
    StatusChange,
    Swarm,
    Task,
    TaskSpec,
    TaskStatus,
    Usage,
)

T = TypeVar("T")


class Op(Generic[T]):
    """A change to durable state whose commit returns a ``T``."""

    __slots__ = ()


@dataclass(frozen=True)
class OutputRow:
    agent_id: str
    exec_id: str | None
    stream: Literal["stdout", "stderr", "system"]
    at: datetime
    data: str


# --- agents, execs, output ----------------------------------------------------------


@dataclass(frozen=True)
class NoChange(Op[None]):
    """Nothing but the audit entries that come with it (an action with no record)."""


@dataclass(frozen=True)
class InsertAgent(Op[None]):
    agent: Agent


@dataclass(frozen=True)
class SetAgentStatus(Op[AgentStatus | None]):
    """Returns the previous status (None if there is no such agent)."""

    agent_id: str
    change: StatusChange
    pid: int | None = None
    pid_started_at: float | None = None


@dataclass(frozen=True)
class StartExec(Op[AgentStatus | None]):
    """Insert a running exec; with ``status``, set its agent's status too and return the
    previous one."""

    record: ExecRecord
    status: StatusChange | None = None


@dataclass(frozen=True)
class FinishExec(Op[AgentStatus | None]):
    """End an exec; ``output`` rows and an (agent id, status) change commit with it."""

    exec_id: str
    status: ExecStatus
    exit_code: int | None
    reason: str
    finished_at: datetime
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    output: tuple[OutputRow, ...] = ()
    agent_status: tuple[str, StatusChange] | None = None


@dataclass(frozen=True)
class AppendOutput(Op[None]):
    rows: tuple[OutputRow, ...]


# --- swarms ----------------------------------------------------------------------------

SWARM_FIELDS = frozenset({"desired", "strategy", "min_agents", "max_agents", "status", "capacity"})


@dataclass(frozen=True)
class InsertSwarm(Op[None]):
    """Refused if an active swarm has the name; a destroyed one is replaced."""

    swarm: Swarm


@dataclass(frozen=True)
class UpdateSwarm(Op[Swarm]):
    name: str
    changes: Mapping[str, Any]

    def __post_init__(self) -> None:
        unknown = set(self.changes) - SWARM_FIELDS
        if not self.changes or unknown:
            raise ValueError(f"cannot update swarm fields {sorted(unknown)}")


# --- the queue -------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    tasks: list[Task]
    fill: float  # the fuller of the swarm's and the whole queue's capacity, after


@dataclass(frozen=True)
class SubmitTasks(Op[Submitted]):
    """Insert tasks; refused with ``QueueFull`` past 95 % of a capacity. An unknown
    dependency is an error; one that already failed for good fails the new task."""

    specs: tuple[TaskSpec, ...]
    swarm_capacity: int | None
    overall_capacity: int
    actor: str


@dataclass(frozen=True)
class Claim:
    task_id: str
    agent_id: str
    audit: AuditDraft | None = None  # the routing decision, kept only if the claim wins


@dataclass(frozen=True)
class ClaimTasks(Op[list[Lease]]):
    """Lease each (task, agent) whose task is still ready."""

    claims: tuple[Claim, ...]
    lease_s: float
    now: float  # unix seconds


@dataclass(frozen=True)
class Heartbeat(Op[bool]):
    task_id: str
    token: str
    lease_s: float
    now: float


@dataclass(frozen=True)
class CompleteTask(Op[TaskStatus | None]):
    """Finish an attempt if ``token`` still holds the lease (None if it does not).

    Success releases dependents; a failure is retried with backoff until the last
    attempt, then the task is ``failed`` (its error says after how many attempts and
    why), and its dependents fail with that reason.
    """

    task_id: str
    token: str
    result: ExecResult
    ok: bool
    now: float
    retryable: bool = True
    actor: str = "dispatcher"


@dataclass(frozen=True)
class RescueExpired(Op[list[str]]):
    """Running tasks whose lease ran out: a failed attempt each (retried, or failed)."""

    now: float
    actor: str = "dispatcher"


@dataclass(frozen=True)
class RequeueAgent(Op[list[str]]):
    """An agent is gone: its running tasks go back to the queue at once, the attempt
    not counted (the agent failed, not the task)."""

    agent_id: str
    reason: str
    actor: str


@dataclass(frozen=True)
class CancelTask(Op[tuple[TaskStatus, str | None]]):
    """Cancel an unfinished task; returns (previous status, the agent running it)."""

    task_id: str
    actor: str


@dataclass(frozen=True)
class CancelSwarmTasks(Op[list[tuple[str, str | None]]]):
    """Cancel every unfinished task of a swarm; returns (task id, running agent) pairs."""

    swarm: str
    actor: str


@dataclass(frozen=True)
class RetryTask(Op[Task]):
    """Queue a failed or cancelled task again with fresh attempts."""

    task_id: str
    actor: str


# --- budgets ---------------------------------------------------------------------------
# Amounts here are store units: micro-dollars for "usd", tokens for "tokens".


@dataclass(frozen=True)
class SetBudget(Op[Budget]):
    """Create or change the budget on (scope, unit); its spend so far is kept."""

    scope: str
    unit: BudgetUnit
    limit: int
    period: BudgetPeriod
    now: float


@dataclass(frozen=True)
class ClearBudget(Op[Budget]):
    """Remove a budget (its spend goes to the history); returns it as it was."""

    scope: str
    unit: BudgetUnit
    now: float


@dataclass(frozen=True)
class RollBudgets(Op[list[Budget]]):
    """Start a new period for every budget whose period ended (the old one goes to the
    history); returns every budget."""

    now: float


@dataclass(frozen=True)
class BudgetRefusal:
    """Why a reservation did not fit: the first budget that would overflow."""

    budget: Budget
    amount: int  # what the reservation asked of it, in store units


@dataclass(frozen=True)
class ReserveBudget(Op[list[Budget] | BudgetRefusal]):
    """Hold ``usd``/``tokens`` against every budget on ``scopes``, each only if
    ``spent + reserved + amount <= limit``: all or nothing. ``usd`` None (an unknown
    price) reserves nothing against dollar budgets (the engine refuses that first).
    Returns the budgets held against, or the refusal (nothing changed)."""

    reservation_id: str
    scopes: tuple[str, ...]
    usd: int | None
    tokens: int
    now: float
    exec_id: str | None = None
    task_id: str | None = None


@dataclass(frozen=True)
class SettleBudget(Op[list[Budget]]):
    """Charge what the exec really cost, release its reservation; returns the budgets
    changed (none if it was settled or expired already)."""

    reservation_id: str
    usd: int | None  # None: unknown cost (dollar budgets are charged the estimate)
    tokens: int
    now: float


@dataclass(frozen=True)
class ExpireReservations(Op[list[Budget]]):
    """Release reservations older than ``before`` that were never settled (their exec
    died with its daemon): the estimate is charged, as the spend is unknown."""

    before: float
    now: float


@dataclass(frozen=True)
class FailWaitingTasks(Op[list[str]]):
    """Fail tasks that wait (queued or ready), each with its reason (a budget
    exhausted), and their dependents; returns the ids failed."""

    failures: tuple[tuple[str, str], ...]  # (task id, reason)
    actor: str
