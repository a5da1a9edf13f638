"""The last events a bus published, kept so a subscriber can resume from a cursor."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence

from core.events.bus import EventBus
from core.events.types import AgentOutput, Event

__all__ = ["BACKLOG_BYTES", "BACKLOG_SIZE", "Backlog", "event_size", "last_run"]

BACKLOG_SIZE = 10_000  # events
BACKLOG_BYTES = 16 * 1024 * 1024  # roughly: an exec printing 50 MB must not stay in memory
_EVENT_OVERHEAD = 400  # bytes, about what a small event costs in memory


def event_size(event: Event) -> int:
    """A rough size in memory: output chunks dominate (up to 64 KiB each)."""
    if isinstance(event, AgentOutput):
        return _EVENT_OVERHEAD + len(event.data)
    return _EVENT_OVERHEAD


def last_run(events: Sequence[Event]) -> list[Event]:
    """The events of the last run in a recording's tail: the longest suffix whose seqs
    strictly increase (a recording written before seqs were durable restarts at 1 with
    each run; resuming must never replay an older run's events as new)."""
    out: list[Event] = []
    for event in reversed(events):
        if event.seq <= 0 or event.type == "events.dropped":
            continue
        if out and event.seq >= out[-1].seq:
            break
        out.append(event)
    out.reverse()
    return out


class Backlog:
    """A ring of the last published events (a tap on the bus), at most ``size`` events
    and about ``max_bytes``.

    ``preload`` seeds it with what a previous run published (the tail of the events
    file, strictly increasing seqs: see ``last_run``), so a client that resumes across a
    daemon restart misses nothing recent.
    """

    def __init__(
        self,
        bus: EventBus,
        size: int = BACKLOG_SIZE,
        preload: Iterable[Event] = (),
        max_bytes: int = BACKLOG_BYTES,
    ) -> None:
        self._bus = bus
        self._size = size
        self._max_bytes = max_bytes
        self._events: deque[tuple[Event, int]] = deque()
        self._bytes = 0
        for event in preload:
            if event.seq > 0 and event.type != "events.dropped":
                self._add(event)
        self._untap: Callable[[], None] = bus.tap(self._add)

    def _add(self, event: Event) -> None:
        if self._events and event.seq <= self._events[-1][0].seq:
            return  # never out of order (a stale preload, a replayed event)
        size = event_size(event)
        self._events.append((event, size))
        self._bytes += size
        while len(self._events) > self._size or (
            self._bytes > self._max_bytes and len(self._events) > 1
        ):
            _, dropped = self._events.popleft()
            self._bytes -= dropped

    def close(self) -> None:
        self._untap()

    def __len__(self) -> int:
        return len(self._events)

    @property
    def bytes(self) -> int:
        return self._bytes

    def since(self, after_seq: int) -> tuple[int, list[Event]]:
        """(how many seq numbers were missed, the kept events after ``after_seq``).

        ``missed`` counts the numbers between the cursor and the oldest kept event: an
        upper bound of the events lost, as a crash skips numbers (``core.events.seq``).
        """
        if not self._events:
            return max(0, self._bus.seq - after_seq), []
        first = self._events[0][0].seq
        missed = max(0, first - after_seq - 1)
        # Kept events are in seq order: skip the ones at or before the cursor.
        return missed, [e for e, _ in self._events if e.seq > after_seq]
