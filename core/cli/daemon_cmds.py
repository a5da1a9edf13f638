"""``godel daemon ...``: start, stop and inspect the daemon that owns the agents."""

from __future__ import annotations

import asyncio
import sys

import click

from core.api.client import (
    ask_daemon,
    read_pid,
    request_stop,
    silent_daemon,
    start_daemon,
    wait_daemon_gone,
)
from core.cli.caller import drift_line
from core.cli.common import (
    EXIT_NOT_RUNNING,
    Ctx,
    async_command,
    echo_json,
    fail,
    json_option,
    pass_ctx,
    run,
)

__all__ = ["daemon"]


@click.group()
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
    """Stop every agent and the daemon; waits for as long as the daemon is stopping."""
    pid = await request_stop(ctx.paths)
    if pid is None:
        click.echo(f"No daemon running for {ctx.paths.home}")
        return

    def say_waiting() -> None:
        click.echo(f"waiting for the daemon (pid {pid}) to stop its agents…", err=True)

    try:
        await wait_daemon_gone(pid, on_slow=say_waiting, log=ctx.paths.log)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Ctrl-C ends the wait, not the stop (exit 130 follows).
        click.echo(
            f"godel: stopped waiting; the daemon (pid {pid}) keeps stopping in the background",
            err=True,
        )
        raise
    click.echo(f"Daemon stopped (pid {pid})")


@daemon.command("status")
@json_option
@pass_ctx
def daemon_status(ctx: Ctx, as_json: bool) -> None:
    """Show whether the daemon runs; exits 3 if it does not."""

    status, why = run(ask_daemon(ctx.paths, "daemon.status"))
    silent = silent_daemon(ctx.paths) if status is None else None
    if silent is not None:
        # Running, but unreachable: saying "none runs" would hide agents that still run.
        if as_json:
            echo_json(
                {
                    "running": True,
                    "answering": False,
                    "pid": silent,
                    "home": str(ctx.paths.home),
                    "error": why,
                }
            )
        fail(
            f"a daemon (pid {silent}) holds {ctx.paths.home} but its socket does not answer: "
            f"{why}; `godel daemon stop` ends it"
        )
    if status is None:
        if as_json:
            echo_json({"running": False, "home": str(ctx.paths.home)})
        else:
            click.echo(f"No daemon running for {ctx.paths.home}")
        sys.exit(EXIT_NOT_RUNNING)
    # Which config the daemon runs with, and (on stderr) whether it is not this directory's.
    config = status.get("config") or {}
    warning = drift_line(config)
    if as_json:
        echo_json(status)
    else:
        agents = ", ".join(f"{n} {s}" for s, n in sorted(status["agents"].items())) or "none"
        files = ", ".join(config.get("sources") or []) or "no config files (defaults)"
        digest = str(config.get("digest", "unknown"))[:12]
        loaded = config.get("loaded_at") or "at its start"
        click.echo(
            f"Daemon running (pid {status['pid']}, version {status['version']}, "
            f"up {status['uptime_s']:.0f}s)\n"
            f"Home:    {status['home']}\nSocket:  {status['socket']}\nAgents:  {agents}\n"
            f"Config:  {files} (digest {digest}, loaded {loaded})"
        )
        box = status.get("containment") or {}
        if box:
            where = f" at {box['where']}" if box.get("where") else ""
            click.echo(f"Containment: {box.get('kind', 'unknown')}{where}")
    if warning:
        click.echo(f"godel: {warning}", err=True)
