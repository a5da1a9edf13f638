"""``make bench``: the console under a swarm's load (issue 10, "Speed"): refresh p95 and
the memory of daemon plus console, by ``godel bench tui`` (``godel_tui/bench.py``).

The command runs in a process of its own, so that the RSS it reports for the console
is a console's: the benchmark's own runner is not in it. This benchmark alone:
``make bench BENCH_ARGS='--only tui'``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

SECTION = "## The console under load (`godel bench tui`)"
GOAL_PREFIX = "- Console refresh p95 <"
FULL = ("--agents", "1000", "--rate", "500", "--seconds", "20")
QUICK = ("--agents", "50", "--rate", "50", "--seconds", "2")


def _godel() -> list[str]:
    script = Path(sys.executable).with_name("godel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "core.cli.main"]


def bench_tui(quick: bool) -> dict[str, Any]:
    args = [*_godel(), "bench", "tui", *(QUICK if quick else FULL), "--per-event", "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and not proc.stdout.strip():
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    data: dict[str, Any] = json.loads(proc.stdout)
    data["command"] = "godel bench tui " + " ".join((*(QUICK if quick else FULL), "--per-event"))
    return data


def _three(s: dict[str, float]) -> str:
    return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['max']:.1f}"


def _previous(prev: dict[str, Any] | None) -> str:
    if not prev or not prev.get("runs"):
        return "—"
    return f"{prev['runs'][0]['render_ms']['p95']:.1f} ms"


def section(b: dict[str, Any], machine: str, when: str, prev: dict[str, Any] | None) -> list[str]:
    rows = [
        "| console | events/s received | frames/s | render p50 / p95 / max | render CPU p95 "
        "| apply p95 | loop lag p50 / p95 / max | rows rendered per frame p50 / p95 "
        "| sent to the terminal | CPU: console / daemon | console RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in b["runs"]:
        rows.append(
            f"| {r['mode']} | {r['events_per_s']:.0f} | {r['fps']:.0f} | "
            f"**{_three(r['render_ms'])} ms** | {r['render_cpu_ms']['p95']:.1f} ms | "
            f"{r['apply_ms']['p95']:.1f} ms | {_three(r['lag_ms'])} ms | "
            f"{r['rows_per_frame']['p50']:.0f} / {r['rows_per_frame']['p95']:.0f} | "
            f"{r['bytes_per_s'] / 1024:.0f} KiB/s | {r['cpu_percent']:.0f} % / "
            f"{r['daemon_cpu_percent']:.0f} % | {r['console_rss_mib']:.0f} MiB |"
        )
    main = b["runs"][0]
    intro = (
        f"Measured {when} on {machine}; the machine's 1-minute load average was "
        f"{b['loadavg_before']:.1f} when it started (other work on the machine delays the "
        "console's frames: the render's CPU time is beside its wall time for that reason)."
    )
    method = (
        f"`{b['command']}`: a real daemon on a temporary `GODEL_HOME` with "
        f"{b['agents_live']} agents on the `noop` runtime (an exec succeeds at once: no "
        "process per agent, the daemon's own work is what an event costs), in swarms of "
        "250; a load generator in a process of its own paces `agent.exec` calls over 4 "
        f"connections so that the console receives about {b['rate_target']:g} events a "
        f"second ({main['events_per_exec']:.0f} per exec: the agent busy, the exec started "
        f"and finished, the agent idle, two audit entries) for {b['seconds']:g} s. The "
        "console is `GodelApp` against that daemon under "
        f"`run_test(size=({b['size'][0]}, {b['size'][1]}))`. **Render** is the wall time "
        "of each `Screen._on_timer_update` with `App._display` encoding the update into the "
        "ANSI text a terminal would receive (headless runs skip that step); **apply** is the "
        "console's own frame (events folded into the model, the table told which rows "
        "changed, the summaries 4 times a second); **lag** is how late a 10 ms ticker on "
        "the console's loop fires; RSS is psutil's, at the end. The second row is the same "
        "console applying and repainting on every event instead of once per frame. What "
        "keeps a frame short is in docs/console.md#speed. This section alone: "
        "`make bench BENCH_ARGS='--only tui'`."
    )
    after = (
        f"Spawning the agents took {b['spawn_s']:.1f} s. Daemon RSS "
        f"{b['daemon_rss_mib']:.0f} MiB, console {b['console_rss_mib']:.0f} MiB. Render "
        f"p95 of the previous run: {_previous(prev)}."
    )
    return [
        SECTION,
        "",
        *textwrap.wrap(intro, 88),
        "",
        *textwrap.wrap(method, 88),
        "",
        *rows,
        "",
        *textwrap.wrap(after, 88),
        "",
    ]


def goal_line(b: dict[str, Any]) -> str:
    main = b["runs"][0]
    g = b["goal"]
    return (
        f"{GOAL_PREFIX} {g['render_p95_ms']:g} ms with {b['agents_live']} agents at "
        f"{main['events_per_s']:.0f} events/s, console + daemon < {g['rss_mib']:g} MiB: "
        f"**{'met' if b['met'] else 'not met'}** (render p95 {main['render_ms']['p95']:.1f} ms"
        f", {main['render_cpu_ms']['p95']:.1f} ms of CPU, at a load average of "
        f"{b['loadavg_before']:.1f}; {b['console_rss_mib']:.0f} + {b['daemon_rss_mib']:.0f} = "
        f"{b['total_rss_mib']:.0f} MiB)."
    )
