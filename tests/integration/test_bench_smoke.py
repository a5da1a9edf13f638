"""`godel bench` runs end to end (a smoke run: it checks that figures come out, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_the_memory_bench_produces_figures(godel: Godel) -> None:
    """`make bench BENCH_ARGS='--only memory'` end to end, small (20 MB), nothing written."""
    script = Path(__file__).resolve().parents[1] / "bench" / "run_benchmarks.py"
    r = subprocess.run(
        [sys.executable, str(script), "--only", "memory", "--quick", "--no-write"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=godel.cwd,
        env=godel.env,
    )
    assert r.returncode == 0, r.stderr
    runs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [run["cap"] for run in runs] == [None, 256 * 1024 * 1024]
    default, everything = runs
    # Each reader got all that is stored: the warm-up's "warm\n", the kept output (and, cut
    # at the cap, the line that says so).
    kept = 16 * 1024 * 1024
    assert len(set(default["read_bytes"])) == 1 and kept < default["read_bytes"][0] < kept + 200
    assert everything["read_bytes"] == [len("warm\n") + 20_000_000] * 4
    assert all(run["peak_mib"] >= run["idle_mib"] > 0 for run in runs)


def test_the_console_bench_produces_figures(godel: Godel) -> None:
    """`godel bench tui`, small: a real daemon, real load, the console measured."""
    r = godel.run(
        "bench",
        "tui",
        "--agents",
        "50",
        "--rate",
        "50",
        "--seconds",
        "2",
        "--json",
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["agents_live"] == 50 and b["runtime"] == "noop"
    assert b["console_rss_mib"] > 0 and b["daemon_rss_mib"] > 0
    assert b["total_rss_mib"] == b["console_rss_mib"] + b["daemon_rss_mib"]
    assert isinstance(b["met"], bool) and b["goal"] == {"render_p95_ms": 20.0, "rss_mib": 200.0}
    [run] = b["runs"]  # without --per-event, the batched console alone
    assert run["load"]["errors"] == 0 and run["load"]["ok"] > 0
    assert run["events_received"] > 0 and run["events_per_exec"] > 0
    for key in ("render_ms", "render_cpu_ms", "apply_ms", "lag_ms", "rows_per_frame"):
        assert set(run[key]) == {"n", "p50", "p95", "max"}, key
    assert run["render_ms"]["n"] > 0 and run["bytes_per_s"] > 0
