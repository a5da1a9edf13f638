"""The fake clock tests use to move time by hand, and the real one it stands in for."""

from __future__ import annotations

import asyncio

import pytest

from core.clock import Expired, FakeClock, SystemClock


async def test_sleepers_wake_in_deadline_order_and_only_when_time_comes() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def nap(name: str, s: float) -> None:
        await clock.sleep(s)
        woke.append(name)

    tasks = [asyncio.create_task(nap(n, s)) for n, s in (("c", 3), ("a", 1), ("b", 2))]
    await asyncio.sleep(0)
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(2.0)
    assert woke == ["a", "b"]
    await clock.advance(10)
    assert woke == ["a", "b", "c"]
    await asyncio.gather(*tasks)
    assert clock.time() - clock.monotonic() == pytest.approx(1_700_000_000 - 1_000)


async def test_wait_returns_on_the_event_or_after_the_timeout() -> None:
    clock = FakeClock()
    ev = asyncio.Event()
    early = asyncio.create_task(clock.wait(ev, 5))
    await asyncio.sleep(0)
    ev.set()
    assert await early is True
    ev.clear()
    late = asyncio.create_task(clock.wait(ev, 5))
    await asyncio.sleep(0)
    await clock.advance(5)
    assert await late is False


async def test_limit_expires_cancels_the_work_and_passes_results_through() -> None:
    clock = FakeClock()
    cancelled = asyncio.Event()

    async def hang() -> int:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    job = asyncio.create_task(clock.limit(hang(), 2))
    await clock.advance(2)
    with pytest.raises(Expired):
        await job
    assert cancelled.is_set()

    async def quick() -> int:
        return 7

    assert await clock.limit(quick(), 2) == 7

    async def own_timeout() -> int:
        raise TimeoutError("the work's own")

    with pytest.raises(TimeoutError) as info:
        await clock.limit(own_timeout(), 2)
    assert not isinstance(info.value, Expired)


async def test_cancelling_a_limited_wait_cancels_the_work() -> None:
    clock = FakeClock()
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = asyncio.create_task(clock.limit(hang(), 100))
    await asyncio.sleep(0)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert cancelled.is_set()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_system_clock_limit_names_its_own_expiry() -> None:
    clock = SystemClock()

    async def own_timeout() -> None:
        raise TimeoutError("inner")

    with pytest.raises(TimeoutError) as info:
        await clock.limit(own_timeout(), 5)
    assert not isinstance(info.value, Expired)
    ev = asyncio.Event()
    ev.set()
    assert await clock.wait(ev, 5) is True
