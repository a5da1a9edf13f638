"""``make bench``: how long ``godel agent list`` takes against a running daemon, as a
ratio to ``python -c "import json, click"`` on the same machine in the same session.

Both are whole processes, run in turn (list, baseline, list, ...) after a warm-up, so
machine noise falls on both alike; the ratio is taken pair by pair and its median
quoted. The daemon is real (a temporary ``GODEL_HOME`` with a few shell agents), and
``godel`` is the console script a user runs.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The goal: within 3x of a bare `import json, click`.
GOAL_RATIO = 3.0
SECTION = "## `godel agent list` against a running daemon"
GOAL_PREFIX = "- `godel agent list` within"
BASELINE = ("-c", "import json, click")


def _godel() -> list[str]:
    script = Path(sys.executable).with_name("godel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "core.cli.main"]


def _timed(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of ``cmd``; fails if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bench_cli(quick: bool) -> dict[str, Any]:
    runs = 5 if quick else 40
    agents = 3
    godel = _godel()
    baseline = [sys.executable, *BASELINE]
    with tempfile.TemporaryDirectory(prefix="godel-bench-cli-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")} | {
            "GODEL_HOME": str(Path(tmp) / "home"),
            "GODEL_CONFIG": "/nonexistent",
        }
        try:
            for _ in range(agents):  # starts the daemon, as a user's first spawn does
                subprocess.run(
                    [*godel, "agent", "spawn", "--runtime", "shell"],
                    env=env,
                    cwd=tmp,  # no project's .godel/config.toml applies
                    check=True,
                    capture_output=True,
                )
            listing = [*godel, "agent", "list"]
            for _ in range(2):  # warm-up: file caches, the daemon's first query
                _timed(listing, env, tmp)
                _timed(baseline, env, tmp)
            pairs = [(_timed(listing, env, tmp), _timed(baseline, env, tmp)) for _ in range(runs)]
        finally:
            subprocess.run([*godel, "daemon", "stop"], env=env, cwd=tmp, capture_output=True)
    wall_ratios = [a[0] / b[0] for a, b in pairs]
    cpu_ratios = [a[1] / b[1] for a, b in pairs if b[1] > 0]
    return {
        "command": "godel agent list",
        "baseline": 'python -c "import json, click"',
        "agents": agents,
        "runs": runs,
        "list_wall_s": statistics.median(a[0] for a, _ in pairs),
        "baseline_wall_s": statistics.median(b[0] for _, b in pairs),
        "wall_ratio": statistics.median(wall_ratios),
        "wall_ratio_min": min(wall_ratios),
        "wall_ratio_max": max(wall_ratios),
        "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else None,
    }


def goal_line(b: dict[str, Any]) -> str:
    met = b["wall_ratio"] <= GOAL_RATIO
    return (
        f'{GOAL_PREFIX} {GOAL_RATIO:g}x of `python -c "import json, click"`: '
        f"**{'met' if met else 'not met'}** ({b['wall_ratio']:.2f}x, median of "
        f"{b['runs']} pairs)."
    )


def section(b: dict[str, Any], machine: str, when: str) -> list[str]:
    cpu = "—" if b["cpu_ratio"] is None else f"{b['cpu_ratio']:.2f}x"
    return [
        SECTION,
        "",
        f"Measured {when} on {machine}.",
        "",
        f"`godel agent list` (the console script, {b['agents']} shell agents) against a running",
        'daemon, and `python -c "import json, click"` with the same Python: whole processes,',
        f"in turn, {b['runs']} pairs after a warm-up of 2; the ratio is taken pair by pair (so",
        "drift in the machine's speed falls on both) and its median quoted. A read imports no",
        "engine, store, pydantic or asyncio: it costs a Python start, click, and round trips",
        "over the unix socket (the call, and `config.sources` to warn when the daemon runs",
        "another directory's config). This section alone:",
        "`make bench BENCH_ARGS='--only cli'`.",
        "",
        "| command | wall p50 | ÷ baseline, p50 | min | max | CPU ÷ baseline, p50 |",
        "|---|---|---|---|---|---|",
        f"| `godel agent list` | {b['list_wall_s'] * 1000:.1f} ms | **{b['wall_ratio']:.2f}x** | "
        f"{b['wall_ratio_min']:.2f}x | {b['wall_ratio_max']:.2f}x | {cpu} |",
        f'| `python -c "import json, click"` | {b["baseline_wall_s"] * 1000:.1f} ms | 1 | | | |',
        "",
    ]


def update_doc(doc: Path, b: dict[str, Any], machine: str, when: str) -> None:
    """Put this benchmark's section and goal line into an existing benchmarks.md."""
    put_section(doc, section(b, machine, when), GOAL_PREFIX, goal_line(b))


def put_section(doc: Path, new: list[str], goal_prefix: str, goal: str) -> None:
    """Replace (or add, before "## Goals") the section ``new`` starts, and the goal line
    that starts with ``goal_prefix``; the rest of the file is kept."""
    lines = doc.read_text().splitlines()
    title = new[0]
    if title in lines:
        start = lines.index(title)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = new
    else:
        at = lines.index("## Goals") if "## Goals" in lines else len(lines)
        lines[at:at] = new
    found = [i for i, ln in enumerate(lines) if ln.startswith(goal_prefix)]
    if found:
        lines[found[0]] = goal
    else:
        lines.append(goal)
    doc.write_text("\n".join(lines) + "\n")
