"""Passive health: the per-agent ``CircuitBreaker`` fed by task results, and its states."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from core.config import HealthSettings
from core.federation.health.clock import Monotonic

__all__ = ["BreakerState", "BreakerTransition", "CircuitBreaker", "OnTransition"]


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
        clock: Monotonic = time.monotonic,
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
        clock: Monotonic = time.monotonic,
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
