"""Agent health: circuit breakers, active probes, ejection caps and restart backoff.

Modelled on Envoy (see ``shared/reference/engine-anchors.md`` §2): passive failure
counting opens a per-agent circuit breaker with a growing open time; active probes
move an agent between healthy and unhealthy with separate thresholds; the pool caps
how many agents may be ejected and ignores health altogether in panic. Everything
except ``Prober`` is plain synchronous logic over an injectable monotonic clock, so
the engine (one asyncio loop) owns all state and tests need no sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from core.runtimes.base import HealthReport, HealthState

__all__ = [
    "BreakerState",
    "BreakerTransition",
    "CircuitBreaker",
    "Clock",
    "EjectionPolicy",
    "HealthSettings",
    "HealthTracker",
    "HealthTransition",
    "OnChange",
    "ProbeFn",
    "ProbeResult",
    "Prober",
    "RestartPolicy",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Monotonic seconds; ``time.monotonic`` in production, a fake in tests."""

_Count = Annotated[StrictInt, Field(ge=1)]
_Seconds = Annotated[float, Field(gt=0)]
_Fraction = Annotated[float, Field(ge=0, lt=1)]


class HealthSettings(BaseModel):
    """``[health]``: every knob of the health layer, with Envoy-like defaults."""

    # A typo'd key must be an error that names it, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")

    # Active probes.
    interval_s: _Seconds = 10.0
    timeout_s: _Seconds = 5.0
    unhealthy_threshold: _Count = 3
    healthy_threshold: _Count = 2
    jitter: _Fraction = 0.1  # each interval is scaled by 1 ± jitter
    max_concurrent_probes: _Count = 32

    # Passive: circuit breaker fed by task results.
    failure_threshold: _Count = 5
    open_for_s: _Seconds = 30.0
    max_open_s: _Seconds = 300.0

    # Pool level.
    max_ejection_percent: Annotated[float, Field(ge=0, le=100)] = 10.0
    panic_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5  # 0 disables panic

    # Restarting dead agents.
    restart_base_s: _Seconds = 1.0
    restart_factor: Annotated[float, Field(ge=1)] = 2.0
    restart_max_s: _Seconds = 60.0
    restart_jitter: _Fraction = 0.2  # a delay is scaled by a random factor in (1 - jitter, 1]
    max_restarts: _Count = 5
    restart_window_s: _Seconds = 600.0
    restart_reset_after_s: _Seconds = 120.0  # healthy this long → backoff starts over

    @model_validator(mode="after")
    def _caps_not_below_bases(self) -> Self:
        if self.max_open_s < self.open_for_s:
            raise ValueError(
                f"max_open_s ({self.max_open_s}) must be at least open_for_s ({self.open_for_s})"
            )
        if self.restart_max_s < self.restart_base_s:
            raise ValueError(
                f"restart_max_s ({self.restart_max_s}) must be at least "
                f"restart_base_s ({self.restart_base_s})"
            )
        return self


# --- circuit breaker (passive health) --------------------------------------------------


class BreakerState(StrEnum):
    CLOSED = "closed"  # traffic flows
    OPEN = "open"  # ejected: no traffic until the open time has passed
    HALF_OPEN = "half_open"  # one trial request decides


@dataclass(frozen=True)
class BreakerTransition:
    old: BreakerState
    new: BreakerState
    reason: str
    at: float  # clock seconds


OnTransition = Callable[[BreakerState, BreakerState, str], None]

_LOG_SIZE = 32  # transitions kept per breaker; the audit log keeps the full history


class CircuitBreaker:
    """Closed → open after N consecutive failures; half-open admits exactly one trial.

    Each re-open straight from half-open doubles the open time up to ``max_open_s``
    (Envoy grows its ejection time the same way, linearly); closing resets it.
    The open → half-open change happens lazily, the first time the breaker is
    looked at after the open time has passed, so no timer is needed.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        open_for_s: float = 30.0,
        max_open_s: float = 300.0,
        clock: Clock = time.monotonic,
        on_transition: OnTransition | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if open_for_s <= 0:
            raise ValueError("open_for_s must be positive")
        self.failure_threshold = failure_threshold
        self.open_for_s = open_for_s
        self.max_open_s = max(max_open_s, open_for_s)  # Envoy: the cap is at least the base
        self.on_transition = on_transition
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._reopen_count = 0
        self._trial_out = False
        self.log: deque[BreakerTransition] = deque(maxlen=_LOG_SIZE)

    @classmethod
    def from_settings(
        cls,
        settings: HealthSettings,
        *,
        clock: Clock = time.monotonic,
        on_transition: OnTransition | None = None,
    ) -> CircuitBreaker:
        return cls(
            failure_threshold=settings.failure_threshold,
            open_for_s=settings.open_for_s,
            max_open_s=settings.max_open_s,
            clock=clock,
            on_transition=on_transition,
        )

    # -- views (each may perform the lazy open → half-open change) --

    @property
    def state(self) -> BreakerState:
        self._refresh()
        return self._state

    @property
    def opened_at(self) -> float | None:
        """Clock time of the latest opening; None while closed."""
        return self._opened_at

    @property
    def reopen_count(self) -> int:
        """Re-opens since the breaker was last closed; sets the open time's growth."""
        return self._reopen_count

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def open_duration_s(self) -> float:
        """How long the current (or next) opening lasts."""
        return min(self.max_open_s, self.open_for_s * 2.0**self._reopen_count)

    @property
    def retry_at(self) -> float | None:
        """Clock time the breaker turns half-open; None unless open."""
        if self._state is not BreakerState.OPEN or self._opened_at is None:
            return None
        return self._opened_at + self.open_duration_s

    @property
    def trial_available(self) -> bool:
        """True when half-open and the single trial has not been handed out yet."""
        self._refresh()
        return self._state is BreakerState.HALF_OPEN and not self._trial_out

    # -- commands --

    def allow(self) -> bool:
        """May a task be sent now? In half-open, True exactly once until a result comes."""
        self._refresh()
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def record_success(self) -> BreakerTransition | None:
        self._refresh()
        self._failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._reopen_count = 0
            self._opened_at = None
            return self._move(BreakerState.CLOSED, "trial succeeded")
        # A late success while open (a task sent before opening) proves little: ignore.
        return None

    def record_failure(self) -> BreakerTransition | None:
        self._refresh()
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                return self._open(f"{self._failures} consecutive failures")
            return None
        if self._state is BreakerState.HALF_OPEN:
            self._failures += 1
            self._reopen_count += 1
            return self._open("trial failed")
        # Already open: a late failure must not extend the ejection.
        return None

    def release_trial(self) -> None:
        """Give the half-open trial back when its task ended without a verdict (cancelled)."""
        self._trial_out = False

    def reset(self, reason: str = "reset") -> BreakerTransition | None:
        """Close now and forget all history (an operator's command, or a passing probe)."""
        self._refresh()
        self._failures = 0
        self._reopen_count = 0
        self._opened_at = None
        if self._state is BreakerState.CLOSED:
            return None
        return self._move(BreakerState.CLOSED, reason)

    # -- internals --

    def _open(self, reason: str) -> BreakerTransition:
        self._opened_at = self._clock()
        return self._move(BreakerState.OPEN, f"{reason}; open for {self.open_duration_s:g}s")

    def _refresh(self) -> None:
        retry_at = self.retry_at
        if retry_at is not None and self._clock() >= retry_at:
            self._move(BreakerState.HALF_OPEN, f"open for {self.open_duration_s:g}s elapsed")

    def _move(self, new: BreakerState, reason: str) -> BreakerTransition:
        old = self._state
        self._state = new
        self._trial_out = False
        t = BreakerTransition(old=old, new=new, reason=reason, at=self._clock())
        self.log.append(t)
        if self.on_transition is not None:
            self.on_transition(old, new, reason)
        return t


# --- active probes ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str = ""
    dead: bool = False  # the process is gone: unhealthy at once, thresholds ignored

    @classmethod
    def from_report(cls, report: HealthReport) -> ProbeResult:
        return cls(
            ok=report.state is HealthState.HEALTHY,
            detail=report.detail,
            dead=report.state is HealthState.DEAD,
        )


@dataclass(frozen=True)
class HealthTransition:
    agent_id: str
    healthy: bool
    detail: str
    at: float  # clock seconds


class HealthTracker:
    """One agent's probe history: ``unhealthy_threshold`` failures in a row make it
    unhealthy, ``healthy_threshold`` successes in a row make it healthy again.

    It also holds the agent's ``CircuitBreaker`` so task results (passive health) and
    probes (active health) live in one place for the router.
    """

    def __init__(
        self,
        agent_id: str,
        settings: HealthSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        breaker: CircuitBreaker | None = None,
        initially_healthy: bool = True,
    ) -> None:
        self.agent_id = agent_id
        self.settings = settings or HealthSettings()
        self._clock = clock
        self.breaker = breaker or CircuitBreaker.from_settings(self.settings, clock=clock)
        self._healthy = initially_healthy
        self._since = clock()
        self._probed = False
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.last_detail = ""
        self.last_probe_at: float | None = None

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def since(self) -> float:
        """Clock time of the latest healthy/unhealthy change (or creation)."""
        return self._since

    def record_probe(
        self, ok: bool, detail: str = "", *, immediate: bool = False
    ) -> HealthTransition | None:
        """Count one probe; return the transition if the agent's health changed.

        ``immediate`` (a dead process) makes a failure count at once, like Envoy's
        unexpected HTTP status. An agent created unhealthy needs one pass only, as
        Envoy does at startup.
        """
        first = not self._probed
        self._probed = True
        self.last_detail = detail
        self.last_probe_at = self._clock()
        if ok:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if not self._healthy and (
                first or self.consecutive_successes >= self.settings.healthy_threshold
            ):
                return self._set(True, detail)
            return None
        self.consecutive_failures += 1
        self.consecutive_successes = 0
        if self._healthy and (
            immediate or self.consecutive_failures >= self.settings.unhealthy_threshold
        ):
            return self._set(False, detail)
        return None

    def record_result(self, result: ProbeResult) -> HealthTransition | None:
        return self.record_probe(result.ok, result.detail, immediate=result.dead)

    def record_task(self, ok: bool) -> BreakerTransition | None:
        """Passive health: feed one task outcome to the breaker."""
        return self.breaker.record_success() if ok else self.breaker.record_failure()

    def _set(self, healthy: bool, detail: str) -> HealthTransition:
        self._healthy = healthy
        self._since = self._clock()
        return HealthTransition(self.agent_id, healthy, detail, self._since)


# --- pool level ------------------------------------------------------------------------


@dataclass(frozen=True)
class EjectionPolicy:
    """Caps how much of a pool may be ejected, and when to ignore health entirely."""

    max_ejection_percent: float = 10.0
    panic_threshold: float = 0.5  # fraction of healthy hosts; 0 disables panic

    @classmethod
    def from_settings(cls, settings: HealthSettings) -> EjectionPolicy:
        return cls(settings.max_ejection_percent, settings.panic_threshold)

    def max_ejected(self, pool_size: int) -> int:
        """Most hosts that may be ejected at once; at least one, as Envoy allows."""
        if pool_size <= 0:
            return 0
        # The small epsilon keeps 10 % of 30 at 3 despite float rounding.
        return max(1, math.floor(pool_size * self.max_ejection_percent / 100 + 1e-9))

    def may_eject(self, pool_size: int, currently_ejected: int) -> bool:
        return currently_ejected < self.max_ejected(pool_size)

    def in_panic(self, healthy: int, total: int) -> bool:
        """Fewer than ``panic_threshold`` healthy: route to all hosts to spare the survivors."""
        if total <= 0:
            return False
        return healthy / total < self.panic_threshold


# --- restarts --------------------------------------------------------------------------


@dataclass
class _RestartHistory:
    attempts: int = 0  # since the last reset: sets the backoff exponent
    times: deque[float] = field(default_factory=deque)  # within the window: the hard cap


class RestartPolicy:
    """Exponential backoff with jitter for restarting dead agents, with a hard cap.

    ``reset`` restarts the backoff but keeps the window's history, so an agent that
    crashes shortly after each reset still hits ``max_restarts`` and stays failed.
    """

    def __init__(
        self,
        settings: HealthSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or HealthSettings()
        self._clock = clock
        self._rng = rng or random.Random()
        self._agents: dict[str, _RestartHistory] = {}

    def _history(self, agent_id: str) -> _RestartHistory:
        h = self._agents.setdefault(agent_id, _RestartHistory())
        horizon = self._clock() - self.settings.restart_window_s
        while h.times and h.times[0] <= horizon:
            h.times.popleft()
        return h

    def restarts_in_window(self, agent_id: str) -> int:
        return len(self._history(agent_id).times)

    def next_delay(self, agent_id: str) -> float | None:
        """Seconds to wait before the next restart, or None to give up (status failed)."""
        s = self.settings
        h = self._history(agent_id)
        if len(h.times) >= s.max_restarts:
            return None
        raw = min(s.restart_max_s, s.restart_base_s * s.restart_factor**h.attempts)
        # Jitter only shortens, so the cap holds and synchronized crashes spread out.
        return raw * (1.0 - s.restart_jitter * self._rng.random())

    def give_up_reason(self, agent_id: str) -> str:
        s = self.settings
        return (
            f"restarted {self.restarts_in_window(agent_id)} times in "
            f"{s.restart_window_s:g}s (limit {s.max_restarts}); not restarting again"
        )

    def record_restart(self, agent_id: str) -> None:
        h = self._history(agent_id)
        h.attempts += 1
        h.times.append(self._clock())

    def reset(self, agent_id: str) -> None:
        """The agent stayed healthy: the next crash starts from the base delay again."""
        h = self._agents.get(agent_id)
        if h is not None:
            h.attempts = 0

    def reset_if_stable(self, agent_id: str, healthy_since: float) -> bool:
        """``reset`` if healthy since ``healthy_since`` for ``restart_reset_after_s``."""
        if self._clock() - healthy_since >= self.settings.restart_reset_after_s:
            self.reset(agent_id)
            return True
        return False

    def forget(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)


# --- the prober loop -------------------------------------------------------------------

ProbeFn = Callable[[str], Awaitable[ProbeResult | HealthReport]]
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
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or HealthSettings()
        self._probe = probe
        self._on_change = on_change
        self._clock = clock  # for the trackers' timestamps; scheduling uses the loop's clock
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
            tracker = HealthTracker(agent_id, self.settings, clock=self._clock)
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
        due = asyncio.get_running_loop().time() + delay
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, agent_id, gen))
        self._wakeup.set()

    def _next_interval(self) -> float:
        s = self.settings
        return s.interval_s * (1.0 + self._rng.uniform(-s.jitter, s.jitter))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            if not self._heap:
                await self._wakeup.wait()
                continue
            due, _, agent_id, gen = self._heap[0]
            wait = due - loop.time()
            if wait > 0:
                # Woken early by an add or a reschedule: look at the heap again.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wakeup.wait()
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
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                out = await self._probe(agent_id)
        except TimeoutError as exc:
            if deadline.expired():
                return ProbeResult(False, f"probe timed out after {timeout_s:g}s")
            return ProbeResult(False, f"probe raised {type(exc).__name__}: {exc}")
        except Exception as exc:
            return ProbeResult(False, f"probe raised {type(exc).__name__}: {exc}")
        if isinstance(out, HealthReport):
            return ProbeResult.from_report(out)
        return out
