"""``godel bench ...``: measure real runtimes and the engine through an embedded engine."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

import click

from core.cli import render
from core.cli.common import EXIT_ERROR, echo_json, fail, json_option, run
from core.errors import GodelError

if TYPE_CHECKING:
    from core.bench import ExecBench, SpawnBench

__all__ = ["bench"]


# name -> (module, attribute): subcommands that live outside core (core never imports
# the console: a name, not an import), loaded when used.
LAZY_BENCHES = {"tui": ("godel_tui.bench", "bench_tui_cmd")}


class _BenchGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_BENCHES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in LAZY_BENCHES:
            module, attr = LAZY_BENCHES[cmd_name]
            cmd = getattr(importlib.import_module(module), attr)
            assert isinstance(cmd, click.Command)
            self.add_command(cmd, cmd_name)
        return cmd


@click.group(cls=_BenchGroup)
def bench() -> None:
    """Measure real runtimes through an embedded engine (temporary home); `bench tui`
    measures the console against a real daemon."""


@bench.command("spawn")
@click.option("--runtime", "-r", required=True)
@click.option("--count", type=click.IntRange(1, 2000), default=5, show_default=True)
@click.option("--model", help="Model for LLM runtimes (default: defaults.model).")
@json_option
def bench_spawn_cmd(runtime: str, count: int, model: str | None, as_json: bool) -> None:
    """Spawn COUNT agents one after another: spawn-to-ready time and RSS per agent."""
    from core.bench import bench_spawn

    result = run(bench_spawn(runtime, count, model))
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    click.echo(bench_spawn_text(result))
    if result.failures:
        sys.exit(EXIT_ERROR)


@bench.command("exec")
@click.option("--runtime", "-r", required=True)
@click.option("--runs", type=click.IntRange(1, 10000), default=20, show_default=True)
@click.option("--input", "text", help="What to run (default: a no-op for the runtime).")
@click.option("--model", help="Model for LLM runtimes (default: defaults.model).")
@json_option
def bench_exec_cmd(
    runtime: str, runs: int, text: str | None, model: str | None, as_json: bool
) -> None:
    """Exec latency through the engine vs the runtime alone (interleaved), as a ratio."""
    from core.bench import bench_exec

    result = run(bench_exec(runtime, runs, text, model))
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    click.echo(bench_exec_text(result))
    if result.failures:
        sys.exit(EXIT_ERROR)


@bench.command("route")
@click.option(
    "--agents",
    type=click.IntRange(1, 100_000),
    multiple=True,
    default=(10, 50, 1000),
    show_default=True,
    help="Pool sizes (repeat the option for several).",
)
@click.option(
    "--strategy", "strategies", multiple=True, help="Strategies to measure (default: every one)."
)
@click.option(
    "--decisions", type=click.IntRange(100, 10_000_000), default=20_000, show_default=True
)
@json_option
def bench_route_cmd(
    agents: tuple[int, ...], strategies: tuple[str, ...], decisions: int, as_json: bool
) -> None:
    """Routing decision latency (p50/p99 in microseconds) per strategy and pool size."""
    from core.federation.routing import check_strategy
    from core.federation.routing.bench import bench_route
    from core.federation.routing.strategies import strategy_names

    try:
        names = [check_strategy(s) for s in strategies] or strategy_names()
    except GodelError as e:
        fail(e.message)
    results = [bench_route(n, decisions=decisions, strategy=name) for name in names for n in agents]
    if as_json:
        echo_json([r.model_dump(mode="json") for r in results])
        return
    rows = [
        (r.strategy, str(r.agents), f"{r.p50_us:.1f}", f"{r.p99_us:.1f}", f"{r.max_us:.1f}")
        for r in results
    ]
    click.echo(render.table(("STRATEGY", "AGENTS", "P50 µs", "P99 µs", "MAX µs"), rows))


@bench.command("dispatch")
@click.option(
    "--runtime",
    "-r",
    default="noop",
    show_default=True,
    help="noop measures Godel alone; shell runs `true` in real shells.",
)
@click.option(
    "--tasks", "n_tasks", type=click.IntRange(1, 1_000_000), default=2000, show_default=True
)
@click.option("--agents", type=click.IntRange(1, 1000), default=8, show_default=True)
@json_option
def bench_dispatch_cmd(runtime: str, n_tasks: int, agents: int, as_json: bool) -> None:
    """Queue throughput: submit N tasks to a swarm and time until all complete."""
    from core.bench import bench_dispatch

    result = run(bench_dispatch(runtime, n_tasks, agents))
    if as_json:
        echo_json(result.model_dump(mode="json"))
    else:
        click.echo(
            f"dispatch {runtime}: {result.tasks} tasks on {result.agents} agents, "
            f"{result.failures} failures; {result.tasks_per_s:.0f} tasks/s "
            f"(submit {result.submit_s:.2f}s, all done {result.total_s:.2f}s)"
        )
    if result.failures:
        sys.exit(EXIT_ERROR)


@bench.command("swarm")
@click.option("--runtime", "-r", default="shell", show_default=True)
@click.option("--count", type=click.IntRange(1, 5000), default=100, show_default=True)
@click.option("--model", help="Model for LLM runtimes (default: defaults.model).")
@json_option
def bench_swarm_cmd(runtime: str, count: int, model: str | None, as_json: bool) -> None:
    """Spawn a swarm of COUNT agents: time until all are ready, and failures."""
    from core.bench import bench_swarm

    result = run(bench_swarm(runtime, count, model))
    if as_json:
        echo_json(result.model_dump(mode="json"))
    else:
        click.echo(
            f"swarm {runtime}: {result.count} agents ready in {result.all_ready_s:.2f}s, "
            f"{result.failures} failures (spawn concurrency {result.spawn_concurrency})"
        )
    if result.failures:
        sys.exit(EXIT_ERROR)


@bench.command("stop")
@click.option("--runtime", "-r", default="shell", show_default=True)
@click.option("--count", type=click.IntRange(1, 5000), default=1000, show_default=True)
@json_option
def bench_stop_cmd(runtime: str, count: int, as_json: bool) -> None:
    """COUNT live agents: the daemon's threads and memory, then destroy and stop times."""
    from core.bench import bench_stop

    result = run(bench_stop(runtime, count))
    if as_json:
        echo_json(result.model_dump(mode="json"))
    else:
        click.echo(
            f"stop {runtime}: {result.count} agents, {result.failures} failures; threads "
            f"{result.threads_before} -> {result.threads_with_agents} ({result.child_watcher}); "
            f"memory per agent: daemon +{result.daemon_kib_per_agent:.0f} KiB, process tree "
            f"{result.tree_mib_per_agent:.1f} MiB; spawn {result.spawn_s:.2f}s, destroy "
            f"{result.destroy_s:.2f}s, engine stop {result.stop_s:.2f}s; "
            f"{result.left_running} left running"
        )
    if result.failures or result.left_running:
        sys.exit(EXIT_ERROR)


# The benchmarks' text (here, not in render: render is shared with the console, which
# may not reach the engine the benchmarks import).


def bench_spawn_text(b: SpawnBench) -> str:
    s = b.spawn_to_ready_s
    lines = [
        f"spawn {b.runtime}{' (' + b.model + ')' if b.model else ''}: {b.count} agents, "
        f"{b.failures} failures, {b.total_s:.2f}s in all",
        f"  spawn-to-ready: p50 {s.p50 * 1000:.1f} ms, p95 {s.p95 * 1000:.1f} ms, "
        f"max {s.max * 1000:.1f} ms",
    ]
    if b.rss_mib_per_agent is not None:
        r = b.rss_mib_per_agent
        lines.append(f"  RSS per agent: median {r.p50:.1f} MiB, max {r.max:.1f} MiB")
    elif b.in_process_rss_mib_total is not None:
        lines.append(f"  in-process agents: engine RSS grew {b.in_process_rss_mib_total} MiB")
    return "\n".join(lines)


def bench_exec_text(b: ExecBench) -> str:
    return (
        f"exec {b.runtime}{' (' + b.model + ')' if b.model else ''} {b.input!r}: "
        f"{b.runs} runs each, {b.failures} failures\n"
        f"  through the engine: p50 {b.engine_s.p50 * 1000:.2f} ms, "
        f"p95 {b.engine_s.p95 * 1000:.2f} ms\n"
        f"  runtime alone:      p50 {b.runtime_s.p50 * 1000:.2f} ms, "
        f"p95 {b.runtime_s.p95 * 1000:.2f} ms\n"
        + (
            f"  {b.direct_kind}: p50 {b.direct_s.p50 * 1000:.2f} ms, "
            f"p95 {b.direct_s.p95 * 1000:.2f} ms\n"
            if b.direct_kind != "runtime alone"
            else ""
        )
        + f"  engine overhead vs {b.direct_kind}: {b.overhead_ratio:.3f}x"
    )
