"""The health layer's pure logic on a fake clock: breakers, trackers, ejection, restarts
(the prober's loop is in test_prober.py)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from core.federation.health import (
    BreakerState,
    CircuitBreaker,
    EjectionPolicy,
    HealthSettings,
    HealthTracker,
    ProbeResult,
    RestartPolicy,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, s: float) -> None:
        self.now += s


def breaker(clock: FakeClock, **kw: object) -> tuple[CircuitBreaker, list[tuple[str, str, str]]]:
    hooks: list[tuple[str, str, str]] = []
    b = CircuitBreaker(
        clock=clock,
        on_transition=lambda old, new, why: hooks.append((old, new, why)),
        **kw,  # type: ignore[arg-type]
    )
    return b, hooks


def trip(b: CircuitBreaker, n: int = 5) -> None:
    for _ in range(n):
        b.record_failure()


# --- circuit breaker -------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    b, _ = breaker(clock)
    trip(b, 4)
    b.record_success()  # breaks the run
    trip(b, 4)
    assert b.state is CLOSED and b.allow()
    b.record_failure()
    assert b.state is OPEN
    assert b.opened_at == clock.now
    assert not b.allow()


def test_breaker_full_cycle_with_growing_open_time() -> None:
    clock = FakeClock()
    b, _ = breaker(clock)
    trip(b)
    assert b.open_duration_s == 30
    clock.advance(29.9)
    assert not b.allow() and b.state is OPEN

    # Each failed trial doubles the open time: 30 → 60 → 120 → 240 → 300 (cap) → 300.
    for expected in (60, 120, 240, 300, 300):
        clock.advance(b.open_duration_s)
        assert b.state is HALF_OPEN
        assert b.allow()
        assert b.record_failure() is not None
        assert b.state is OPEN
        assert b.open_duration_s == expected
        clock.advance(expected - 0.01)
        assert not b.allow()
        clock.advance(0.01)
    assert b.reopen_count == 5

    assert b.allow()  # the trial
    b.record_success()
    assert b.state is CLOSED and b.reopen_count == 0 and b.opened_at is None
    trip(b)
    assert b.open_duration_s == 30  # growth was reset by closing


def test_breaker_half_open_admits_exactly_one_trial() -> None:
    clock = FakeClock()
    b, _ = breaker(clock, failure_threshold=1, open_for_s=10)
    b.record_failure()
    clock.advance(10)
    assert b.trial_available
    assert b.allow() is True
    assert b.trial_available is False
    assert [b.allow() for _ in range(5)] == [False] * 5
    assert b.state is HALF_OPEN

    b.record_success()  # the trial resolves: traffic flows freely
    assert all(b.allow() for _ in range(5))

    b.record_failure()
    clock.advance(10)
    assert b.allow()
    assert not b.allow()
    b.record_failure()  # the trial fails: nothing allowed, not even another trial
    assert b.state is OPEN
    assert not b.allow() and not b.trial_available
    clock.advance(20)
    assert b.allow() and not b.allow()


def test_breaker_release_trial_when_no_verdict() -> None:
    clock = FakeClock()
    b, _ = breaker(clock, failure_threshold=1)
    b.record_failure()
    clock.advance(30)
    assert b.allow() and not b.allow()
    b.release_trial()  # the trial task was cancelled
    assert b.trial_available and b.allow()


def test_breaker_ignores_late_results_while_open() -> None:
    clock = FakeClock()
    b, hooks = breaker(clock)
    trip(b)
    n = len(hooks)
    clock.advance(20)
    assert b.record_failure() is None  # does not extend the ejection
    assert b.record_success() is None  # does not close it
    assert b.state is OPEN and len(hooks) == n
    clock.advance(10)
    assert b.state is HALF_OPEN


def test_breaker_transition_hook_and_log() -> None:
    clock = FakeClock()
    b, hooks = breaker(clock)
    trip(b)
    clock.advance(30)
    b.allow()
    b.record_failure()
    clock.advance(60)
    b.allow()
    b.record_success()
    assert hooks == [
        ("closed", "open", "5 consecutive failures; open for 30s"),
        ("open", "half_open", "open for 30s elapsed"),
        ("half_open", "open", "trial failed; open for 60s"),
        ("open", "half_open", "open for 60s elapsed"),
        ("half_open", "closed", "trial succeeded"),
    ]
    assert [(t.old, t.new, t.reason) for t in b.log] == hooks
    assert b.log[1].at == 1030.0


def test_breaker_reset_and_settings() -> None:
    clock = FakeClock()
    s = HealthSettings(failure_threshold=2, open_for_s=5, max_open_s=7)
    b = CircuitBreaker.from_settings(s, clock=clock)
    trip(b, 2)
    assert b.state is OPEN and b.open_duration_s == 5
    t = b.reset("operator")
    assert t is not None and t.reason == "operator" and b.state is CLOSED
    assert b.reset() is None


# --- tracker ---------------------------------------------------------------------------


def test_tracker_thresholds() -> None:
    clock = FakeClock()
    t = HealthTracker("a1", HealthSettings(), clock=clock)
    assert t.healthy
    assert t.record_probe(False, "x") is None
    assert t.record_probe(False, "x") is None
    assert t.record_probe(True, "ok") is None  # breaks the run
    assert t.record_probe(False, "x") is None
    assert t.record_probe(False, "x") is None
    clock.advance(3)
    change = t.record_probe(False, "no answer")
    assert change is not None and not change.healthy and change.detail == "no answer"
    assert change.agent_id == "a1" and t.since == clock.now
    assert t.record_probe(False, "still") is None  # no repeated transition

    assert t.record_probe(True, "ok") is None  # one success is not enough
    assert not t.healthy
    back = t.record_probe(True, "ok again")
    assert back is not None and back.healthy and t.healthy


def test_tracker_dead_is_immediate_and_initial_unhealthy_needs_one_pass() -> None:
    t = HealthTracker("a", clock=FakeClock())
    change = t.record_result(ProbeResult(ok=False, dead=True))
    assert change is not None and not change.healthy

    fresh = HealthTracker("b", clock=FakeClock(), initially_healthy=False)
    assert not fresh.healthy
    assert fresh.record_probe(True) is not None and fresh.healthy


def test_tracker_record_task_feeds_breaker() -> None:
    t = HealthTracker("a", HealthSettings(failure_threshold=3), clock=FakeClock())
    assert t.record_task(False) is None
    assert t.record_task(False) is None
    opened = t.record_task(False)
    assert opened is not None and opened.new is OPEN
    assert t.breaker.state is OPEN and t.healthy  # passive and active health are separate


# --- pool ------------------------------------------------------------------------------


def test_ejection_cap() -> None:
    p = EjectionPolicy(max_ejection_percent=10)
    assert p.may_eject(5, 0) and not p.may_eject(5, 1)  # 10 % of 5 still allows one
    assert p.may_eject(1, 0)
    assert p.may_eject(30, 2) and not p.may_eject(30, 3)
    assert p.max_ejected(30) == 3 and p.max_ejected(29) == 2 and p.max_ejected(0) == 0
    assert not p.may_eject(0, 0)
    assert EjectionPolicy(max_ejection_percent=0).max_ejected(10) == 1
    assert EjectionPolicy.from_settings(HealthSettings(max_ejection_percent=50)).max_ejected(4) == 2


def test_panic_threshold() -> None:
    p = EjectionPolicy(panic_threshold=0.5)
    assert p.in_panic(4, 10) and not p.in_panic(5, 10) and not p.in_panic(10, 10)
    assert p.in_panic(0, 1)
    assert not p.in_panic(0, 0)
    assert not EjectionPolicy(panic_threshold=0).in_panic(0, 10)  # 0 disables panic


# --- restarts --------------------------------------------------------------------------


def test_restart_backoff_grows_and_caps() -> None:
    clock = FakeClock()
    r = RestartPolicy(HealthSettings(restart_jitter=0, max_restarts=100), clock=clock)
    delays = []
    for _ in range(9):
        d = r.next_delay("a")
        assert d is not None
        delays.append(d)
        r.record_restart("a")
        clock.advance(1)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert r.next_delay("b") == 1  # per agent


def test_restart_jitter_bounded() -> None:
    clock = FakeClock()
    s = HealthSettings(restart_jitter=0.5, max_restarts=1000)
    r = RestartPolicy(s, clock=clock, rng=random.Random(7))
    for _ in range(3):
        r.record_restart("a")  # raw delay 8
    samples = [r.next_delay("a") for _ in range(500)]
    assert all(d is not None and 4 <= d <= 8 for d in samples)
    assert len(set(samples)) > 400  # actually random
    for _ in range(20):
        r.record_restart("a")
    assert all((d := r.next_delay("a")) is not None and 30 <= d <= 60 for _ in range(200))


def test_restart_gives_up_in_window_and_resets() -> None:
    clock = FakeClock()
    r = RestartPolicy(HealthSettings(restart_jitter=0), clock=clock)
    for _ in range(5):
        assert r.next_delay("a") is not None
        r.record_restart("a")
        clock.advance(10)
    assert r.next_delay("a") is None
    assert "restarted 5 times in 600s" in r.give_up_reason("a")

    # reset restarts the backoff but not the window's hard cap.
    r.reset("a")
    assert r.next_delay("a") is None
    clock.advance(600 - 50 + 0.1)  # the first restart leaves the window
    assert r.restarts_in_window("a") == 4
    assert r.next_delay("a") == 1

    r.record_restart("a")
    assert r.next_delay("a") is None
    r.forget("a")
    assert r.next_delay("a") == 1


def test_restart_reset_if_stable() -> None:
    clock = FakeClock()
    r = RestartPolicy(HealthSettings(restart_jitter=0, restart_reset_after_s=120), clock=clock)
    for _ in range(3):
        r.record_restart("a")
    healthy_since = clock.now
    clock.advance(119)
    assert not r.reset_if_stable("a", healthy_since) and r.next_delay("a") == 8
    clock.advance(1)
    assert r.reset_if_stable("a", healthy_since) and r.next_delay("a") == 1


# --- settings --------------------------------------------------------------------------


def test_settings_defaults_and_validation() -> None:
    s = HealthSettings()
    assert (s.interval_s, s.timeout_s, s.unhealthy_threshold, s.healthy_threshold) == (
        10,
        5,
        3,
        2,
    )
    assert (s.failure_threshold, s.open_for_s, s.max_open_s) == (5, 30, 300)
    assert (s.max_ejection_percent, s.panic_threshold, s.max_concurrent_probes) == (10, 0.5, 32)
    with pytest.raises(ValidationError, match="interval"):
        HealthSettings.model_validate({"intervall_s": 3})
    with pytest.raises(ValidationError, match="max_open_s"):
        HealthSettings(open_for_s=60, max_open_s=30)
    with pytest.raises(ValidationError):
        HealthSettings(jitter=1.5)
    with pytest.raises(ValidationError):
        HealthSettings.model_validate({"unhealthy_threshold": "3"})
