"""The ``Prober``: one asyncio task that probes every registered agent on a jittered schedule."""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.clock import Clock, Expired, SystemClock
from core.config import HealthSettings
from core.federation.health.tracker import HealthTracker, HealthTransition, ProbeResult

__all__ = ["OnChange", "ProbeFn", "Prober"]

log = logging.getLogger(__name__)


ProbeFn = Callable[[str], Awaitable[ProbeResult]]
OnChange = Callable[[str, bool, str], Awaitable[None] | None]


@dataclass
class _Entry:
    tracker: HealthTracker
    gen: int  # distinguishes a re-added agent from its stale heap items and probes


class Prober:
    """Probes every registered agent every ``interval_s`` (± jitter) and reports changes.

    One scheduler task keeps a heap of due times, so 1,000 agents cost one sleeping
    task rather than 1,000; first probes are spread uniformly over one interval so
    they do not burst. A probe runs in its own task under a semaphore, and the next
    one for that agent is scheduled only when it has finished, so probes of one
    agent never overlap.
    """

    def __init__(
        self,
        probe: ProbeFn,
        on_change: OnChange,
        settings: HealthSettings | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or HealthSettings()
        self._probe = probe
        self._on_change = on_change
        # Schedules, probe timeouts and the trackers' timestamps all read this clock, so a
        # test moves them with a FakeClock.
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._agents: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str, int]] = []  # (due, seq, agent_id, gen)
        self._seq = 0
        self._gen = 0
        self._sem = asyncio.Semaphore(self.settings.max_concurrent_probes)
        self._wakeup = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    # -- registration --

    def add(self, agent_id: str, tracker: HealthTracker | None = None) -> HealthTracker:
        """Start probing ``agent_id`` (replacing any earlier registration)."""
        if tracker is None:
            tracker = HealthTracker(agent_id, self.settings, clock=self._clock.monotonic)
        self._gen += 1
        self._agents[agent_id] = _Entry(tracker, self._gen)
        if self._scheduler is not None:
            self._schedule(agent_id, self._gen, self._rng.uniform(0, self.settings.interval_s))
        return tracker

    def remove(self, agent_id: str) -> None:
        """Stop probing; an in-flight probe's result is dropped."""
        self._agents.pop(agent_id, None)

    def tracker(self, agent_id: str) -> HealthTracker | None:
        entry = self._agents.get(agent_id)
        return entry.tracker if entry else None

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    def __len__(self) -> int:
        return len(self._agents)

    # -- lifecycle --

    @property
    def running(self) -> bool:
        return self._scheduler is not None and not self._scheduler.done()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def start(self) -> None:
        """Begin probing; call from inside the running loop."""
        if self._scheduler is not None:
            return
        self._heap.clear()
        for agent_id, entry in self._agents.items():
            self._schedule(agent_id, entry.gen, self._rng.uniform(0, self.settings.interval_s))
        self._scheduler = asyncio.create_task(self._run(), name="godel-health-prober")

    async def stop(self) -> None:
        """Cancel the scheduler and every in-flight probe, and wait for them to end."""
        tasks: list[asyncio.Task[None]] = list(self._inflight)
        if self._scheduler is not None:
            tasks.append(self._scheduler)
            self._scheduler = None
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._heap.clear()

    async def probe_now(self, agent_id: str) -> HealthTransition | None:
        """Probe once outside the schedule (after spawn, or on demand).

        Not bounded by the semaphore, because the caller is waiting on it; it may run
        alongside a scheduled probe of the same agent, and both count.
        """
        entry = self._agents.get(agent_id)
        if entry is None:
            return None
        return await self._check(agent_id, entry)

    # -- internals --

    def _schedule(self, agent_id: str, gen: int, delay: float) -> None:
        due = self._clock.monotonic() + delay
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, agent_id, gen))
        self._wakeup.set()

    def _next_interval(self) -> float:
        s = self.settings
        return s.interval_s * (1.0 + self._rng.uniform(-s.jitter, s.jitter))

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            if not self._heap:
                await self._wakeup.wait()
                continue
            due, _, agent_id, gen = self._heap[0]
            wait = due - self._clock.monotonic()
            if wait > 0:
                # Woken early by an add or a reschedule: look at the heap again.
                await self._clock.wait(self._wakeup, wait)
                continue
            heapq.heappop(self._heap)
            entry = self._agents.get(agent_id)
            if entry is None or entry.gen != gen:
                continue  # removed or re-added since: a stale heap item
            # Waiting here (not in the probe task) keeps at most N probe tasks alive.
            await self._sem.acquire()
            task = asyncio.create_task(self._probe_task(agent_id, gen), name=f"probe-{agent_id}")
            self._inflight.add(task)
            task.add_done_callback(self._probe_done)

    def _probe_done(self, task: asyncio.Task[None]) -> None:
        # A done callback (not ``finally``) so the permit comes back even if the task
        # was cancelled before it ever ran.
        self._inflight.discard(task)
        self._sem.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("health probe task failed", exc_info=exc)

    async def _probe_task(self, agent_id: str, gen: int) -> None:
        entry = self._agents.get(agent_id)
        if entry is None or entry.gen != gen:
            return
        try:
            await self._check(agent_id, entry)
        finally:
            current = self._agents.get(agent_id)
            if current is not None and current.gen == gen and self._scheduler is not None:
                self._schedule(agent_id, gen, self._next_interval())

    async def _check(self, agent_id: str, entry: _Entry) -> HealthTransition | None:
        result = await self._run_probe(agent_id)
        if self._agents.get(agent_id) is not entry:
            return None  # removed or re-added while the probe ran
        change = entry.tracker.record_result(result)
        if change is not None:
            try:
                ret = self._on_change(agent_id, change.healthy, change.detail)
                if inspect.isawaitable(ret):
                    await ret
            except Exception:
                # The engine's handler failing must not stop health checking.
                log.exception("health on_change handler failed for %s", agent_id)
        return change

    async def _run_probe(self, agent_id: str) -> ProbeResult:
        timeout_s = self.settings.timeout_s
        try:
            out = await self._clock.limit(self._probe(agent_id), timeout_s)
        except Expired:
            return ProbeResult(False, f"probe timed out after {timeout_s:g}s")
        except Exception as exc:
            return ProbeResult(False, f"probe raised {type(exc).__name__}: {exc}")
        return out
