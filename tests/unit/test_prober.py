"""The health ``Prober``: its loop on a fake clock (schedules, timeouts, bounded
concurrency, a clean stop), without a real second of waiting."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from core.clock import FakeClock as LoopClock
from core.federation.health import HealthSettings, Prober, ProbeResult

# --- prober (its loop on a fake clock) -----------------------------------------------------

FAST = HealthSettings(interval_s=0.03, timeout_s=0.05, jitter=0.1)


class Changes:
    """Collects on_change calls."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, str]] = []

    async def __call__(self, agent_id: str, healthy: bool, detail: str) -> None:
        self.seen.append((agent_id, healthy, detail))

    def found(self, agent_id: str, healthy: bool) -> str | None:
        return next((d for a, h, d in self.seen if a == agent_id and h == healthy), None)


async def run_until(
    clock: LoopClock, done: Callable[[], object], *, step: float = 0.005, limit: float = 5.0
) -> None:
    """Move the fake clock in small steps until ``done()`` holds (fails past ``limit``
    seconds of fake time: the evidence never came)."""
    moved = 0.0
    while not done():
        assert moved < limit, f"not after {limit}s of fake time"
        await clock.advance(step)
        moved += step


def make_prober(
    probe: Callable[[str], Awaitable[ProbeResult]],
    changes: Changes,
    clock: LoopClock,
    settings: HealthSettings = FAST,
) -> Prober:
    return Prober(probe, changes, settings, clock=clock, rng=random.Random(3))


async def test_prober_unhealthy_then_recovers() -> None:
    clock = LoopClock()
    broken = {"b"}
    calls: dict[str, int] = {}

    async def probe(agent_id: str) -> ProbeResult:
        calls[agent_id] = calls.get(agent_id, 0) + 1
        return ProbeResult(agent_id not in broken, "refused" if agent_id in broken else "")

    changes = Changes()
    p = make_prober(probe, changes, clock)
    p.add("a")
    tb = p.add("b")
    p.start()
    try:
        await run_until(clock, lambda: changes.found("b", False))
        assert changes.found("b", False) == "refused"
        assert tb.consecutive_failures >= 3 and not tb.healthy
        broken.clear()
        await run_until(clock, lambda: changes.found("b", True) is not None)
        assert tb.healthy
    finally:
        await p.stop()
    assert [c[:2] for c in changes.seen] == [("b", False), ("b", True)]
    assert calls["a"] >= 2  # the healthy agent kept being probed, silently


async def test_prober_times_out_hanging_probe_and_reports_errors() -> None:
    clock = LoopClock()

    async def probe(agent_id: str) -> ProbeResult:
        if agent_id == "hang":
            await asyncio.Event().wait()  # never answers
        raise RuntimeError("connection reset")

    changes = Changes()
    p = make_prober(probe, changes, clock, FAST.model_copy(update={"unhealthy_threshold": 1}))
    p.add("hang")
    p.add("err")
    p.start()
    try:
        await run_until(clock, lambda: changes.found("hang", False) and changes.found("err", False))
        assert changes.found("hang", False) == "probe timed out after 0.05s"
        assert "connection reset" in (changes.found("err", False) or "")
    finally:
        await p.stop()


async def test_prober_dead_is_immediate() -> None:
    clock = LoopClock()

    async def probe(agent_id: str) -> ProbeResult:
        return ProbeResult(ok=False, detail="exit 137", dead=True)

    changes = Changes()
    p = make_prober(probe, changes, clock, FAST.model_copy(update={"unhealthy_threshold": 50}))
    p.add("a")
    p.start()
    try:
        await run_until(clock, lambda: changes.found("a", False))
        assert changes.found("a", False) == "exit 137"
        assert len(changes.seen) == 1  # one probe, not 50
    finally:
        await p.stop()


async def test_prober_concurrency_bounded_and_stop_is_clean() -> None:
    clock = LoopClock()
    active = 0
    peak = 0
    total = 0
    cancelled = 0

    async def probe(agent_id: str) -> ProbeResult:
        nonlocal active, peak, total, cancelled
        active += 1
        total += 1
        peak = max(peak, active)
        try:
            await clock.sleep(0.04)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        finally:
            active -= 1
        return ProbeResult(True)

    s = FAST.model_copy(update={"max_concurrent_probes": 3, "interval_s": 0.01})
    p = make_prober(probe, Changes(), clock, s)
    for i in range(20):
        p.add(f"a{i}")
    p.start()
    await run_until(clock, lambda: total > 10)
    assert peak == 3
    assert p.in_flight <= 3
    await p.stop()
    assert not p.running and p.in_flight == 0 and active == 0
    assert cancelled >= 1  # in-flight probes were cancelled, not left behind
    assert asyncio.all_tasks() == {asyncio.current_task()}
    n = total
    await clock.advance(1.0)
    assert total == n  # nothing probes after stop


async def test_prober_staggers_first_probes() -> None:
    clock = LoopClock()
    first: dict[str, float] = {}

    async def probe(agent_id: str) -> ProbeResult:
        first.setdefault(agent_id, clock.monotonic())
        return ProbeResult(True)

    s = HealthSettings(interval_s=0.2, timeout_s=0.1, max_concurrent_probes=1000)
    p = make_prober(probe, Changes(), clock, s)
    for i in range(200):
        p.add(f"a{i}")
    start = clock.monotonic()
    p.start()
    await run_until(clock, lambda: len(first) == 200, step=0.002)
    await p.stop()
    offsets = sorted(t - start for t in first.values())
    # Spread uniformly over one interval, not one burst.
    buckets = {min(int(o / 0.04), 4) for o in offsets}
    assert buckets == {0, 1, 2, 3, 4}
    assert sum(o < 0.04 for o in offsets) < 100
    assert offsets[-1] - offsets[0] > 0.1 and offsets[-1] <= 0.2 + 0.002


async def test_prober_remove_and_handler_errors() -> None:
    clock = LoopClock()
    probed: list[str] = []

    async def probe(agent_id: str) -> ProbeResult:
        probed.append(agent_id)
        return ProbeResult(False, "down")

    calls: list[str] = []

    def on_change(agent_id: str, healthy: bool, detail: str) -> None:  # sync handler
        calls.append(agent_id)
        raise ValueError("handler bug")

    p = Prober(probe, on_change, FAST.model_copy(update={"unhealthy_threshold": 1}), clock=clock)
    p.add("keep")
    p.add("gone")
    p.remove("gone")
    assert "gone" not in p and len(p) == 1
    p.start()
    await run_until(clock, lambda: probed.count("keep") >= 2)
    assert p.running  # the failing handler did not kill the loop
    await p.stop()
    assert calls == ["keep"]
    assert "gone" not in probed
    assert p.tracker("keep") is not None and p.tracker("gone") is None


async def test_prober_probe_now() -> None:
    async def probe(agent_id: str) -> ProbeResult:
        return ProbeResult(False, "nope")

    changes = Changes()
    p = Prober(probe, changes, FAST.model_copy(update={"unhealthy_threshold": 2}))
    p.add("a")
    assert await p.probe_now("a") is None
    change = await p.probe_now("a")
    assert change is not None and not change.healthy
    assert changes.seen == [("a", False, "nope")]
    assert await p.probe_now("missing") is None
