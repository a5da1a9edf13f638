"""``make bench --compare-with DIR``: an older tree's figures beside this one's, measured
in one session (alternating the trees, so machine noise falls on both alike)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def commit_of(repo: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def bench_json(tree: Path, *args: str) -> dict[str, Any]:
    """One ``godel bench`` run of the code in ``tree`` (its own process)."""
    out = subprocess.run(
        [sys.executable, "-m", "core.cli.main", "bench", *args, "--json"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        env={**_env(), "PYTHONPATH": str(tree)},
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")} | {
        "GODEL_CONFIG": "/nonexistent"
    }


def compare_with(old: Path, rounds: int) -> list[str]:
    """The old tree's figures against this one's, alternating (old, new, old, new...) in
    one session so machine noise falls on both alike; medians of ``rounds`` runs."""
    cases = [
        ("no-op dispatch, tasks/s", ("dispatch", "--runtime", "noop", "--tasks", "5000"),
         "tasks_per_s", True),
        ("shell exec, engine ÷ runtime alone", ("exec", "--runtime", "shell", "--runs", "200"),
         "overhead_ratio", False),
    ]  # fmt: skip
    rows = [
        f"## Before and after: `{commit_of(old)}` against this tree",
        "",
        f"Measured in one session, alternating the two trees, {rounds} runs each (median).",
        "",
        "| figure | before | after | after ÷ before |",
        "|---|---|---|---|",
    ]
    for label, args, field, higher_better in cases:
        before: list[float] = []
        after: list[float] = []
        for _ in range(rounds):
            before.append(float(bench_json(old, *args)[field]))
            after.append(float(bench_json(ROOT, *args)[field]))
        b, a = statistics.median(before), statistics.median(after)
        fmt = "{:.0f}" if higher_better else "{:.3f}x"
        rows.append(f"| {label} | {fmt.format(b)} | **{fmt.format(a)}** | {a / b:.2f} |")
        print(label, "before", before, "after", after, flush=True)
    # Many agents, once per tree (the old tree stops them one by one: minutes).
    old_stop, new_stop = _fleet_probe(old, STOP_COUNT), _fleet_probe(ROOT, STOP_COUNT)
    print("fleet before", old_stop, "after", new_stop, flush=True)
    for label, key, unit in (
        (f"daemon threads with {STOP_COUNT} shell agents", "threads", ""),
        ("daemon memory per agent", "kib_per_agent", " KiB"),
        (f"destroy a swarm of {STOP_COUNT}", "destroy_s", " s"),
        (f"engine stop with {STOP_COUNT} agents", "stop_s", " s"),
    ):
        b, a = old_stop[key], new_stop[key]
        rows.append(
            f"| {label} | {b:.4g}{unit} | **{a:.4g}{unit}** | {a / b if b else float('nan'):.2f} |"
        )
    return [*rows, ""]


STOP_COUNT = 1000

# Runs in either tree's own process: only facade methods both trees have.
_FLEET_PROBE = """
import asyncio, json, sys, time, psutil
from core.bench import bench_engine
from core.models import SwarmSpec

async def main(n):
    me = psutil.Process()
    async with bench_engine() as engine:
        rss0 = me.memory_info().rss
        await engine.create_swarm(
            SwarmSpec(name="a", runtime="shell", count=n, max_agents=n), actor="bench")
        threads, rss = me.num_threads(), me.memory_info().rss
        t0 = time.perf_counter()
        await engine.destroy_swarm("a", actor="bench")
        destroy = time.perf_counter() - t0
        await engine.create_swarm(
            SwarmSpec(name="b", runtime="shell", count=n, max_agents=n), actor="bench")
        t0 = time.perf_counter()
        await engine.stop(reason="bench", actor="bench")
        stop = time.perf_counter() - t0
    print(json.dumps({"threads": threads, "kib_per_agent": (rss - rss0) / 1024 / n,
                      "destroy_s": destroy, "stop_s": stop}))

asyncio.run(main(int(sys.argv[1])))
"""


def _fleet_probe(tree: Path, count: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _FLEET_PROBE, str(count)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        env={**_env(), "PYTHONPATH": str(tree)},
    )
    data: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return data
