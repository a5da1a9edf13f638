"""Typed engine events, an in-process async bus, and a JSONL recorder.

The events live in ``types``, the bus in ``bus``, the recorder in ``recording``; import
them from here.

Every event is a frozen pydantic model with a ``type`` string discriminator, so an
event survives a trip through JSON (the recorder, the API stream) as the same class.
``seq`` is stamped by the bus that publishes the event: monotonic, and durable when
the bus has a ``SeqFile`` (the daemon's does: seqs never restart, across stops and
crashes; see ``seq``). 0 means "never published", which is also what a subscriber's
synthesized ``EventsDropped`` marker carries.

The live stream (``events.subscribe``), the recorder's JSONL and replay's input are one
format: one event per line, as ``event_to_json`` writes it. ``read_recording`` and
``tail_recording`` read it tolerantly (a torn last line and unknown types are skipped
and counted in ``ReadStats``). ``Backlog`` keeps the last events for resuming.

The bus (``EventBus``) never blocks its publisher: each subscriber has a bounded
queue, and when that queue is full the event is dropped *for that subscriber only*.
The subscriber then receives an ``EventsDropped`` marker at the point of the gap,
so a reader always knows what it missed instead of silently seeing a hole.

Adding an event type
--------------------
1. Subclass ``EventBase`` with a unique dotted type name, area first::

       class TaskQueued(EventBase):
           type: Literal["task.queued"] = "task.queued"
           task_id: str

2. Add the class to the ``Event`` union in ``core/events/types.py``. ``EVENT_TYPES``,
   ``EVENT_ADAPTER``, ``parse_event`` and the bus's ``types`` filter validation pick it
   up from there.
3. Add a sample instance to ``SAMPLES`` in ``tests/unit/test_events.py``; the
   round-trip test fails for any type in ``EVENT_TYPES`` without one.

Keep fields JSON-friendly (str, int, float, enums, datetimes, lists/dicts of those):
recordings written today must parse tomorrow, so prefer adding optional fields
with defaults over renaming or removing fields.
"""

from __future__ import annotations

from core.events.bus import EventBus, Subscription, SubscriptionClosed
from core.events.recording import EventRecorder, ReadStats, read_recording, tail_recording
from core.events.seq import SeqFile
from core.events.types import (
    EVENT_ADAPTER,
    EVENT_CLASSES,
    EVENT_TYPES,
    AgentActivity,
    AgentCreated,
    AgentHealthChanged,
    AgentOutput,
    AgentSpawned,
    AgentStatusChanged,
    Anomaly,
    AuditAppended,
    BudgetChanged,
    BudgetThreshold,
    ConfigChanged,
    DaemonStarted,
    DaemonStopping,
    DoFinished,
    DoPlanned,
    DoStarted,
    DoStep,
    DoTaskPlan,
    Event,
    EventBase,
    EventsDropped,
    ExecFinished,
    ExecStarted,
    ProviderPaused,
    ProviderResumed,
    QueuePressure,
    SwarmAutoscaled,
    SwarmChanged,
    TaskChanged,
    TaskFinished,
    TaskRouted,
    event_to_json,
    parse_event,
)

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
    "BudgetChanged",
    "BudgetThreshold",
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
    "EventBus",
    "EventRecorder",
    "EventsDropped",
    "ExecFinished",
    "ExecStarted",
    "ProviderPaused",
    "ProviderResumed",
    "QueuePressure",
    "ReadStats",
    "SeqFile",
    "Subscription",
    "SubscriptionClosed",
    "SwarmAutoscaled",
    "SwarmChanged",
    "TaskChanged",
    "TaskFinished",
    "TaskRouted",
    "event_to_json",
    "parse_event",
    "read_recording",
    "tail_recording",
]
