"""Engine metrics (core.federation.metrics): exposition, per-agent stats, anomaly alerts."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.federation.metrics import (
    CONTENT_TYPE,
    ROUTE_BUCKETS,
    Anomaly,
    AnomalyDetector,
    Metrics,
    parse_exposition,
)


def scrape(m: Metrics) -> dict[str, float]:
    return parse_exposition(m.exposition())


# --------------------------------------------------------------------------- metrics


def test_every_metric_appears_with_its_labels_and_value() -> None:
    m = Metrics()
    m.observe_route("least_loaded", 2e-5, chosen=True)
    m.observe_route("least_loaded", 3e-5, chosen=False)
    m.observe_route("least_loaded", 4e-5, chosen=True)
    m.set_queue_depth("s1", "high", 7)
    m.set_queue_depth("s1", "high", 5)  # a gauge keeps the last value
    m.set_queue_depth(None, "low", 2)
    m.inc_task("s1", "shell", "succeeded")
    m.inc_task("s1", "shell", "succeeded")
    m.inc_task("s1", "pi", "retried")
    m.observe_task("s1", "shell", 1.5)
    m.set_agents("s1", "idle", 3)
    m.observe_agent_task("shell-aaaaaa", "shell", True, 1.0)
    m.observe_agent_task("shell-aaaaaa", "shell", False, 2.0)
    m.inc_cost("s1", "pi", Decimal("0.25"))
    m.inc_cost("s1", "pi", Decimal("0.50"))
    m.inc_tokens("s1", "pi", input_tokens=100, output_tokens=40)
    m.inc_tokens("s1", "pi", input_tokens=1)

    v = scrape(m)
    assert v['godel_route_decisions_total{outcome="routed",strategy="least_loaded"}'] == 2
    assert v['godel_route_decisions_total{outcome="unroutable",strategy="least_loaded"}'] == 1
    assert v['godel_route_decision_seconds_count{strategy="least_loaded"}'] == 3
    assert v['godel_route_decision_seconds_sum{strategy="least_loaded"}'] == pytest.approx(9e-5)
    assert v['godel_queue_depth{priority="high",swarm="s1"}'] == 5
    assert v['godel_queue_depth{priority="low",swarm=""}'] == 2  # no swarm: empty label
    assert v['godel_tasks_total{runtime="shell",status="succeeded",swarm="s1"}'] == 2
    assert v['godel_tasks_total{runtime="pi",status="retried",swarm="s1"}'] == 1
    assert v['godel_task_duration_seconds_count{runtime="shell",swarm="s1"}'] == 1
    assert v['godel_task_duration_seconds_sum{runtime="shell",swarm="s1"}'] == 1.5
    assert v['godel_agents{status="idle",swarm="s1"}'] == 3
    assert v['godel_agent_tasks_total{agent="shell-aaaaaa",outcome="succeeded"}'] == 1
    assert v['godel_agent_tasks_total{agent="shell-aaaaaa",outcome="failed"}'] == 1
    assert v['godel_cost_usd_total{runtime="pi",swarm="s1"}'] == pytest.approx(0.75)
    assert v['godel_tokens_total{kind="input",runtime="pi",swarm="s1"}'] == 101
    assert v['godel_tokens_total{kind="output",runtime="pi",swarm="s1"}'] == 40

    # The metric families and their types, as a scraper sees them.
    types = {
        f.name: f.type
        for f in text_string_to_metric_families(m.exposition().decode())
        if not f.name.endswith("_created")
    }
    assert types == {
        "godel_route_decision_seconds": "histogram",
        "godel_route_decisions": "counter",
        "godel_queue_depth": "gauge",
        "godel_tasks": "counter",
        "godel_task_duration_seconds": "histogram",
        "godel_agents": "gauge",
        "godel_agent_tasks": "counter",
        "godel_cost_usd": "counter",
        "godel_tokens": "counter",
    }


def test_exposition_is_text_format_0_0_4() -> None:
    m = Metrics()
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert Metrics.CONTENT_TYPE == CONTENT_TYPE
    out = m.exposition()
    assert isinstance(out, bytes)
    # Nothing observed yet: labelled metrics export only HELP/TYPE lines.
    assert b"# TYPE godel_tasks_total counter" in out
    assert parse_exposition(out) == {}


def test_route_histogram_buckets_are_cumulative() -> None:
    m = Metrics()
    for s in (3e-6, 5e-6, 7e-6, 2e-4, 0.02):  # 5e-6 sits on a bound: le is inclusive
        m.observe_route("rr", s, chosen=True)
    v = scrape(m)

    def bucket(le: str) -> float:
        return v[f'godel_route_decision_seconds_bucket{{le="{le}",strategy="rr"}}']

    assert bucket("5e-06") == 2
    assert bucket("1e-05") == 3
    assert bucket("0.0001") == 3
    assert bucket("0.00025") == 4
    assert bucket("0.01") == 4
    assert bucket("+Inf") == 5
    assert v['godel_route_decision_seconds_count{strategy="rr"}'] == 5
    les = [k for k in v if k.startswith("godel_route_decision_seconds_bucket")]
    assert len(les) == len(ROUTE_BUCKETS) + 1  # plus +Inf


def test_task_histogram_buckets_span_10ms_to_1h() -> None:
    m = Metrics()
    for d in (0.005, 0.01, 59.0, 3600.0, 7200.0, -1.0):  # -1: a clock step, counted as 0
        m.observe_task("s", "shell", d)
    v = scrape(m)

    def bucket(le: str) -> float:
        return v[f'godel_task_duration_seconds_bucket{{le="{le}",runtime="shell",swarm="s"}}']

    assert bucket("0.01") == 3
    assert bucket("60.0") == 4
    assert bucket("3600.0") == 5
    assert bucket("+Inf") == 6
    assert v['godel_task_duration_seconds_sum{runtime="shell",swarm="s"}'] == pytest.approx(
        0.005 + 0.01 + 59.0 + 3600.0 + 7200.0
    )


def test_forget_agent_removes_its_series_and_stats() -> None:
    m = Metrics()
    m.observe_agent_task("a1", "shell", True, 1.0)
    m.observe_agent_task("a1", "shell", False, 1.0)
    m.observe_agent_task("a2", "shell", True, 1.0)
    m.forget_agent("a1")
    m.forget_agent("never-seen")  # harmless

    v = scrape(m)
    assert not [k for k in v if 'agent="a1"' in k]
    assert v['godel_agent_tasks_total{agent="a2",outcome="succeeded"}'] == 1
    assert m.agent_stats("a1") is None
    assert m.agent_stats("a2") is not None

    # A re-used id starts from scratch (the cached child was dropped with the series).
    m.observe_agent_task("a1", "shell", True, 1.0)
    v = scrape(m)
    assert v['godel_agent_tasks_total{agent="a1",outcome="succeeded"}'] == 1
    stats = m.agent_stats("a1")
    assert stats is not None and stats.count == 1


def test_a_thousand_short_lived_agents_leave_no_series() -> None:
    m = Metrics()
    for i in range(1000):
        m.observe_agent_task(f"shell-{i:06x}", "shell", i % 3 != 0, 0.1)
    assert len([k for k in scrape(m) if k.startswith("godel_agent_tasks_total")]) == 1000
    for i in range(1000):
        m.forget_agent(f"shell-{i:06x}")
    assert not [k for k in scrape(m) if k.startswith("godel_agent_tasks")]
    assert m.all_agent_stats() == {}
    assert m._agent_task_children == {}


def test_forget_swarm_removes_every_swarm_series() -> None:
    m = Metrics()
    for swarm in ("gone", "kept"):
        m.set_queue_depth(swarm, "normal", 1)
        m.inc_task(swarm, "shell", "failed")
        m.observe_task(swarm, "shell", 1.0)
        m.set_agents(swarm, "busy", 1)
        m.inc_cost(swarm, "pi", Decimal("1"))
        m.inc_tokens(swarm, "pi", 1, 1)
    m.forget_swarm("gone")
    v = scrape(m)
    assert not [k for k in v if 'swarm="gone"' in k]
    assert len([k for k in v if 'swarm="kept"' in k]) > 6
    m.inc_task("gone", "shell", "failed")  # comes back fresh
    assert scrape(m)['godel_tasks_total{runtime="shell",status="failed",swarm="gone"}'] == 1


def test_two_instances_do_not_share_values() -> None:
    a, b = Metrics(), Metrics()
    a.inc_task("s", "shell", "succeeded")
    a.observe_route("rr", 1e-5, chosen=True)
    b.inc_task("s", "shell", "succeeded")
    b.inc_task("s", "shell", "succeeded")
    assert scrape(a)['godel_tasks_total{runtime="shell",status="succeeded",swarm="s"}'] == 1
    assert scrape(b)['godel_tasks_total{runtime="shell",status="succeeded",swarm="s"}'] == 2
    assert not [k for k in scrape(b) if k.startswith("godel_route")]


def test_closed_label_vocabularies_and_bad_amounts_are_refused() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="unknown task status"):
        m.inc_task("s", "shell", "exploded")
    for bad in (Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ValueError):
            m.inc_cost("s", "pi", bad)
    with pytest.raises(ValueError):
        m.inc_tokens("s", "pi", input_tokens=-1)
    with pytest.raises(ValueError):
        Metrics(ewma_alpha=0.0)
    assert not [k for k in scrape(m) if "exploded" in k]


def test_agent_ewma_stats_match_hand_computation() -> None:
    m = Metrics()  # alpha 0.2
    assert m.agent_stats("a") is None
    m.observe_agent_task("a", "pi", True, 10.0)
    m.observe_agent_task("a", "pi", False, 20.0)
    m.observe_agent_task("a", "pi", True, 30.0)
    s = m.agent_stats("a")
    assert s is not None
    # Latency: seeded with 10; 0.2*20 + 0.8*10 = 12; 0.2*30 + 0.8*12 = 15.6
    assert s.ewma_latency_s == pytest.approx(15.6)
    # Success: seeded with 1; 0.2*0 + 0.8*1 = 0.8; 0.2*1 + 0.8*0.8 = 0.84
    assert s.ewma_success_rate == pytest.approx(0.84)
    assert (s.count, s.successes, s.failures) == (3, 2, 1)
    assert s.success_rate == pytest.approx(2 / 3)
    assert s.last_duration_s == 30.0
    assert s.runtime == "pi"
    assert m.all_agent_stats()["a"] is s

    m2 = Metrics(ewma_alpha=0.5)
    m2.observe_agent_task("b", "pi", True, 4.0)
    m2.observe_agent_task("b", "pi", True, 8.0)
    s2 = m2.agent_stats("b")
    assert s2 is not None and s2.ewma_latency_s == pytest.approx(6.0)


def test_observe_route_cost_micro_check(record_property: Callable[[str, object], None]) -> None:
    """Not a timed assertion: records what one observe_route costs on this machine."""
    m = Metrics()
    m.observe_route("rr", 1e-5, chosen=True)  # warm the child cache
    n = 20_000
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for i in range(n):
            m.observe_route("rr", 1e-5, i & 1 == 0)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    print(f"observe_route: {best:.0f} ns/call (best of 5 x {n})")
    record_property("observe_route_ns", round(best))
    assert scrape(m)['godel_route_decision_seconds_count{strategy="rr"}'] == 1 + 5 * n


# --------------------------------------------------------------------------- anomaly


def feed(
    det: AnomalyDetector,
    start: float,
    seconds: float,
    per_s: int,
    fails: Callable[[int], bool],
    runtime: str = "pi",
) -> tuple[list[Anomaly], float]:
    """``per_s`` outcomes a second from ``start``; the i-th fails if ``fails(i)``."""
    out: list[Anomaly] = []
    total = int(seconds * per_s)
    for i in range(total):
        a = det.record(runtime, not fails(i), start + i / per_s)
        if a is not None:
            out.append(a)
    return out, start + total / per_s


def five_pct(i: int) -> bool:
    return i % 20 == 0


def sixty_pct(i: int) -> bool:
    return i % 5 < 3


def test_steady_low_failure_rate_never_alerts() -> None:
    det = AnomalyDetector()
    alerts, _ = feed(det, 0.0, 3600, 2, five_pct)
    assert alerts == []


def test_spike_alerts_once_and_stays_quiet_while_it_lasts() -> None:
    det = AnomalyDetector()
    alerts, t = feed(det, 1000.0, 900, 1, five_pct)  # 15 min of steady baseline
    assert alerts == []
    alerts, t = feed(det, t, 60, 1, sixty_pct)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.runtime == "pi" and a.kind == "failure_spike" and a.window_s == 60.0
    assert a.samples >= 10
    assert a.failure_rate >= a.threshold == pytest.approx(0.2)  # floor beats 3 x 5 %
    assert a.baseline_rate == pytest.approx(0.05, abs=0.01)
    assert a.failures == round(a.failure_rate * a.samples)
    assert "pi" in a.message and a.clock <= t
    # The spike goes on for five more minutes: no second alert.
    more, _ = feed(det, t, 300, 1, sixty_pct)
    assert more == []


def test_rearms_after_recovery_and_alerts_on_a_new_spike() -> None:
    det = AnomalyDetector()
    _, t = feed(det, 0.0, 900, 1, five_pct)
    first, t = feed(det, t, 120, 1, sixty_pct)
    assert len(first) == 1
    # Recover long enough for the spike to age out of the 15-min baseline too.
    quiet, t = feed(det, t, 1000, 1, five_pct)
    assert quiet == []
    assert det._series["pi"].alerting is False  # re-armed
    second, _ = feed(det, t, 120, 1, sixty_pct)
    assert len(second) == 1
    assert second[0].clock > first[0].clock


def test_rearms_when_rate_drops_under_threshold_even_briefly() -> None:
    # Floor-only detector (no baseline scaling) to isolate the re-arm rule.
    det = AnomalyDetector(min_baseline_samples=10**9)
    alerts, t = feed(det, 0.0, 30, 1, lambda i: True)
    assert len(alerts) == 1
    ok, t = feed(det, t, 120, 1, lambda i: False)  # the window clears: re-armed
    assert ok == []
    again, _ = feed(det, t, 30, 1, lambda i: True)
    assert len(again) == 1


def test_too_few_samples_never_alert() -> None:
    det = AnomalyDetector()
    for i in range(9):  # nine failures in a row, nothing else: still under min_samples
        assert det.record("pi", False, 100.0 + i) is None
    # Spread-out failures (one per 7 s): never 10 in one 60 s window.
    det2 = AnomalyDetector()
    for i in range(100):
        assert det2.record("slow", False, i * 7.0) is None
    # The tenth in the window does alert (the limit is min_samples, inclusive).
    assert det.record("pi", False, 109.0) is not None


def test_runtimes_are_independent() -> None:
    det = AnomalyDetector()
    _, t = feed(det, 0.0, 900, 1, five_pct, runtime="shell")
    _, _ = feed(det, 0.0, 900, 1, five_pct, runtime="pi")
    spikes, _ = feed(det, t, 60, 1, sixty_pct, runtime="pi")
    calm, _ = feed(det, t, 60, 1, five_pct, runtime="shell")
    assert [a.runtime for a in spikes] == ["pi"]
    assert calm == []


def test_high_baseline_raises_the_threshold() -> None:
    # 30 % failures is normal for this runtime; 60 % is < 3 x 30 %, so no alert.
    det = AnomalyDetector()
    _, t = feed(det, 0.0, 900, 1, lambda i: i % 10 < 3)
    alerts, _ = feed(det, t, 120, 1, sixty_pct)
    assert alerts == []
    # ... but a total outage on a 5 % runtime is.
    det2 = AnomalyDetector()
    _, t = feed(det2, 0.0, 900, 1, five_pct)
    alerts, _ = feed(det2, t, 60, 1, lambda i: True)
    assert len(alerts) == 1


def test_check_lets_an_idle_runtime_rearm() -> None:
    det = AnomalyDetector(min_baseline_samples=10**9)
    alerts, t = feed(det, 0.0, 20, 1, lambda i: True)
    assert len(alerts) == 1
    assert det.check("pi", t + 10) is None  # still in the episode
    assert det._series["pi"].alerting is True
    assert det.check("pi", t + 120) is None  # the window emptied
    assert det._series["pi"].alerting is False
    assert det.check("unknown", t) is None


def test_memory_stays_bounded_after_1e5_records() -> None:
    det = AnomalyDetector()
    assert det.max_buckets == 60 + 840
    t = 0.0
    for i in range(100_000):
        t += 0.37  # ~10 h of traffic, well past the 15-min horizon
        det.record("pi", i % 7 != 0, t)
        if i % 10_000 == 0:
            assert det.buffered_buckets("pi") <= det.max_buckets
    assert det.buffered_buckets("pi") <= det.max_buckets
    s = det._series["pi"]
    # The running sums agree with the buckets they summarise.
    assert s.recent_n == sum(b[1] for b in s.recent)
    assert s.base_n == sum(b[1] for b in s.base)
    assert s.base_f == sum(b[2] for b in s.base)
    # A burst in one instant lands in one bucket.
    for _ in range(100_000):
        det.record("burst", True, 5.0)
    assert det.buffered_buckets("burst") == 1


def test_clock_going_backwards_counts_in_the_newest_bucket() -> None:
    det = AnomalyDetector()
    det.record("pi", True, 100.0)
    det.record("pi", True, 50.0)
    assert det.buffered_buckets("pi") == 1
    assert det._series["pi"].recent_n == 2


def test_anomaly_round_trips_as_an_event() -> None:
    det = AnomalyDetector(min_baseline_samples=10**9)
    alerts, _ = feed(det, 0.0, 20, 1, lambda i: True)
    a = alerts[0]
    assert a.type == "runtime.anomaly"
    assert Anomaly.model_validate_json(a.model_dump_json()) == a


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_s": 0},
        {"baseline_s": 60},
        {"min_samples": 0},
        {"factor": 0},
        {"floor": 0},
        {"floor": 1.5},
        {"resolution_s": 120},
    ],
)
def test_bad_detector_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AnomalyDetector(**kwargs)  # type: ignore[arg-type]
