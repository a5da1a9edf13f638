"""`godel bench` runs end to end (a smoke run: it checks that figures come out, not speed)."""

from __future__ import annotations

import json

from tests.conftest import Godel


def test_bench_spawn_and_exec_produce_figures(godel: Godel) -> None:
    r = godel.run("bench", "spawn", "--runtime", "shell", "--count", "2", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    spawn = json.loads(r.stdout)
    assert spawn["failures"] == 0 and spawn["spawn_to_ready_s"]["n"] == 2
    assert spawn["rss_mib_per_agent"]["p50"] > 0

    r = godel.run("bench", "exec", "--runtime", "native", "--runs", "2", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    ex = json.loads(r.stdout)
    assert ex["failures"] == 0 and ex["model"] == "scripted"
    assert ex["engine_s"]["n"] == 2 and ex["overhead_ratio"] > 0
    assert ex["direct_kind"] == "runtime alone"


def test_federation_benches_produce_figures(godel: Godel) -> None:
    r = godel.run(
        "bench",
        "route",
        "--agents",
        "10",
        "--strategy",
        "cost",
        "--decisions",
        "200",
        "--json",
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    [route] = json.loads(r.stdout)
    assert route["strategy"] == "cost" and route["agents"] == 10 and route["p99_us"] > 0

    r = godel.run("bench", "dispatch", "--runtime", "noop", "--tasks", "20", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["failures"] == 0 and d["tasks"] == 20 and d["tasks_per_s"] > 0

    r = godel.run("bench", "swarm", "--runtime", "shell", "--count", "3", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["failures"] == 0 and s["count"] == 3
