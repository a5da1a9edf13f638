"""The JSON shapes the daemon's methods return, as the thin client reads them.

One shape per kind of object, whichever method returns it (``agent.list`` and
``agent.get`` return the same agent object). These describe the JSON only: they import
nothing but ``typing``, so the CLI renders replies without pydantic or the engine.
Times are ISO 8601 strings in UTC; money is a decimal string, or null when unknown
(never 0 for "unknown").
"""

from __future__ import annotations

from typing import TypedDict

# An agent's statuses (``core.models.AgentStatus``) and those of an agent that has ended.
AGENT_STATUSES = ("starting", "idle", "busy", "unhealthy", "stopped", "lost", "failed", "unknown")
ENDED_STATUSES = ("stopped", "lost", "failed")


class Tokens(TypedDict):
    input: int
    output: int
    cache_read: int
    cache_write: int
    total: int


class AgentObject(TypedDict):
    """``agent.list`` items and ``agent.get``."""

    id: str
    name: str | None
    runtime: str
    model: str | None
    swarm: str | None
    skills: list[str]
    status: str
    status_source: str
    status_reason: str
    status_at: str
    pid: int | None
    workspace: str
    created_at: str
    current_task: str | None
    current_exec: str | None
    # The circuit breaker (closed | open | half_open), when it last changed state (null:
    # not since the daemon started) and the latest health event's one-line why.
    breaker: str
    breaker_at: str | None
    health_detail: str
    tokens: Tokens
    cost_usd: str | None
    # Execs that used tokens at an unknown price: a cost_usd beside them is a lower bound.
    cost_unknown_execs: int
    execs: int


# Task priorities in claim order, task statuses and the default routing strategy, as
# ``core.models`` defines them (tests/unit/test_shapes.py keeps them equal).
TASK_PRIORITIES = ("critical", "high", "normal", "low")
TASK_STATUSES = ("queued", "ready", "running", "succeeded", "failed", "cancelled")
DEFAULT_STRATEGY = "balanced"


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


class ExecObject(TypedDict):
    """``exec.list`` items: one exec as stored."""

    id: str
    agent_id: str
    input: str
    status: str
    exit_code: int | None
    reason: str
    started_at: str
    finished_at: str | None
    actor: str
    model: str | None
    usage: Usage
    cost_usd: str | None


class LogLine(TypedDict):
    """One streamed item of ``agent.logs``."""

    seq: int
    agent_id: str
    exec_id: str | None
    stream: str  # stdout, stderr or system
    at: str
    data: str


class ExecShowObject(TypedDict):
    """``exec.get``: one exec and its stored output, every stream in order."""

    exec: ExecObject
    output: list[LogLine]
    truncated: bool  # more output is stored than ``limit`` lines


class RuntimeObject(TypedDict):
    """``runtime.list`` items."""

    name: str
    description: str
    capabilities: list[str]
    source: str
    error: str | None


class Prices(TypedDict):
    """US dollars per million tokens, as decimal strings."""

    input_mtok: str
    output_mtok: str
    cache_read_mtok: str
    cache_write_mtok: str
    source: str


class ModelObject(TypedDict):
    """``model.list`` items."""

    name: str
    provider: str
    api: str
    upstream_id: str
    scripted: bool
    api_key_env: str | None
    api_key_set: bool
    prices: Prices | None


class AuditEntryObject(TypedDict):
    """``audit.list`` items and ``audit.export`` lines."""

    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    payload: dict[str, object]
    result: str
    prev_hash: str
    entry_hash: str


class VerifyReport(TypedDict):
    """``audit.verify``."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str


class ExecResultObject(TypedDict):
    """A task's last result (``Task.result``) and the end of an ``agent.exec`` stream."""

    kind: str
    exec_id: str
    status: str
    exit_code: int | None
    output: str
    usage: Usage
    cost_usd: str | None
    reason: str
    duration_s: float


class TaskObject(TypedDict):
    """``task.list`` items, ``task.get``, ``task.submit`` items, ``task.wait``'s tasks."""

    id: str
    input: str
    priority: str
    skills: list[str]
    depends_on: list[str]
    max_attempts: int
    timeout_s: float | None
    swarm: str | None
    runtime: str | None
    status: str
    attempts: int
    deps_pending: int
    not_before: float
    lease_agent: str | None
    lease_expires: float | None
    exec_id: str | None
    result: ExecResultObject | None
    error: str
    created_at: str
    updated_at: str
    finished_at: str | None
    waiting: str
    stranded: bool


class BudgetObject(TypedDict):
    """``budget.show`` items, ``budget.set``, ``budget.clear``; the ``budget.changed``
    event's ``budget``. Amounts are decimal strings: dollars, or tokens (``unit``)."""

    scope: str
    unit: str
    limit: str
    spent: str
    reserved: str
    period: str
    period_start: str
    reset_at: str | None


class BudgetPeriodObject(TypedDict):
    """``budget.history`` items: a finished period, or a cleared budget."""

    scope: str
    unit: str
    limit: str
    spent: str
    period: str
    started_at: str
    ended_at: str
