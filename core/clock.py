"""Time as the engine sees it: a real clock, or a fake one that tests move by hand.

Everything in the engine and federation that waits or compares times (leases, backoff,
breakers, restart delays, the autoscaler's window, loop intervals) takes a ``Clock``,
so a test can advance an hour in a microsecond and never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Expired(TimeoutError):
    """``Clock.limit``'s time ran out (not a TimeoutError raised by the awaited work)."""


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds for measuring intervals."""
        ...

    def time(self) -> float:
        """Unix seconds, for times stored in the database (lease expiry, backoff)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
        ...

    async def limit(self, aw: Awaitable[T], seconds: float) -> T:
        """Await ``aw`` for at most ``seconds``; cancel it and raise ``Expired`` after."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        return event.is_set()

    async def limit(self, aw: Awaitable[T], seconds: float) -> T:
        try:
            async with asyncio.timeout(seconds) as cm:
                return await aw
        except TimeoutError:
            if cm.expired():
                raise Expired(f"timed out after {seconds:g}s") from None
            raise


class FakeClock:
    """A clock that only moves when ``advance`` is called. Sleepers wake in order of
    their deadlines; wall time (``time``) moves with monotonic time."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def _timer(self, seconds: float) -> asyncio.Future[None]:
        """A future done when the clock reaches now + ``seconds``; registered at once,
        so an ``advance`` right after the call already counts it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._order), fut))
        return fut

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._timer(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        timer = self._timer(timeout)
        waiter = asyncio.ensure_future(event.wait())
        either: set[asyncio.Future[Any]] = {waiter, timer}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        return event.is_set()

    async def limit(self, aw: Awaitable[T], seconds: float) -> T:
        timer = self._timer(seconds)
        work = asyncio.ensure_future(aw)
        either: set[asyncio.Future[Any]] = {work, timer}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled: the work goes with us
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            raise
        finally:
            timer.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        raise Expired(f"timed out after {seconds:g}s")

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline has come, and let
        the woken tasks run until they block again."""
        await _settle()  # tasks just started get to register their sleeps first
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, due)
            if not fut.done():
                fut.set_result(None)
                await _settle()
        self._now = target
        await _settle()


async def _settle(rounds: int = 5) -> None:
    # A few loop turns: a woken task runs to its next await, and what it wakes runs too.
    for _ in range(rounds):
        await asyncio.sleep(0)
