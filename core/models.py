"""Pydantic domain types shared by the engine, the store, the API and the console.

Statuses are explicit and every status change records where it came from
(``StatusSource``) and when, so no face ever shows a status without a source.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_agent_id(runtime: str) -> str:
    """``shell-3f9a1c``: the runtime name and six hex digits."""
    return f"{runtime}-{secrets.token_hex(3)}"


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


class AgentStatus(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"  # ended on purpose (user kill, daemon stop)
    LOST = "lost"  # the engine lost its hold on the process (daemon crash)
    FAILED = "failed"  # the process died on its own or never started
    UNKNOWN = "unknown"  # no source can tell; shown rather than guessed

    @property
    def is_terminal(self) -> bool:
        return self in (AgentStatus.STOPPED, AgentStatus.LOST, AgentStatus.FAILED)


class StatusSource(StrEnum):
    """Where a status change came from."""

    SPAWN = "spawn"
    PROCESS_EXIT = "process_exit"
    PROBE = "probe"
    RUNTIME_EVENT = "runtime_event"
    USER = "user"
    DAEMON = "daemon"  # daemon start (recovery) or stop


class StatusChange(BaseModel):
    status: AgentStatus
    source: StatusSource
    reason: str = ""
    at: datetime = Field(default_factory=utcnow)


class AgentSpec(BaseModel):
    """What the user asks for when spawning an agent."""

    model_config = ConfigDict(extra="forbid")

    runtime: str
    name: str | None = None
    model: str | None = None
    skills: list[str] = Field(default_factory=list)
    workdir: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("skills")
    @classmethod
    def _clean_skills(cls, v: list[str]) -> list[str]:
        out = []
        for s in v:
            s = s.strip()
            if not s:
                continue
            if any(c.isspace() or c == "," for c in s):
                raise ValueError(f"skill {s!r} must not contain spaces or commas")
            out.append(s)
        return out


class Agent(BaseModel):
    """An agent as the store keeps it; the same record every face shows."""

    id: str
    runtime: str
    name: str | None = None
    model: str | None = None
    skills: list[str] = Field(default_factory=list)
    workspace: Path
    pid: int | None = None
    # The process start time lets recovery tell our process from a reused pid.
    pid_started_at: float | None = None
    status: AgentStatus
    status_source: StatusSource
    status_reason: str = ""
    status_at: datetime
    created_at: datetime
    spec: AgentSpec
    swarm: str | None = None


class Usage(BaseModel):
    """Token usage of one exec (or one turn); zero for runtimes without a model."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


class ExecStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # ran to the end with exit code 0
    FAILED = "failed"  # ran to the end with a non-zero exit code
    TIMED_OUT = "timed_out"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"  # the agent or the daemon died under it


class ExecResult(BaseModel):
    """The final item of every exec stream."""

    kind: Literal["result"] = "result"
    exec_id: str
    status: ExecStatus
    exit_code: int | None
    output: str = ""
    usage: Usage = Field(default_factory=Usage)
    # None means unknown (no price or no report), never "free".
    cost_usd: Decimal | None = None
    reason: str = ""
    duration_s: float = 0.0


class OutputChunk(BaseModel):
    kind: Literal["output"] = "output"
    exec_id: str
    stream: Literal["stdout", "stderr"]
    data: str


class AssistantText(BaseModel):
    """A piece of the model's answer as it streams (LLM runtimes)."""

    kind: Literal["assistant_text"] = "assistant_text"
    exec_id: str
    text: str


class ToolCallStarted(BaseModel):
    kind: Literal["tool_call"] = "tool_call"
    exec_id: str
    call_id: str
    name: str
    arguments: dict[str, object] = Field(default_factory=dict)


class ToolCallFinished(BaseModel):
    kind: Literal["tool_result"] = "tool_result"
    exec_id: str
    call_id: str
    name: str
    output: str
    is_error: bool = False


class TurnUsage(BaseModel):
    """Usage of one model call; cost None means unknown, never free."""

    kind: Literal["usage"] = "usage"
    exec_id: str
    model: str
    usage: Usage
    cost_usd: Decimal | None = None


class PolicyViolation(BaseModel):
    """The runtime refused something (e.g. a path outside the workspace); the engine audits it."""

    kind: Literal["policy"] = "policy"
    exec_id: str
    rule: str  # e.g. "workspace_confinement"
    detail: str


class RuntimeNotice(BaseModel):
    """Something the runtime reports about itself mid-exec (a retry, a steer delivered...)."""

    kind: Literal["notice"] = "notice"
    exec_id: str
    message: str


RuntimeEvent = Annotated[
    OutputChunk
    | AssistantText
    | ToolCallStarted
    | ToolCallFinished
    | TurnUsage
    | PolicyViolation
    | RuntimeNotice
    | ExecResult,
    Field(discriminator="kind"),
]


class ExecRecord(BaseModel):
    """One exec as stored: what ran on which agent and how it ended."""

    id: str
    agent_id: str
    input: str
    status: ExecStatus
    exit_code: int | None = None
    reason: str = ""
    started_at: datetime
    finished_at: datetime | None = None
    actor: str = ""
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: Decimal | None = None  # None: unknown (no price, or not an LLM runtime)


class LogLine(BaseModel):
    """A stored piece of an agent's output."""

    seq: int
    agent_id: str
    exec_id: str | None
    stream: Literal["stdout", "stderr", "system"]
    at: datetime
    data: str


class TaskPriority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical ... 3 for low: the order tasks are claimed in."""
        return list(TaskPriority).index(self)


class TaskStatus(StrEnum):
    QUEUED = "queued"  # waiting for its dependencies
    READY = "ready"  # can be claimed (once its retry backoff has passed)
    RUNNING = "running"  # leased to an agent
    SUCCEEDED = "succeeded"
    # Will not run again: its last attempt failed, a dependency failed for good, or it was
    # refused; ``error`` says which.
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class TaskSpec(BaseModel):
    """What ``godel task submit`` asks for."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1)
    priority: TaskPriority = TaskPriority.NORMAL
    skills: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    max_attempts: int = Field(default=3, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0)
    swarm: str | None = None
    # Only agents of this runtime may take it (a shell command must never reach an LLM).
    runtime: str | None = Field(default=None, min_length=1)


class Task(BaseModel):
    """A unit of work as the queue keeps it."""

    id: str
    input: str
    priority: TaskPriority
    skills: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    max_attempts: int
    timeout_s: float | None = None
    swarm: str | None = None
    runtime: str | None = None  # None: any runtime
    status: TaskStatus
    attempts: int = 0
    deps_pending: int = 0
    not_before: float = 0.0
    lease_agent: str | None = None
    lease_expires: float | None = None
    exec_id: str | None = None  # the exec of the last attempt
    result: ExecResult | None = None
    error: str = ""
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    # Why it is not running yet, computed by the engine when a task is read one at a time
    # or submitted ("" when it is not waiting, or it was not computed, as in listings).
    waiting: str = ""
    # No agent present now could ever take it (none in its pool, of its runtime, or with
    # its skills): ``waiting`` says which. Submits warn about it.
    stranded: bool = False


class Lease(BaseModel):
    """A claimed task: only the holder of ``token`` may complete or extend it."""

    task: Task
    token: str
    agent_id: str
    expires: float


# The routing strategy of a swarm that names none (one definition: the router, the CLI
# and the API all read it from here).
DEFAULT_STRATEGY = "balanced"


class SwarmSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    runtime: str
    count: int = Field(default=1, ge=0, le=5000)
    model: str | None = None
    skills: list[str] = Field(default_factory=list)
    min_agents: int | None = Field(default=None, ge=0)
    max_agents: int | None = Field(default=None, ge=1)
    target_per_agent: int = Field(default=1, ge=1)
    strategy: str = DEFAULT_STRATEGY
    capacity: int = Field(default=10_000, ge=1)


class Swarm(BaseModel):
    name: str
    runtime: str
    model: str | None
    skills: list[str]
    strategy: str
    min_agents: int
    max_agents: int
    target_per_agent: int
    desired: int
    capacity: int
    status: Literal["active", "destroyed"]
    created_at: datetime


class RuntimeInfo(BaseModel):
    """A registered runtime as ``godel runtime list`` shows it."""

    name: str
    description: str
    capabilities: list[str]
    source: str  # "builtin" or the entry point that provided it
    error: str | None = None  # set when a plug-in failed to load


class AuditEntry(BaseModel):
    """One audit-log row; ``entry_hash`` covers every other field and ``prev_hash``."""

    seq: int
    ts: datetime
    actor: str
    action: str
    subject: str
    payload: dict[str, object] = Field(default_factory=dict)
    result: str
    prev_hash: str
    entry_hash: str


# --- budgets ---------------------------------------------------------------------------

BudgetUnit = Literal["usd", "tokens"]
BudgetPeriod = Literal["none", "daily", "weekly", "monthly"]
BUDGET_SCOPE_KINDS = ("project", "swarm", "task", "runtime", "model")
# Dollars are kept as whole micro-dollars in the store: the conditional UPDATE that
# reserves compares integers, exactly.
MICRO_USD = Decimal(1_000_000)


def parse_budget_scope(scope: str) -> str:
    """``scope`` checked: "project", or "swarm:NAME", "task:ID", "runtime:NAME",
    "model:NAME"; ``ValueError`` names what is wrong."""
    kind, sep, name = scope.partition(":")
    if kind == "project" and not sep:
        return scope
    if kind not in BUDGET_SCOPE_KINDS:
        raise ValueError(
            f"unknown budget scope {scope!r}: use project, swarm:NAME, task:ID, "
            "runtime:NAME or model:NAME"
        )
    if kind == "project" or not name.strip():
        raise ValueError(f"budget scope {scope!r} needs a name after '{kind}:'")
    return scope


def period_start(period: BudgetPeriod, at: datetime) -> datetime:
    """Start (UTC) of the period that contains ``at``: midnight, Monday, the 1st (no
    period: ``at`` itself, when the budget was set)."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return at.astimezone(UTC)


def period_end(period: BudgetPeriod, start: datetime) -> datetime | None:
    """When the period that began at ``start`` resets (None: never)."""
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    if period == "monthly":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return None


class Budget(BaseModel):
    """A spending limit on one scope, in dollars or tokens, per period or overall.
    ``spent`` is settled spend this period; ``reserved`` is held by execs in flight."""

    scope: str
    unit: BudgetUnit
    limit: Decimal
    spent: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    period: BudgetPeriod = "none"
    period_start: datetime
    reset_at: datetime | None = None  # when ``spent`` goes back to zero (None: never)

    @property
    def fraction(self) -> float:
        """Settled spend as a fraction of the limit (a zero limit is full at once)."""
        if self.limit <= 0:
            return 1.0
        return float(self.spent / self.limit)


class BudgetPeriodRecord(BaseModel):
    """A finished period of a budget (``budget history``)."""

    scope: str
    unit: BudgetUnit
    limit: Decimal
    spent: Decimal
    period: BudgetPeriod
    started_at: datetime
    ended_at: datetime
