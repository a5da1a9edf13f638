"""The event models, the ``Event`` union, ``EVENT_TYPES`` and JSON parse/serialise.

Every event is a frozen pydantic model with a ``type`` string discriminator; see the
package docstring (``core.events``) for how to add one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from core.models import AgentStatus, Budget, ExecStatus, StatusSource, Swarm, Usage, utcnow

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "AgentActivity",
    "AgentCreated",
    "AgentHealthChanged",
    "AgentOutput",
    "AgentSpawned",
    "AgentStatusChanged",
    "Anomaly",
    "AuditAppended",
    "ConfigChanged",
    "DaemonStarted",
    "DaemonStopping",
    "DoFinished",
    "DoPlanned",
    "DoStarted",
    "DoStep",
    "DoTaskPlan",
    "Event",
    "EventBase",
    "EventsDropped",
    "ExecFinished",
    "ExecStarted",
    "QueuePressure",
    "SwarmAutoscaled",
    "SwarmChanged",
    "TaskChanged",
    "TaskFinished",
    "TaskRouted",
    "event_to_json",
    "parse_event",
]


class EventBase(BaseModel):
    """Fields every event carries. Subclasses add ``type: Literal[...]`` and payload."""

    # Frozen because one instance is shared by every subscriber of a bus.
    model_config = ConfigDict(frozen=True)

    seq: int = 0
    at: datetime = Field(default_factory=utcnow)

    @field_validator("at")
    @classmethod
    def _at_is_utc(cls, v: datetime) -> datetime:
        # A naive time is ambiguous; refuse it rather than guess a zone.
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("event time must be timezone-aware")
        return v.astimezone(UTC)


class AgentCreated(EventBase):
    """An agent's record was stored (status ``starting``), before its process runs."""

    type: Literal["agent.created"] = "agent.created"
    agent_id: str
    runtime: str
    name: str | None = None
    model: str | None = None
    skills: list[str] = Field(default_factory=list)
    swarm: str | None = None
    workspace: str
    status_reason: str = ""


class AgentSpawned(EventBase):
    """The agent's process runs (``pid``); its status moves to idle next."""

    type: Literal["agent.spawned"] = "agent.spawned"
    agent_id: str
    runtime: str
    name: str | None = None
    workspace: str
    pid: int | None = None


class AgentStatusChanged(EventBase):
    type: Literal["agent.status_changed"] = "agent.status_changed"
    agent_id: str
    status: AgentStatus
    source: StatusSource
    reason: str = ""
    previous: AgentStatus | None = None


class AgentOutput(EventBase):
    type: Literal["agent.output"] = "agent.output"
    agent_id: str
    exec_id: str
    stream: Literal["stdout", "stderr"]
    data: str
    task_id: str | None = None  # the task this output's exec works on


class AgentActivity(EventBase):
    """What an LLM agent does besides printing: tool calls and results, usage, notices,
    refused actions. ``kind`` is the runtime event's kind; ``data`` its fields."""

    type: Literal["agent.activity"] = "agent.activity"
    agent_id: str
    exec_id: str
    kind: str
    data: dict[str, Any] = Field(default_factory=dict)


class AgentHealthChanged(EventBase):
    """An agent's circuit breaker or health verdict changed: the breaker's state, its
    consecutive exec failures, whether it keeps the agent out of its pool (``ejected``:
    open and not let back in by the ejection cap), or the probes' verdict.

    Breakers live in the daemon's memory only (they start closed with the daemon), so
    this event is their one public source. ``source`` says what moved it: ``exec
    outcome``, ``open time`` (open → half-open), ``probe``, ``ejection cap``, ``held
    command`` or ``agent ended``; ``detail`` says why, in one line.
    """

    type: Literal["agent.health"] = "agent.health"
    agent_id: str
    breaker: Literal["closed", "open", "half_open"] = "closed"
    failures: int = 0
    ejected: bool = False
    detail: str = ""
    source: str = ""


class TaskRouted(EventBase):
    """A routing decision for a task (``agent_id`` None: nobody could take it now)."""

    type: Literal["task.routed"] = "task.routed"
    task_id: str
    agent_id: str | None
    swarm: str | None = None
    strategy: str = ""
    reason: str = ""
    elapsed_ms: float = 0.0  # time spent routing this task


class TaskFinished(EventBase):
    type: Literal["task.finished"] = "task.finished"
    task_id: str
    status: str  # a TaskStatus value (ready when it will be retried)
    agent_id: str | None = None
    exec_id: str | None = None
    reason: str = ""


class TaskChanged(EventBase):
    """A task's status changed (or it was created: ``previous`` None). Published for
    every change the store commits, whichever op made it, so a view that folds these
    events always agrees with the store."""

    type: Literal["task.changed"] = "task.changed"
    task_id: str
    swarm: str | None = None
    status: str  # a TaskStatus value
    previous: str | None = None
    agent_id: str | None = None  # the task's ``lease_agent`` now (None once released)
    previous_agent: str | None = None  # its ``lease_agent`` before the change
    attempts: int = 0
    priority: str = "normal"
    runtime: str | None = None
    error: str = ""
    input: str = ""  # its first 200 characters


class SwarmChanged(EventBase):
    """A swarm was created or changed (size, strategy, destroyed): its whole record."""

    type: Literal["swarm.changed"] = "swarm.changed"
    swarm: Swarm


class QueuePressure(EventBase):
    """The queue passed 90 % of a capacity (submits are refused above 95 %)."""

    type: Literal["queue.pressure"] = "queue.pressure"
    scope: str
    fraction: float
    capacity: int


class Anomaly(EventBase):
    """A runtime's failure rate spiked (``AnomalyDetector``); publishable on the bus.

    ``clock`` is the detector clock value (the ``now`` passed in) at detection; ``at``
    is wall time as for every event. ``baseline_rate`` is 0.0 with no baseline samples.
    """

    type: Literal["runtime.anomaly"] = "runtime.anomaly"
    kind: Literal["failure_spike"] = "failure_spike"
    runtime: str
    window_s: float
    failure_rate: float
    baseline_rate: float
    threshold: float
    samples: int
    failures: int
    baseline_samples: int
    clock: float
    message: str


class SwarmAutoscaled(EventBase):
    """The autoscaler changed a swarm's size, and why."""

    type: Literal["swarm.autoscaled"] = "swarm.autoscaled"
    swarm: str
    from_agents: int
    to_agents: int
    reason: str


class ExecStarted(EventBase):
    type: Literal["exec.started"] = "exec.started"
    agent_id: str
    exec_id: str
    input: str
    actor: str = ""
    task_id: str | None = None  # the task this exec works on (None: `agent exec`)


class ExecFinished(EventBase):
    type: Literal["exec.finished"] = "exec.finished"
    agent_id: str
    exec_id: str
    status: ExecStatus
    exit_code: int | None = None
    duration_s: float = 0.0
    reason: str = ""
    task_id: str | None = None
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    # Decimal as text; None means unknown (no price or no report), never free.
    cost_usd: str | None = None
    # Bytes of output past `[defaults] exec_output_max_bytes`: neither stored nor published.
    output_dropped: int = 0


class BudgetChanged(EventBase):
    """A budget was set, charged, released, reset or cleared: its whole record
    (``cleared``: it no longer exists)."""

    type: Literal["budget.changed"] = "budget.changed"
    budget: Budget
    cleared: bool = False


class BudgetThreshold(EventBase):
    """A budget's settled spend crossed a threshold: ``level`` says what follows
    ("notice" 50 %, "warning" 75 %, "hold" 90 %: no new dispatch, "exhausted" 100 %:
    running agents stop at their next turn and waiting tasks fail)."""

    type: Literal["budget.threshold"] = "budget.threshold"
    scope: str
    unit: str
    level: Literal["notice", "warning", "hold", "exhausted"]
    threshold: float
    fraction: float
    message: str


class ProviderPaused(EventBase):
    """A provider's usage limit was hit: no task starts on its agents until ``until``,
    when it resumes by itself (``provider.resumed``)."""

    type: Literal["provider.paused"] = "provider.paused"
    provider: str
    until: datetime
    retry_after_s: float
    message: str


class ProviderResumed(EventBase):
    """A provider paused by its usage limit reached its reset: dispatch goes on."""

    type: Literal["provider.resumed"] = "provider.resumed"
    provider: str


class DoStarted(EventBase):
    """A ``godel do`` run began (``run`` names it in every ``do.*`` event after)."""

    type: Literal["do.started"] = "do.started"
    run: str
    intent: str
    repo: str
    base: str
    strategy: str
    runtime: str
    agents: int
    gate: str | None = None


class DoTaskPlan(BaseModel):
    """One task of a run's plan, as ``do.planned`` shows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    level: int  # its dependency level: it runs after every task of a lower level
    input: str
    runtime: str
    depends_on: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)


class DoPlanned(EventBase):
    """The run's plan: from a file (``source`` "file") or a model ("model NAME"), with
    what planning cost (None: unknown or not billed)."""

    type: Literal["do.planned"] = "do.planned"
    run: str
    source: str
    tasks: list[DoTaskPlan]
    tokens: int | None = None
    cost_usd: str | None = None


DoStepKind = Literal[
    "worktree", "agent", "exec", "commit", "gate", "retry", "merge", "overlap", "skipped", "kept"
]
DoTaskState = Literal["running", "gating", "ready", "merged", "failed", "skipped"]


class DoStep(EventBase):
    """One step of a run: ``line`` is what ``godel do`` prints for it; ``state`` the task's
    state after it (None: a run-wide step, such as an overlap)."""

    type: Literal["do.step"] = "do.step"
    run: str
    step: DoStepKind
    line: str
    task: str | None = None
    state: DoTaskState | None = None
    agent_id: str | None = None
    exec_id: str | None = None


class DoFinished(EventBase):
    """A run ended: its outcome, exit code (as ``godel run``'s) and the whole report."""

    type: Literal["do.finished"] = "do.finished"
    run: str
    outcome: Literal["merged", "failed", "budget_exhausted", "interrupted", "error"]
    exit_code: int
    elapsed_s: float
    message: str = ""  # why, for "error" and "interrupted"
    report: dict[str, Any] | None = None  # core.engine.doruns.DoReport; None: no report


class AuditAppended(EventBase):
    type: Literal["audit.appended"] = "audit.appended"
    seq_no: int
    action: str
    subject: str
    actor: str
    result: str


class DaemonStarted(EventBase):
    type: Literal["daemon.started"] = "daemon.started"
    pid: int
    version: str


class DaemonStopping(EventBase):
    type: Literal["daemon.stopping"] = "daemon.stopping"
    reason: str = ""


class ConfigChanged(EventBase):
    type: Literal["config.changed"] = "config.changed"
    digest: str
    sources: list[str] = Field(default_factory=list)


class EventsDropped(EventBase):
    """Synthesized per subscriber (never published): ``count`` events were lost here."""

    type: Literal["events.dropped"] = "events.dropped"
    count: int
    subscriber: str


Event = Annotated[
    AgentCreated
    | AgentSpawned
    | AgentStatusChanged
    | AgentOutput
    | AgentActivity
    | AgentHealthChanged
    | TaskRouted
    | TaskFinished
    | TaskChanged
    | SwarmChanged
    | QueuePressure
    | Anomaly
    | SwarmAutoscaled
    | ExecStarted
    | ExecFinished
    | BudgetChanged
    | BudgetThreshold
    | ProviderPaused
    | ProviderResumed
    | DoStarted
    | DoPlanned
    | DoStep
    | DoFinished
    | AuditAppended
    | DaemonStarted
    | DaemonStopping
    | ConfigChanged
    | EventsDropped,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

# Derived from the union so that adding a class there is the only registration step.
EVENT_CLASSES: tuple[type[EventBase], ...] = get_args(get_args(Event)[0])
EVENT_TYPES: frozenset[str] = frozenset(
    str(cls.model_fields["type"].default) for cls in EVENT_CLASSES
)


def parse_event(data: str | bytes | dict[str, Any]) -> Event:
    """Parse one event from JSON text or a decoded dict.

    Raises ``pydantic.ValidationError`` (a ``ValueError``) for bad JSON, an unknown
    ``type`` or invalid fields.
    """
    if isinstance(data, dict):
        return EVENT_ADAPTER.validate_python(data)
    return EVENT_ADAPTER.validate_json(data)


def event_to_json(event: Event) -> str:
    """One compact JSON object on a single line (newlines in strings are escaped)."""
    return event.model_dump_json()
