"""Typed engine events, an in-process async bus, and a JSONL recorder.

Every event is a frozen pydantic model with a ``type`` string discriminator, so an
event survives a trip through JSON (the recorder, the API stream) as the same class.
``seq`` is stamped by the bus that publishes the event (monotonic per bus, starting
at 1; 0 means "never published", which is also what a subscriber's synthesized
``EventsDropped`` marker carries).

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

2. Add the class to the ``Event`` union below. ``EVENT_TYPES``, ``EVENT_ADAPTER``,
   ``parse_event`` and the bus's ``types`` filter validation pick it up from there.
3. Add a sample instance to ``SAMPLES`` in ``tests/unit/test_events.py``; the
   round-trip test fails for any type in ``EVENT_TYPES`` without one.

Keep fields JSON-friendly (str, int, float, enums, datetimes, lists/dicts of those):
recordings written today must parse tomorrow, so prefer adding optional fields
with defaults over renaming or removing fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from core.models import AgentStatus, ExecStatus, StatusSource, utcnow

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "AgentOutput",
    "AgentSpawned",
    "AgentStatusChanged",
    "AuditAppended",
    "ConfigChanged",
    "DaemonStarted",
    "DaemonStopping",
    "Event",
    "EventBase",
    "EventBus",
    "EventRecorder",
    "EventsDropped",
    "ExecFinished",
    "ExecStarted",
    "Subscription",
    "SubscriptionClosed",
    "event_to_json",
    "parse_event",
    "read_recording",
]


# --------------------------------------------------------------------------- events


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


class AgentSpawned(EventBase):
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


class AgentActivity(EventBase):
    """What an LLM agent does besides printing: tool calls and results, usage, notices,
    refused actions. ``kind`` is the runtime event's kind; ``data`` its fields."""

    type: Literal["agent.activity"] = "agent.activity"
    agent_id: str
    exec_id: str
    kind: str
    data: dict[str, Any] = Field(default_factory=dict)


class TaskRouted(EventBase):
    """A routing decision for a task (``agent_id`` None: nobody could take it now)."""

    type: Literal["task.routed"] = "task.routed"
    task_id: str
    agent_id: str | None
    swarm: str | None = None
    strategy: str = ""
    reason: str = ""


class TaskFinished(EventBase):
    type: Literal["task.finished"] = "task.finished"
    task_id: str
    status: str  # a TaskStatus value (ready when it will be retried)
    agent_id: str | None = None
    exec_id: str | None = None
    reason: str = ""


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


class ExecFinished(EventBase):
    type: Literal["exec.finished"] = "exec.finished"
    agent_id: str
    exec_id: str
    status: ExecStatus
    exit_code: int | None = None
    duration_s: float = 0.0
    reason: str = ""


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
    AgentSpawned
    | AgentStatusChanged
    | AgentOutput
    | AgentActivity
    | TaskRouted
    | TaskFinished
    | QueuePressure
    | Anomaly
    | SwarmAutoscaled
    | ExecStarted
    | ExecFinished
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


# ------------------------------------------------------------------------------ bus


class SubscriptionClosed(Exception):
    """Raised by ``Subscription.get()`` once the subscription has no more events."""


class _End:
    """Queue sentinel: wakes a waiting getter when the subscription ends or closes."""


_END = _End()

# (events dropped just before this one, event). Carrying the gap size on the next
# event that fits puts the drop marker at the exact point of the gap.
_Item = tuple[int, Event] | _End


class Subscription:
    """One subscriber's bounded view of a bus; an async iterator of events.

    ``end()`` stops new events but still delivers what is queued; ``close()`` stops
    at once and discards what is queued. Both unsubscribe from the bus.
    """

    def __init__(
        self, bus: EventBus, name: str, maxsize: int, types: AbstractSet[str] | None
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.maxsize = maxsize
        self.types: frozenset[str] | None = frozenset(types) if types is not None else None
        self._bus = bus
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize)
        self._dropped = 0  # dropped since the last event that made it into the queue
        self._dropped_total = 0
        self._pending: Event | None = None  # held back while its drop marker goes out
        self._ended = False
        self._closed = False

    @property
    def dropped_total(self) -> int:
        """Events dropped for this subscriber over its whole life."""
        return self._dropped_total

    @property
    def ended(self) -> bool:
        """True once no new events will be queued (``end``, ``close`` or bus close)."""
        return self._ended

    def qsize(self) -> int:
        return self._queue.qsize()

    # Called by the bus; must never block or raise for a full queue.
    def _offer(self, event: Event) -> None:
        if self._ended:
            return
        if self.types is not None and event.type not in self.types:
            return
        try:
            self._queue.put_nowait((self._dropped, event))
        except asyncio.QueueFull:
            self._dropped += 1
            self._dropped_total += 1
        else:
            self._dropped = 0

    def _marker(self, count: int) -> EventsDropped:
        return EventsDropped(count=count, subscriber=self.name)

    def _unpack(self, item: _Item) -> Event:
        if isinstance(item, _End):
            if self._closed:
                raise SubscriptionClosed(self.name)
            if self._dropped:
                # Drops after the last queued event still get reported before the end.
                count, self._dropped = self._dropped, 0
                return self._marker(count)
            raise SubscriptionClosed(self.name)
        dropped, event = item
        if dropped:
            self._pending = event
            return self._marker(dropped)
        return event

    def get_nowait(self) -> Event:
        """Next event without waiting; ``asyncio.QueueEmpty`` if none is ready.

        Raises ``SubscriptionClosed`` when the subscription is over.
        """
        if self._closed:
            raise SubscriptionClosed(self.name)
        if self._pending is not None:
            event, self._pending = self._pending, None
            return event
        if self._queue.empty():
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return self._marker(count)
            if self._ended:
                raise SubscriptionClosed(self.name)
            raise asyncio.QueueEmpty
        return self._unpack(self._queue.get_nowait())

    async def get(self) -> Event:
        """Wait for the next event; raises ``SubscriptionClosed`` when it is over."""
        try:
            return self.get_nowait()
        except asyncio.QueueEmpty:
            pass
        item = await self._queue.get()
        if self._closed:
            raise SubscriptionClosed(self.name)
        return self._unpack(item)

    def end(self) -> None:
        """Take no new events; queued ones (and a pending drop marker) still arrive."""
        if self._ended:
            return
        self._ended = True
        self._bus._unsubscribe(self)
        # Only an empty queue can have a waiting getter, and then there is room.
        if not self._queue.full():
            self._queue.put_nowait(_END)

    def close(self) -> None:
        """Unsubscribe and stop now; queued events are discarded."""
        if self._closed:
            return
        self._closed = True
        self._ended = True
        self._bus._unsubscribe(self)
        self._pending = None
        self._dropped = 0
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_END)  # wake a getter blocked in get()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Subscription {self.name!r} queued={self._queue.qsize()}/{self.maxsize} "
            f"dropped_total={self._dropped_total} ended={self._ended}>"
        )


class EventBus:
    """In-process fan-out of events to bounded per-subscriber queues.

    Not thread-safe: call ``publish`` from the event loop's thread (from another
    thread use ``loop.call_soon_threadsafe(bus.publish, event)``).
    """

    def __init__(self) -> None:
        self._seq = 0
        # A dict keeps subscription order and gives O(1) removal.
        self._subs: dict[Subscription, None] = {}
        self._closed = False

    @property
    def seq(self) -> int:
        """The seq of the last published event (0 before the first)."""
        return self._seq

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def publish(self, event: Event) -> None:
        """Stamp ``seq`` and hand the event to every subscriber; never blocks.

        The caller's instance is left untouched (subscribers get a stamped copy).
        After ``close()`` this is a no-op, so late publishes during shutdown are harmless.
        """
        if self._closed:
            return
        self._seq += 1
        stamped = event.model_copy(update={"seq": self._seq})
        for sub in self._subs:
            sub._offer(stamped)

    def subscribe(
        self, name: str, maxsize: int = 1000, types: AbstractSet[str] | None = None
    ) -> Subscription:
        """A new subscription, optionally only for the given event ``type`` strings.

        On a closed bus the subscription is already ended, so iterating it stops
        at once rather than hanging.
        """
        if types is not None:
            unknown = set(types) - EVENT_TYPES
            if unknown:
                raise ValueError(f"unknown event types: {sorted(unknown)}")
        sub = Subscription(self, name, maxsize, types)
        if self._closed:
            sub.end()
        else:
            self._subs[sub] = None
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.pop(sub, None)

    def close(self) -> None:
        """Stop accepting events and end every subscription (queued events still drain)."""
        self._closed = True
        for sub in list(self._subs):
            sub.end()
        self._subs.clear()


# ------------------------------------------------------------------------- recorder


class EventRecorder:
    """Appends every event of a bus to a JSONL file, one event per line.

    Writes go through ``asyncio.to_thread``: even a small write can stall for a
    long time on a slow or full disk, and a stalled event loop would stall every
    ``publish`` caller. The thread hop is paid once per batch, not per event.
    """

    def __init__(
        self,
        bus: EventBus,
        path: str | Path,
        *,
        name: str = "recorder",
        maxsize: int = 10_000,
        types: AbstractSet[str] | None = None,
        batch_size: int = 512,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self._bus = bus
        self._name = name
        self._maxsize = maxsize
        self._types = types
        self._batch_size = batch_size
        self._sub: Subscription | None = None
        self._file: IO[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._written = 0

    @property
    def written(self) -> int:
        """Events written so far (drop markers included)."""
        return self._written

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Subscribe and start writing; needs a running event loop."""
        if self._task is not None:
            raise RuntimeError("recorder already started")
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Opened here, not in the task, so a bad path fails start() instead of stop().
        # newline="\n": the format is LF-separated on every platform.
        self._file = self.path.open("a", encoding="utf-8", newline="\n")
        self._sub = self._bus.subscribe(self._name, self._maxsize, self._types)
        self._task = loop.create_task(self._run(), name=f"event-recorder:{self.path}")

    async def stop(self) -> None:
        """Stop subscribing, write everything already queued, close the file.

        Re-raises a write error that stopped the recorder early.
        """
        task, sub = self._task, self._sub
        if task is None or sub is None:
            return
        sub.end()
        try:
            await task
        finally:
            self._task = None
            self._sub = None

    async def _run(self) -> None:
        sub, f = self._sub, self._file
        assert sub is not None and f is not None
        try:
            while True:
                try:
                    batch = [await sub.get()]
                except SubscriptionClosed:
                    return
                while len(batch) < self._batch_size:
                    try:
                        batch.append(sub.get_nowait())
                    except (asyncio.QueueEmpty, SubscriptionClosed):
                        break
                lines = "".join(event_to_json(e) + "\n" for e in batch)
                await asyncio.to_thread(_write_flush, f, lines)
                self._written += len(batch)
        finally:
            # On a write error, stop queueing events nobody will write.
            sub.close()
            f.close()
            self._file = None

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _write_flush(f: IO[str], text: str) -> None:
    f.write(text)
    f.flush()


def read_recording(path: str | Path) -> Iterator[Event]:
    """Yield the events of a JSONL recording in order.

    Every line must be an event: a blank, truncated or otherwise malformed line
    raises ``ValueError`` naming the file and line number, never skipped.
    """
    path = Path(path)
    with path.open(encoding="utf-8", newline="\n") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                event = EVENT_ADAPTER.validate_json(line)
            except ValidationError as exc:
                raise ValueError(f"{path}: malformed event on line {lineno}: {exc}") from exc
            yield event
