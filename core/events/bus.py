"""The in-process event bus: ``EventBus`` fans events out to bounded ``Subscription`` queues.

The bus never blocks its publisher; a full subscriber queue drops the event for that
subscriber only, which then receives an ``EventsDropped`` marker at the gap. A queue is
full at ``maxsize`` events or at ``max_bytes`` of output chunks (a subscriber that falls
behind a loud exec must not hold its output in memory: 1,000 chunks can be 64 MiB).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from collections.abc import Set as AbstractSet
from types import TracebackType
from typing import Self

from core.events.seq import SeqFile
from core.events.types import EVENT_TYPES, AgentOutput, Event, EventsDropped

log = logging.getLogger("godel.events")

__all__ = [
    "SUBSCRIPTION_BYTES",
    "EventBus",
    "Subscription",
    "SubscriptionClosed",
    "Tap",
    "output_bytes",
]

SUBSCRIPTION_BYTES = 16 * 1024 * 1024  # of output chunks queued for one subscriber


def output_bytes(event: Event) -> int:
    """What an event holds beyond its few fields: an output chunk's data (up to 64 KiB)."""
    return len(event.data) if isinstance(event, AgentOutput) else 0


# A synchronous observer of every published event, called inside ``publish``: for views
# that must be exactly as of the bus's current seq (a snapshot and its seq agree).
Tap = Callable[[Event], None]


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
        self,
        bus: EventBus,
        name: str,
        maxsize: int,
        types: AbstractSet[str] | None,
        max_bytes: int = SUBSCRIPTION_BYTES,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._bytes = 0  # output bytes queued
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
        size = output_bytes(event)
        try:
            if size and self._bytes + size > self.max_bytes and not self._queue.empty():
                raise asyncio.QueueFull
            self._queue.put_nowait((self._dropped, event))
        except asyncio.QueueFull:
            self._dropped += 1
            self._dropped_total += 1
        else:
            self._dropped = 0
            self._bytes += size

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
        self._bytes -= output_bytes(event)
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
        self._bytes = 0
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

    def __init__(self, default_maxsize: int = 1000, *, seq_file: SeqFile | None = None) -> None:
        """With ``seq_file``, seq numbers continue from the last run and are reserved in
        blocks in that file (see ``core.events.seq``); without, they start at 1."""
        # A subscription's queue size when it names none (``[daemon] event_queue_size``).
        self.default_maxsize = default_maxsize
        self._seq_file = seq_file
        self._seq = seq_file.load() if seq_file is not None else 0
        self._reserved = self._seq
        # A dict keeps subscription order and gives O(1) removal.
        self._subs: dict[Subscription, None] = {}
        self._taps: list[Tap] = []
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

        A fresh event (``seq`` 0) is stamped in place; one that already carries a seq
        (published before, or read from a recording) is copied, so its seq stays.
        After ``close()`` this is a no-op, so late publishes during shutdown are harmless.
        """
        if self._closed:
            return
        self._seq += 1
        if self._seq > self._reserved and self._seq_file is not None:
            self._reserve(self._seq)
        if not self._subs and not self._taps:
            return  # nobody listens: spare the stamp (the seq still counts)
        if event.seq == 0:
            # A fresh event (the usual case): stamped in place. A copy per event cost
            # more than the rest of publishing; frozen only guards against subscribers.
            event.__dict__["seq"] = self._seq
            stamped = event
        else:
            stamped = event.model_copy(update={"seq": self._seq})  # published before
        for tap in self._taps:
            try:
                tap(stamped)
            except Exception:
                # An observer's bug must not stop the publisher or the other observers.
                log.exception("event tap %r failed on %s", tap, stamped.type)
        for sub in self._subs:
            sub._offer(stamped)

    def _reserve(self, seq: int) -> None:
        """Record a block of seqs from ``seq`` before any is handed out. Rare (once per
        block) and a small atomic file write. If it fails (disk full), publishing goes
        on (never raise into a commit's callback) and the next publish tries again."""
        assert self._seq_file is not None
        upto = seq + self._seq_file.block - 1
        try:
            self._seq_file.write(upto)
        except OSError as e:
            log.error(
                "cannot record event seqs in %s (%s): a crash now could reuse seq %d",
                self._seq_file.path,
                e,
                seq,
            )
            return
        self._reserved = upto

    def advance_to(self, seq: int) -> None:
        """Continue numbering after ``seq`` if that is higher (the highest seq found in a
        recording a previous run wrote, when the seq file is missing or behind)."""
        if seq > self._seq:
            self._seq = seq
            if self._seq_file is not None and self._seq >= self._reserved:
                self._reserve(self._seq + 1)

    def tap(self, fn: Tap) -> Callable[[], None]:
        """Call ``fn`` synchronously with every event published from now on (stamped);
        returns a function that removes it. ``fn`` must be quick and must not publish."""
        self._taps.append(fn)

        def untap() -> None:
            if fn in self._taps:
                self._taps.remove(fn)

        return untap

    def subscribe(
        self,
        name: str,
        maxsize: int | None = None,
        types: AbstractSet[str] | None = None,
        *,
        max_bytes: int = SUBSCRIPTION_BYTES,
    ) -> Subscription:
        """A new subscription, optionally only for the given event ``type`` strings; it
        holds at most ``maxsize`` events and about ``max_bytes`` of output chunks.

        On a closed bus the subscription is already ended, so iterating it stops
        at once rather than hanging.
        """
        if types is not None:
            unknown = set(types) - EVENT_TYPES
            if unknown:
                raise ValueError(f"unknown event types: {sorted(unknown)}")
        size = self.default_maxsize if maxsize is None else maxsize
        sub = Subscription(self, name, size, types, max_bytes)
        if self._closed:
            sub.end()
        else:
            self._subs[sub] = None
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.pop(sub, None)

    def close(self) -> None:
        """Stop accepting events and end every subscription (queued events still drain).

        With a seq file, records the exact last seq, so the next run continues without
        a gap."""
        if not self._closed and self._seq_file is not None:
            try:
                self._seq_file.write(self._seq)
            except OSError as e:
                log.warning("could not record the last event seq in %s: %s", self._seq_file.path, e)
        self._closed = True
        for sub in list(self._subs):
            sub.end()
        self._subs.clear()
