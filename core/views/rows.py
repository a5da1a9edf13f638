"""The shapes every face shows: one per kind of object, in lists, gets and views alike."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field, computed_field

from core.models import AgentStatus, Budget, StatusSource, Swarm

__all__ = [
    "AgentRow",
    "Decision",
    "DoRunRow",
    "DoTaskRow",
    "RouterState",
    "SpendState",
    "SpendTotals",
    "SwarmRow",
    "TaskRow",
    "Tokens",
    "ViewSnapshot",
]


class Tokens(BaseModel):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write


class Spend(BaseModel):
    """Tokens and dollars. ``cost_usd`` None: no exec reported a cost (a runtime
    without a model, or no known price) — unknown, never shown as free.
    ``cost_unknown_execs``: execs that used tokens at an unknown price, so a known
    ``cost_usd`` beside them is a lower bound."""

    execs: int = 0  # execs run (agents: started; spend totals: finished)
    tokens: Tokens = Field(default_factory=Tokens)
    cost_usd: Decimal | None = None
    cost_unknown_execs: int = 0


class AgentRow(BaseModel):
    """An agent as every face shows it (``agent list``, ``agent get``, ``view.agents``):
    the stored record (internal fields left out) with what it is doing and has spent."""

    id: str
    name: str | None = None
    runtime: str
    model: str | None = None
    swarm: str | None = None
    skills: list[str] = Field(default_factory=list)
    status: AgentStatus
    status_source: StatusSource
    status_reason: str = ""
    status_at: datetime
    pid: int | None = None
    workspace: str
    created_at: datetime
    current_task: str | None = None
    current_exec: str | None = None
    # From ``agent.health`` events only: breakers live in the daemon's memory, so a view
    # read from the store (and an agent never heard of since) shows closed.
    breaker: str = "closed"  # closed | open | half_open
    breaker_at: datetime | None = None  # when it last changed state (None: not since start)
    health_detail: str = ""  # the latest health event's one-line why
    # The same fields and meaning as ``Spend`` (not inherited: the id comes first).
    execs: int = 0
    tokens: Tokens = Field(default_factory=Tokens)
    cost_usd: Decimal | None = None
    cost_unknown_execs: int = 0


class TaskRow(BaseModel):
    """A task in a view: enough to list and count it. Its fields are the ``Task``'s of
    the same names (``task get`` has the whole task)."""

    id: str
    swarm: str | None = None
    status: str
    lease_agent: str | None = None
    attempts: int = 0
    priority: str = "normal"
    runtime: str | None = None
    error: str = ""
    input: str = ""  # its first 200 characters


class SwarmRow(Swarm):
    """A swarm with what it holds now: live agents by status, tasks by status."""

    agents_by_status: dict[str, int] = Field(default_factory=dict)
    tasks_by_status: dict[str, int] = Field(default_factory=dict)
    ready_by_priority: dict[str, int] = Field(default_factory=dict)


class Decision(BaseModel):
    task_id: str
    agent_id: str | None
    swarm: str | None = None
    strategy: str = ""
    reason: str = ""
    elapsed_ms: float = 0.0
    at: datetime


class RouterState(BaseModel):
    """Routing as seen from the decisions the router published since the daemon started."""

    decisions: int = 0
    routed: int = 0
    unroutable: int = 0
    per_second: float = 0.0  # over the last 10 s of decisions
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    strategies: dict[str, str] = Field(default_factory=dict)  # swarm -> strategy
    # Live agents' breakers that are not closed, by state: {"open": 2, "half_open": 1}.
    breakers: dict[str, int] = Field(default_factory=dict)
    recent: list[Decision] = Field(default_factory=list)  # newest last


class SpendTotals(Spend):
    pass


class SpendState(BaseModel):
    """Spend of every exec ever run, by swarm ("" = the default pool), runtime and model
    ("" = none)."""

    total: SpendTotals = Field(default_factory=SpendTotals)
    by_swarm: dict[str, SpendTotals] = Field(default_factory=dict)
    by_runtime: dict[str, SpendTotals] = Field(default_factory=dict)
    by_model: dict[str, SpendTotals] = Field(default_factory=dict)
    # Budgets (``budget.changed``): limit, spent this period, reserved, when it resets.
    budgets: list[Budget] = Field(default_factory=list)


class DoTaskRow(BaseModel):
    """One task of a ``godel do`` run: its state after its last step, and that step's line."""

    name: str
    level: int
    runtime: str
    files: list[str] = Field(default_factory=list)
    # waiting (not started), running, gating, ready (to merge), merged, failed, skipped
    state: str = "waiting"
    line: str = ""
    agent_id: str | None = None
    at: datetime | None = None  # of its last step


class DoRunRow(BaseModel):
    """A ``godel do`` run as its ``do.*`` events tell it (``do.started`` onwards)."""

    run: str
    intent: str
    strategy: str
    runtime: str
    gate: str | None = None
    repo: str = ""
    started_at: datetime
    # planning, running, then its outcome: merged, failed, budget_exhausted, interrupted, error
    state: str = "planning"
    plan_source: str | None = None
    tasks: list[DoTaskRow] = Field(default_factory=list)
    lines: list[str] = Field(default_factory=list)  # its last printed lines, newest last
    exit_code: int | None = None
    elapsed_s: float | None = None
    finished_at: datetime | None = None
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class ViewSnapshot(BaseModel):
    """Every view as of event ``seq``: apply the events after ``seq`` to stay current."""

    seq: int
    agents: list[AgentRow] = Field(default_factory=list)  # ended ones included
    swarms: list[SwarmRow] = Field(default_factory=list)
    tasks_by_status: dict[str, dict[str, int]] = Field(default_factory=dict)  # swarm ->
    tasks_active: list[TaskRow] = Field(default_factory=list)  # queued, ready, running
    tasks_recent: list[TaskRow] = Field(default_factory=list)  # last finished, newest last
    router: RouterState = Field(default_factory=RouterState)
    spend: SpendState = Field(default_factory=SpendState)
    runs: list[DoRunRow] = Field(default_factory=list)  # godel do runs, oldest first
