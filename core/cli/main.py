"""The ``godel`` command line: a client of the daemon (or of an embedded engine).

Exit codes: 0 success; 1 a Godel error (printed as one line on stderr); 2 bad usage;
3 ``daemon status`` when no daemon runs; ``agent exec`` exits with the command's own
exit code (124 on timeout, 130 when aborted). ``--json`` on every listing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

import click

from core import __version__
from core.api.client import DaemonClient, can_connect, read_pid, start_daemon, stop_daemon
from core.cli import render
from core.cli.common import (
    EXIT_ERROR,
    EXIT_NOT_RUNNING,
    Ctx,
    async_command,
    call,
    echo_json,
    fail,
    json_option,
    pass_ctx,
    run,
)
from core.cli.work import route, swarm, task
from core.errors import GodelError
from core.models import Agent, AuditEntry, ExecResult, LogLine, RuntimeInfo


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="GODEL_HOME",
    type=click.Path(file_okay=False),
    help="Where Godel keeps its data (default: $GODEL_HOME or the user data dir).",
)
@click.version_option(__version__, prog_name="godel")
@click.pass_context
def cli(click_ctx: click.Context, home: str | None) -> None:
    """Godel: a control plane for swarms of AI coding agents.

    \b
    Everyday commands:
      godel agent spawn --runtime shell --skills python
      godel agent list
      godel agent exec shell-3f9a1c "pytest -q"
      godel agent logs shell-3f9a1c --follow
      godel agent kill shell-3f9a1c
      godel audit verify

    Commands that need the daemon start it on demand (`godel daemon stop` ends it).
    """
    click_ctx.obj = Ctx(home)


# daemon ---------------------------------------------------------------------------


@cli.group()
def daemon() -> None:
    """Start, stop and inspect the daemon that owns the agents."""


@daemon.command("start")
@click.option("--foreground", is_flag=True, help="Run in this process (logs to stderr).")
@pass_ctx
def daemon_start(ctx: Ctx, foreground: bool) -> None:
    """Start the daemon (no-op if one already serves this home)."""
    if foreground:
        from core.daemon import main as daemon_main

        sys.exit(daemon_main(["--home", str(ctx.paths.home)]))

    async def go() -> None:
        pid = await start_daemon(ctx.paths)
        if pid is None:
            click.echo(f"Daemon already running (pid {read_pid(ctx.paths)}) for {ctx.paths.home}")
        else:
            click.echo(f"Daemon started (pid {pid}) for {ctx.paths.home}")

    run(go())


@daemon.command("stop")
@pass_ctx
@async_command
async def daemon_stop(ctx: Ctx) -> None:
    """Stop every agent and the daemon."""
    pid = await stop_daemon(ctx.paths)
    if pid is None:
        click.echo(f"No daemon running for {ctx.paths.home}")
    else:
        click.echo(f"Daemon stopped (pid {pid})")


@daemon.command("status")
@json_option
@pass_ctx
def daemon_status(ctx: Ctx, as_json: bool) -> None:
    """Show whether the daemon runs; exits 3 if it does not."""

    async def go() -> Any:
        if not await can_connect(ctx.paths):
            return None
        client = DaemonClient(ctx.paths)
        await client.connect()
        try:
            return await client.call("daemon.status")
        finally:
            await client.close()

    status = run(go())
    if status is None:
        if as_json:
            echo_json({"running": False, "home": str(ctx.paths.home)})
        else:
            click.echo(f"No daemon running for {ctx.paths.home}")
        sys.exit(EXIT_NOT_RUNNING)
    if as_json:
        echo_json(status)
        return
    agents = ", ".join(f"{n} {s}" for s, n in sorted(status["agents"].items())) or "none"
    click.echo(
        f"Daemon running (pid {status['pid']}, version {status['version']}, "
        f"up {status['uptime_s']:.0f}s)\n"
        f"Home:    {status['home']}\nSocket:  {status['socket']}\nAgents:  {agents}"
    )


# agents ---------------------------------------------------------------------------


@cli.group()
def agent() -> None:
    """Spawn, run, inspect and kill agents."""


def _skills(value: str | None) -> list[str]:
    return [s.strip() for s in (value or "").split(",") if s.strip()]


@agent.command("spawn")
@click.option(
    "--runtime", "-r", required=True, help="Runtime to run the agent on (see `godel runtime list`)."
)
@click.option("--name", help="A unique name for the agent while it lives.")
@click.option("--model", help="Model for LLM runtimes.")
@click.option("--skills", help="Comma-separated skills, e.g. python,tests.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, resolve_path=True),
    help="Use this directory as the workspace.",
)
@json_option
@pass_ctx
@async_command
async def agent_spawn(
    ctx: Ctx,
    runtime: str,
    name: str | None,
    model: str | None,
    skills: str | None,
    workdir: str | None,
    as_json: bool,
) -> None:
    """Spawn an agent and wait until it is ready."""
    params: dict[str, Any] = {"runtime": runtime, "skills": _skills(skills)}
    if name:
        params["name"] = name
    if model:
        params["model"] = model
    if workdir:
        params["workdir"] = workdir
    result = await call(ctx, "agent.spawn", params)
    agent = Agent.model_validate(result)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"Spawned {render.runtime_label(agent.runtime)} agent: {agent.id}")


@agent.command("list")
@click.option("--live", is_flag=True, help="Only agents that have not ended.")
@json_option
@pass_ctx
@async_command
async def agent_list(ctx: Ctx, live: bool, as_json: bool) -> None:
    """List agents with their status and where that status came from."""
    result = await call(ctx, "agent.list", {"include_ended": not live})
    if as_json:
        echo_json(result)
        return
    agents = [Agent.model_validate(a) for a in result]
    if not agents:
        click.echo("No agents. Spawn one with `godel agent spawn --runtime shell`.")
        return
    click.echo(render.table(render.AGENT_HEADERS, [render.agent_row(a) for a in agents]))


@agent.command("get")
@click.argument("agent_id")
@json_option
@pass_ctx
@async_command
async def agent_get(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """Show one agent and its recent execs."""
    from core.models import ExecRecord

    result = await call(ctx, "agent.get", {"id": agent_id})
    if as_json:
        echo_json(result)
        return
    agent = Agent.model_validate(result["agent"])
    execs = [ExecRecord.model_validate(x) for x in result["execs"]]
    click.echo(render.agent_detail(agent, execs))


@agent.command("exec")
@click.argument("agent_id")
@click.argument("command")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds before the command is killed.",
)
@json_option
@pass_ctx
def agent_exec(ctx: Ctx, agent_id: str, command: str, timeout: float | None, as_json: bool) -> None:
    """Run COMMAND on an agent, streaming its output; exit with its exit code.

    For a shell agent COMMAND is a shell command; for an LLM agent (pi, native) it is the
    prompt: the answer goes to stdout, tool calls and their output to stderr, then the
    tokens and cost. With --json, print one JSON object per line: every event, then the
    result.
    """
    last_char = {"stdout": "\n"}

    def on_stream(data: Any) -> None:
        if as_json:
            click.echo(json.dumps(data))
            return
        stream_name, text = render.exec_event_text(data)
        if not text:
            return
        if stream_name == "stderr" and last_char["stdout"] != "\n":
            sys.stdout.write("\n")  # keep tool lines off the end of a streamed answer
            last_char["stdout"] = "\n"
        stream = sys.stderr if stream_name == "stderr" else sys.stdout
        stream.write(text)
        stream.flush()
        if stream_name == "stdout":
            last_char["stdout"] = text[-1]

    params: dict[str, Any] = {"id": agent_id, "input": command}
    if timeout is not None:
        params["timeout"] = timeout
    raw = run(call(ctx, "agent.exec", params, on_stream=on_stream))
    result = ExecResult.model_validate(raw)
    if as_json:
        click.echo(json.dumps(raw))
    else:
        if last_char["stdout"] != "\n":
            sys.stdout.write("\n")
            sys.stdout.flush()
        summary = render.exec_summary(result)
        if summary:
            click.echo(summary, err=True)
        if result.status.value not in ("succeeded", "failed") or (
            result.status.value == "failed" and result.exit_code is None
        ):
            click.echo(f"godel: exec {result.status.value}: {result.reason}", err=True)
    if result.exit_code is None:
        sys.exit(EXIT_ERROR)
    sys.exit(result.exit_code if 0 <= result.exit_code < 256 else EXIT_ERROR)


@agent.command("logs")
@click.argument("agent_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the agent ends.")
@json_option
@pass_ctx
@async_command
async def agent_logs(ctx: Ctx, agent_id: str, follow: bool, as_json: bool) -> None:
    """Print an agent's stored output (stdout and stderr, in order)."""

    def on_stream(data: Any) -> None:
        if as_json:
            click.echo(json.dumps(data))
            return
        line = LogLine.model_validate(data)
        stream = sys.stderr if line.stream == "stderr" else sys.stdout
        stream.write(line.data)
        stream.flush()

    await call(ctx, "agent.logs", {"id": agent_id, "follow": follow}, on_stream=on_stream)


@agent.command("kill")
@click.argument("agent_id")
@json_option
@pass_ctx
@async_command
async def agent_kill(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """End an agent and every process it started."""
    result = await call(ctx, "agent.kill", {"id": agent_id})
    if as_json:
        echo_json(result)
    else:
        click.echo(f"Killed agent: {result['id']}")


@agent.command("steer")
@click.argument("agent_id")
@click.argument("message")
@pass_ctx
@async_command
async def agent_steer(ctx: Ctx, agent_id: str, message: str) -> None:
    """Tell an LLM agent's running exec something (delivered between its turns)."""
    result = await call(ctx, "agent.steer", {"id": agent_id, "message": message})
    if not result["delivered"]:
        fail(f"agent {agent_id} is not running anything to steer")
    click.echo("Steered.")


@agent.command("abort")
@click.argument("agent_id")
@pass_ctx
@async_command
async def agent_abort(ctx: Ctx, agent_id: str) -> None:
    """Abort the agent's running exec; the agent stays."""
    result = await call(ctx, "agent.abort", {"id": agent_id})
    click.echo("Aborted." if result["aborted"] else "Nothing was running.")


@agent.command("health")
@click.argument("agent_id")
@json_option
@pass_ctx
@async_command
async def agent_health(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """Probe an agent's process now."""
    result = await call(ctx, "agent.health", {"id": agent_id})
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{result['state']}{': ' + result['detail'] if result.get('detail') else ''}")
    if result["state"] != "healthy":
        sys.exit(EXIT_ERROR)


# runtimes --------------------------------------------------------------------------


@cli.group()
def runtime() -> None:
    """Inspect the registered runtimes."""


@runtime.command("list")
@json_option
@pass_ctx
@async_command
async def runtime_list(ctx: Ctx, as_json: bool) -> None:
    """List runtimes with their declared capabilities."""
    result = await call(ctx, "runtime.list")
    if as_json:
        echo_json(result)
        return
    infos = [RuntimeInfo.model_validate(r) for r in result]
    click.echo(render.table(render.RUNTIME_HEADERS, [render.runtime_row(r) for r in infos]))


# models ----------------------------------------------------------------------------


@cli.group()
def model() -> None:
    """List models and run the scripted model server."""


@model.command("list")
@json_option
@pass_ctx
@async_command
async def model_list(ctx: Ctx, as_json: bool) -> None:
    """Configured models with provider, prices (per million tokens) and key status."""
    from core.llm.catalog import ModelInfo

    result = await call(ctx, "model.list")
    if as_json:
        echo_json(result)
        return
    infos = [ModelInfo.model_validate(m) for m in result]
    click.echo(render.table(render.MODEL_HEADERS, [render.model_row(m) for m in infos]))


@model.command("serve")
@click.option(
    "--script",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A script file (JSON); default: the bundled script.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port to listen on (default: any free port).",
)
def model_serve(script: Path | None, host: str, port: int) -> None:
    """Run the scripted model server (OpenAI and Anthropic APIs) in the foreground."""
    from core.llm.scripted import serve_main

    sys.exit(serve_main(script, host, port))


# audit -----------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Read, verify and export the tamper-evident audit log."""


@audit.command("list")
@click.option("--subject", help="Only entries about this subject (e.g. an agent id).")
@click.option(
    "--after",
    "after_seq",
    type=click.IntRange(min=0),
    default=0,
    help="Only entries after this seq.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many entries.")
@json_option
@pass_ctx
@async_command
async def audit_list(
    ctx: Ctx, subject: str | None, after_seq: int, limit: int | None, as_json: bool
) -> None:
    """List audit entries, oldest first."""
    params: dict[str, Any] = {"after_seq": after_seq}
    if subject:
        params["subject"] = subject
    if limit:
        params["limit"] = limit
    result = await call(ctx, "audit.list", params)
    if as_json:
        echo_json(result)
        return
    entries = [AuditEntry.model_validate(e) for e in result]
    click.echo(render.table(render.AUDIT_HEADERS, [render.audit_row(e) for e in entries]))


@audit.command("verify")
@json_option
@pass_ctx
@async_command
async def audit_verify(ctx: Ctx, as_json: bool) -> None:
    """Recompute the hash chain; exit 1 and name the first bad entry if it is broken."""
    from core.audit import VerifyReport

    report = VerifyReport.model_validate(await call(ctx, "audit.verify"))
    if as_json:
        echo_json(report.model_dump(mode="json"))
    else:
        click.echo(report.summary(), err=not report.ok)
    if not report.ok:
        sys.exit(EXIT_ERROR)


@audit.command("export")
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8", lazy=False),
    default="-",
    help="Write to this file instead of stdout.",
)
@pass_ctx
@async_command
async def audit_export(ctx: Ctx, output: IO[str]) -> None:
    """Export every audit entry as JSON lines (with hashes, so it can be verified offline)."""

    def on_stream(data: Any) -> None:
        output.write(json.dumps(data, sort_keys=True) + "\n")

    result = await call(ctx, "audit.export", on_stream=on_stream)
    output.flush()
    if output is not sys.stdout:
        click.echo(f"Exported {result['entries']} entries to {output.name}", err=True)


# config ----------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Show and check configuration (.godel/config.toml and the user file)."""


@config.command("validate")
@json_option
def config_validate(as_json: bool) -> None:
    """Check the config files that apply here; names the file and key of any problem."""
    from core.config import load_config
    from core.runtimes.registry import known_runtime_names

    try:
        loaded = load_config(known_runtime_names())
    except GodelError as e:
        if as_json:
            echo_json({"ok": False, "error": e.message, **e.data})
        fail(e.message)
        return
    if as_json:
        echo_json(
            {"ok": True, "sources": [str(s) for s in loaded.sources], "digest": loaded.digest}
        )
    else:
        files = ", ".join(str(s) for s in loaded.sources) or "no config files (defaults)"
        click.echo(f"Config OK: {files}")


@config.command("show")
@click.option("--daemon", "from_daemon", is_flag=True, help="Show the daemon's loaded config.")
@json_option
@pass_ctx
def config_show(ctx: Ctx, from_daemon: bool, as_json: bool) -> None:
    """Print the effective config (the files here, or the daemon's with --daemon)."""
    if from_daemon:
        result = run(call(ctx, "config.show"))
    else:
        from core.config import load_config
        from core.runtimes.registry import known_runtime_names

        try:
            loaded = load_config(known_runtime_names())
        except GodelError as e:
            fail(e.message)
            return
        result = {
            "config": loaded.config.model_dump(mode="json"),
            "sources": [str(s) for s in loaded.sources],
            "digest": loaded.digest,
        }
    if as_json:
        echo_json(result)
        return
    click.echo(f"# sources: {', '.join(result['sources']) or '(defaults only)'}")
    click.echo(f"# digest: {result['digest']}")
    echo_json(result["config"])


@config.command("reload")
@pass_ctx
@async_command
async def config_reload(ctx: Ctx) -> None:
    """Make the daemon reload its config (a change is audited)."""
    result = await call(ctx, "config.reload", {"cwd": str(Path.cwd())})
    click.echo(f"Config reloaded (digest {result['digest'][:12]})")


@cli.command("metrics")
@pass_ctx
@async_command
async def metrics(ctx: Ctx) -> None:
    """Print the engine's metrics (Prometheus text format)."""
    result = await call(ctx, "metrics.get")
    sys.stdout.write(result["text"])


# bench -----------------------------------------------------------------------------


@cli.group()
def bench() -> None:
    """Measure real runtimes through an embedded engine (temporary home)."""


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
    click.echo(render.bench_spawn_text(result))
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
    click.echo(render.bench_exec_text(result))
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
    from core.federation.route_bench import bench_route
    from core.federation.routing import check_strategy
    from core.federation.strategies import strategy_names

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


# demo ------------------------------------------------------------------------------


@cli.command("demo")
@click.option("--agents", "n_agents", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--keep", is_flag=True, help="Leave the daemon and agents running afterwards.")
@pass_ctx
def demo(ctx: Ctx, n_agents: int, keep: bool) -> None:
    """Spawn shell agents, run real commands on them, show the audit trail."""
    from core.cli.demo import run_demo

    sys.exit(run(run_demo(ctx.paths, n_agents=n_agents, keep=keep)))


cli.add_command(task)
cli.add_command(swarm)
cli.add_command(route)


def main() -> None:
    cli(prog_name="godel")


if __name__ == "__main__":
    main()
