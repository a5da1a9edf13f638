"""``godel bench tui``: the console's refresh time and memory under a swarm's load.

Everything is real: a daemon on a temporary ``GODEL_HOME`` (started as the CLI starts
one) with ``agents`` agents on the ``noop`` runtime (an exec succeeds at once, so the
daemon's own work is what the events cost, and 1,000 agents need no 1,000 processes), a
load generator in a process of its own (``godel_tui.bench_load``: paced ``agent.exec``
calls over a few connections) and the console, ``GodelApp``, following that daemon under
``run_test(size=(200, 55))``. Each exec publishes a few events (the agent busy, the exec
started and finished, the agent idle, their audit entries); the exec rate is set from
the events one exec is seen to publish, so that the console receives about ``rate``
events a second, and the rate it did receive is what is reported.

What is measured, on the console's loop, while the load runs:

- **render**: the wall time of each ``Screen._on_timer_update`` (layout, compositor,
  ``render_line`` of the rows asked for) with ``App._display`` encoding the update into
  the ANSI text a terminal would receive: headless ``run_test`` skips that step, which
  would understate a frame (``../shared/reference/textual-at-scale.md``);
- **apply**: the console's own frame (``GodelApp._frame``: buffered events folded into
  the model, the table told which rows changed, the summaries every 0.25 s);
- **lag**: how late a 10 ms ticker on the same loop fires (what a key press waits);
- rows rendered per frame (``AgentTable.rendered_rows``) and bytes sent per second;
- at the end, the RSS of the console's process and of the daemon (psutil).

With ``per_event``, a second console runs against the same daemon applying each event
as it arrives and repainting the table each time (no batching), for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from core.api.client import DaemonClient, start_daemon, stop_daemon
from core.cli.common import EXIT_ERROR, echo_json, fail, json_option, one_line_errors
from core.errors import GodelError
from core.paths import GodelPaths

if TYPE_CHECKING:
    from godel_tui.app import GodelApp

SIZE = (200, 55)
SWARM_SIZE = 250  # agents per swarm: the table groups rows by swarm
TICK_S = 0.010
GOAL_RENDER_P95_MS = 20.0
GOAL_RSS_MIB = 200.0
MIB = 1024 * 1024
CALIBRATION_EXECS = 20


@dataclass
class _Samples:
    """What the hooks record while ``on`` (the load's window)."""

    on: bool = False
    render_s: list[float] = field(default_factory=list)
    render_cpu_s: list[float] = field(default_factory=list)
    apply_s: list[float] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    bytes_out: int = 0
    events: int = 0  # received by the console, recorded or not


def _stats(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50, p95, max (nearest rank), in ms for seconds."""
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    v = sorted(values)

    def rank(q: float) -> float:
        return v[min(len(v) - 1, max(0, round(q * len(v)) - 1))] * scale

    return {"n": len(v), "p50": rank(0.50), "p95": rank(0.95), "max": v[-1] * scale}


def _app_class(samples: _Samples, per_event: bool) -> type[GodelApp]:
    """``GodelApp`` with the benchmark's hooks (a subclass: the console is unchanged)."""
    from rich.console import RenderableType
    from textual._compositor import CompositorUpdate
    from textual.screen import Screen

    from godel_tui.app import GodelApp
    from godel_tui.widgets.agent_table import AgentTable

    class BenchApp(GodelApp):
        def feed_event(self, event: Any) -> None:
            samples.events += 1
            if not per_event:
                super().feed_event(event)
                return
            # The unbatched path: fold and repaint on every event.
            self.model.apply(event)
            self.query_one(AgentTable).refresh_rows(datetime.now(UTC))

        def _frame(self) -> None:
            t0 = time.perf_counter()
            super()._frame()
            if samples.on:
                samples.apply_s.append(time.perf_counter() - t0)

        def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
            # What App._display sends a terminal, minus the write (headless skips it all).
            if renderable is None or self._batch_count:
                return
            if isinstance(renderable, CompositorUpdate):
                text = renderable.render_segments(self.console)
                if samples.on:
                    samples.bytes_out += len(text.encode())

    return BenchApp


@contextlib.contextmanager
def _timed_screen_updates(samples: _Samples, rows: Callable[[], int]) -> Iterator[None]:
    """Time every ``Screen._on_timer_update`` (a frame), and count the rows it rendered."""
    from textual.screen import Screen

    original = Screen._on_timer_update

    def timed(self: Screen[Any]) -> None:
        before = rows()
        t0, c0 = time.perf_counter(), time.thread_time()
        original(self)
        if samples.on:
            samples.render_s.append(time.perf_counter() - t0)
            samples.render_cpu_s.append(time.thread_time() - c0)
            samples.rows.append(rows() - before)

    setattr(Screen, "_on_timer_update", timed)  # noqa: B010 - a method patched for the run
    try:
        yield
    finally:
        setattr(Screen, "_on_timer_update", original)  # noqa: B010


async def _ticker(samples: _Samples) -> None:
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(TICK_S)
        if samples.on:
            samples.lag_s.append(max(0.0, loop.time() - t - TICK_S))


async def _until(cond: Callable[[], bool], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise GodelError(f"bench tui: {what} did not happen within {within:g}s")
        await asyncio.sleep(0.01)


async def _quiet(samples: _Samples, for_s: float = 0.3, within: float = 30.0) -> None:
    """Until no event has arrived for ``for_s`` (the daemon's tail is delivered)."""
    deadline = time.monotonic() + within
    last, since = samples.events, time.monotonic()
    while time.monotonic() - since < for_s and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        if samples.events != last:
            last, since = samples.events, time.monotonic()


async def _spawn(client: DaemonClient, agents: int) -> int:
    """``agents`` noop agents in swarms of ``SWARM_SIZE``; returns how many are live."""
    names = []
    for i in range(0, agents, SWARM_SIZE):
        name = f"bench-{i // SWARM_SIZE}"
        count = min(SWARM_SIZE, agents - i)
        names.append((name, count))
        await client.call(
            "swarm.create", {"name": name, "runtime": "noop", "count": count, "max_agents": count}
        )
    for _ in range(3):  # a spawn that failed (an id taken twice, say): ask again
        rows = await client.call("swarm.list")
        have = {r["name"]: sum(r["agents_by_status"].values()) for r in rows}
        short = [(n, c) for n, c in names if have.get(n, 0) < c]
        if not short:
            break
        for name, count in short:
            await client.call("swarm.scale", {"name": name, "count": count})
    snap = await client.call("view.snapshot")
    return sum(1 for a in snap["agents"] if a["status"] == "idle")


async def _calibrate(client: DaemonClient, samples: _Samples, agent_ids: list[str]) -> float:
    """Events the console receives per exec."""
    await _quiet(samples)
    before = samples.events
    for agent in agent_ids[:CALIBRATION_EXECS]:
        await client.call("agent.exec", {"id": agent, "input": "bench"})
    await _quiet(samples)
    return (samples.events - before) / min(CALIBRATION_EXECS, len(agent_ids))


async def _console_run(
    paths: GodelPaths,
    daemon_pid: int,
    client: DaemonClient,
    live: int,
    rate: float,
    seconds: float,
    *,
    per_event: bool,
    events_per_exec: float | None,
) -> dict[str, Any]:
    import psutil

    from godel_tui.widgets.agent_table import AgentTable

    samples = _Samples()
    app = _app_class(samples, per_event)(paths, autostart=False)
    table: list[AgentTable] = []

    def rows() -> int:
        return table[0].rendered_rows if table else 0

    me, daemon = psutil.Process(), psutil.Process(daemon_pid)
    with _timed_screen_updates(samples, rows):
        t0 = time.perf_counter()
        async with app.run_test(size=SIZE):
            table.append(app.query_one(AgentTable))
            await _until(
                lambda: len(app.model.order()) >= live and rows() > 0, "the agents shown", 60
            )
            first_frame_s = time.perf_counter() - t0
            ids = list(app.model.order())
            if events_per_exec is None:
                events_per_exec = await _calibrate(client, samples, ids)
            execs_per_s = rate / max(events_per_exec, 1.0)
            ticker = asyncio.create_task(_ticker(samples))
            load = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "godel_tui.bench_load",
                str(paths.home),
                f"{execs_per_s:.3f}",
                str(seconds),
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                start_events = samples.events
                await _until(lambda: samples.events > start_events, "the load's first event", 30)
                samples.on = True
                cpu0, d0 = me.cpu_times(), daemon.cpu_times()
                w0, e0 = time.perf_counter(), samples.events
                out, _ = await load.communicate()
                window = time.perf_counter() - w0
                received = samples.events - e0
                cpu1, d1 = me.cpu_times(), daemon.cpu_times()
                samples.on = False
            finally:
                ticker.cancel()
                if load.returncode is None:  # stopped early (an error, Ctrl-C)
                    load.kill()
                    await load.wait()
            await _quiet(samples)
            console_rss = me.memory_info().rss
    lines = out.decode().strip().splitlines()
    load_report: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": "no report"}
    if "error" in load_report:
        raise GodelError(f"bench tui: the load generator failed: {load_report['error']}")
    render = _stats(samples.render_s)
    return {
        "mode": "per event" if per_event else "batched (one frame per 1/30 s)",
        "first_frame_s": first_frame_s,
        "events_per_exec": events_per_exec,
        "execs_per_s_target": execs_per_s,
        "load": load_report,
        "window_s": window,
        "events_received": received,
        "events_per_s": received / window if window else 0.0,
        "frames": render["n"],
        "fps": render["n"] / window if window else 0.0,
        "render_ms": render,
        # The same frames in CPU time: what the console spent, without the time it
        # waited for a core (the daemon and the load share the machine with it).
        "render_cpu_ms": _stats(samples.render_cpu_s),
        "apply_ms": _stats(samples.apply_s),
        "lag_ms": _stats(samples.lag_s),
        "rows_per_frame": _stats([float(r) for r in samples.rows], scale=1.0),
        "bytes_per_s": samples.bytes_out / window if window else 0.0,
        "cpu_percent": 100 * (sum(cpu1[:2]) - sum(cpu0[:2])) / window if window else 0.0,
        "daemon_cpu_percent": 100 * (sum(d1[:2]) - sum(d0[:2])) / window if window else 0.0,
        "console_rss_mib": console_rss / MIB,
    }


async def _bench(
    paths: GodelPaths, cwd: Path, agents: int, rate: float, seconds: float, per_event: bool
) -> dict[str, Any]:
    import psutil

    load_before = os.getloadavg()[0]
    with contextlib.chdir(cwd):  # the daemon's directory: no project's .godel/ config
        pid = await start_daemon(paths)
    if pid is None:
        raise GodelError(f"bench tui: a daemon already serves {paths.home}")
    client = DaemonClient(paths)
    await client.connect()
    try:
        t0 = time.perf_counter()
        live = await _spawn(client, agents)
        spawn_s = time.perf_counter() - t0
        if not live:
            raise GodelError("bench tui: no noop agent could be spawned on the temporary daemon")
        runs = [
            await _console_run(
                paths, pid, client, live, rate, seconds, per_event=False, events_per_exec=None
            )
        ]
        daemon_rss = psutil.Process(pid).memory_info().rss / MIB
        if per_event:
            runs.append(
                await _console_run(
                    paths,
                    pid,
                    client,
                    live,
                    rate,
                    seconds,
                    per_event=True,
                    events_per_exec=runs[0]["events_per_exec"],
                )
            )
    finally:
        await client.close()
    main = runs[0]
    total = main["console_rss_mib"] + daemon_rss
    return {
        "agents": agents,
        "agents_live": live,
        "runtime": "noop",
        "rate_target": rate,
        "seconds": seconds,
        "size": list(SIZE),
        "spawn_s": spawn_s,
        "daemon_rss_mib": daemon_rss,
        "console_rss_mib": main["console_rss_mib"],
        "total_rss_mib": total,
        "goal": {"render_p95_ms": GOAL_RENDER_P95_MS, "rss_mib": GOAL_RSS_MIB},
        # The machine's load before the benchmark started: other work skews the figures.
        "loadavg_before": load_before,
        "met": main["render_ms"]["p95"] < GOAL_RENDER_P95_MS and total < GOAL_RSS_MIB,
        "runs": runs,
    }


def bench_tui(agents: int, rate: float, seconds: float, per_event: bool = False) -> dict[str, Any]:
    """One benchmark: a daemon of its own on a temporary home, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="godel-bench-tui-") as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text("")  # defaults only: a user's config must not change the figures
        paths = GodelPaths.resolve(Path(tmp) / "home")
        saved = os.environ.get("GODEL_CONFIG")
        os.environ["GODEL_CONFIG"] = str(config)  # read by the daemon it starts
        try:
            return asyncio.run(_bench(paths, Path(tmp), agents, rate, seconds, per_event))
        finally:
            with contextlib.suppress(GodelError, OSError):
                asyncio.run(stop_daemon(paths))
            if saved is None:
                os.environ.pop("GODEL_CONFIG", None)
            else:
                os.environ["GODEL_CONFIG"] = saved


def text(b: dict[str, Any]) -> str:
    """The figures as a table, one row per console run, and the goal."""

    def three(s: dict[str, float]) -> str:
        return f"{s['p50']:.1f}/{s['p95']:.1f}/{s['max']:.1f}"

    rows = [
        (
            r["mode"],
            f"{r['events_per_s']:.0f}",
            f"{r['fps']:.0f}",
            three(r["render_ms"]),
            f"{r['render_cpu_ms']['p95']:.1f}",
            f"{r['apply_ms']['p95']:.1f}",
            three(r["lag_ms"]),
            f"{r['rows_per_frame']['p50']:.0f}/{r['rows_per_frame']['p95']:.0f}",
            f"{r['bytes_per_s'] / 1024:.0f}",
            f"{r['cpu_percent']:.0f}/{r['daemon_cpu_percent']:.0f}",
            f"{r['console_rss_mib']:.0f}",
        )
        for r in b["runs"]
    ]
    head = (
        f"bench tui: {b['agents_live']} {b['runtime']} agents (spawned in {b['spawn_s']:.1f}s), "
        f"target {b['rate_target']:g} events/s for {b['seconds']:g}s, console "
        f"{b['size'][0]}x{b['size'][1]}, {b['runs'][0]['events_per_exec']:.1f} events per exec; "
        f"load average before: {b['loadavg_before']:.1f}"
    )
    grid = _table(
        (
            "CONSOLE",
            "EVENTS/S",
            "FPS",
            "RENDER MS p50/p95/max",
            "CPU p95",
            "APPLY p95",
            "LAG MS p50/p95/max",
            "ROWS/FRAME",
            "KIB/S OUT",
            "CPU % (DAEMON)",
            "RSS MIB",
        ),
        rows,
    )
    main = b["runs"][0]
    goal = (
        f"goal: render p95 < {GOAL_RENDER_P95_MS:g} ms and console + daemon < "
        f"{GOAL_RSS_MIB:g} MiB: {'met' if b['met'] else 'not met'} "
        f"({main['render_ms']['p95']:.1f} ms; {b['console_rss_mib']:.0f} + "
        f"{b['daemon_rss_mib']:.0f} = {b['total_rss_mib']:.0f} MiB)"
    )
    return "\n".join((head, grid, goal))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, as the CLI's listings (``core.cli.render`` imports the engine's
    benchmarks: not for the console)."""
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in (headers, *rows)
    )


@click.command("tui")
@click.option("--agents", type=click.IntRange(1, 5000), default=1000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(1, 20_000),
    default=500,
    show_default=True,
    help="Events per second for the console to receive.",
)
@click.option("--seconds", type=click.FloatRange(1, 3600), default=20, show_default=True)
@click.option(
    "--per-event", is_flag=True, help="Also measure a console that repaints on every event."
)
@json_option
def bench_tui_cmd(agents: int, rate: float, seconds: float, per_event: bool, as_json: bool) -> None:
    """The console under load: refresh p95 and the memory of console and daemon."""
    try:
        import textual  # noqa: F401 - the console's dependency: say so if it is missing
    except ImportError as e:  # pragma: no cover
        fail(f"the console cannot load ({e}); run `make setup`")
    with one_line_errors():
        result = bench_tui(agents, rate, seconds, per_event)
    if as_json:
        echo_json(result)
    else:
        click.echo(text(result))
    load_errors = sum(r["load"]["errors"] for r in result["runs"])
    if load_errors or result["agents_live"] < agents:
        sys.exit(EXIT_ERROR)
