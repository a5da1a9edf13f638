"""The last events a bus published, kept so a subscriber can resume from a cursor."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from core.events.bus import EventBus
from core.events.types import Event

__all__ = ["BACKLOG_SIZE", "Backlog"]

BACKLOG_SIZE = 10_000


class Backlog:
    """A ring of the last ``size`` published events (a tap on the bus).

    ``preload`` seeds it with what a previous run published (the tail of the events
    file), so a client that resumes across a daemon restart misses nothing recent.
    """

    def __init__(self, bus: EventBus, size: int = BACKLOG_SIZE, preload: Iterable[Event] = ()):
        self._bus = bus
        self._events: deque[Event] = deque(maxlen=size)
        for event in preload:
            if event.seq > 0 and event.type != "events.dropped":
                self._events.append(event)
        self._untap: Callable[[], None] = bus.tap(self._events.append)

    def close(self) -> None:
        self._untap()

    def __len__(self) -> int:
        return len(self._events)

    def since(self, after_seq: int) -> tuple[int, list[Event]]:
        """(how many seq numbers were missed, the kept events after ``after_seq``).

        ``missed`` counts the numbers between the cursor and the oldest kept event: an
        upper bound of the events lost, as a crash skips numbers (``core.events.seq``).
        """
        if not self._events:
            return max(0, self._bus.seq - after_seq), []
        first = self._events[0].seq
        missed = max(0, first - after_seq - 1)
        if after_seq < first:
            return missed, list(self._events)
        # Kept events are in seq order: skip the ones at or before the cursor.
        out = [e for e in self._events if e.seq > after_seq]
        return missed, out

    def last(self, n: int) -> list[Event]:
        if n <= 0:
            return []
        return list(self._events)[-n:]
