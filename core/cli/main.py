"""The ``godel`` command line: a client of the daemon (or of an embedded engine).

Exit codes: 0 success; 1 a Godel error (printed as one line on stderr); 2 bad usage;
3 no daemon runs (``daemon status``, and any read-only command: reads never start
one); ``agent exec`` exits with the command's own
exit code (124 on timeout, 130 when aborted). ``--json`` on every listing.

This module holds the root group, ``metrics``, ``demo`` and ``main()``; the command groups
live in ``core/cli/*_cmds.py`` (daemon, agent, exec, runtime/model, audit, config, bench,
backup/restore) and
``core/cli/work.py`` (task, swarm, route). A group's module is imported only when that
group runs (or ``--help`` lists them), so a command pays for its own imports alone.
"""

from __future__ import annotations

import importlib
import sys

import click

from core import __version__
from core.cli.common import Ctx, pass_ctx, request, run, sync_command

# name -> (module, attribute): the command groups, imported on first use.
LAZY_COMMANDS = {
    "daemon": ("core.cli.daemon_cmds", "daemon"),
    "agent": ("core.cli.agent_cmds", "agent"),
    "runtime": ("core.cli.model_cmds", "runtime"),
    "model": ("core.cli.model_cmds", "model"),
    "audit": ("core.cli.audit_cmds", "audit"),
    "config": ("core.cli.config_cmds", "config"),
    "bench": ("core.cli.bench_cmds", "bench"),
    "task": ("core.cli.work", "task"),
    "swarm": ("core.cli.work", "swarm"),
    "route": ("core.cli.work", "route"),
    "exec": ("core.cli.exec_cmds", "exec_group"),
    "events": ("core.cli.events_cmds", "events"),
    "budget": ("core.cli.budget_cmds", "budget"),
    "backup": ("core.cli.store_cmds", "backup"),
    "restore": ("core.cli.store_cmds", "restore"),
    "run": ("core.cli.run_cmds", "run_plan"),
    "do": ("core.cli.do_cmds", "do"),
    # The console lives in godel_tui (core never imports it; this is a name, not an import).
    "tui": ("godel_tui.cli", "tui"),
    "replay": ("godel_tui.cli", "replay"),
}


class LazyGroup(click.Group):
    """A group whose subcommands in ``LAZY_COMMANDS`` are imported when first used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[cmd_name]
            cmd = getattr(importlib.import_module(module), attr)
            assert isinstance(cmd, click.Command)
            self.add_command(cmd, cmd_name)
        return cmd


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
      godel tui                     (or bare `godel` on a terminal: the console)
      godel agent spawn --runtime shell --skills python
      godel agent list
      godel agent exec shell-3f9a1c "pytest -q"
      godel agent logs shell-3f9a1c --follow
      godel agent kill shell-3f9a1c
      godel audit verify

    Commands that change something start the daemon on demand (`godel daemon stop`
    ends it); commands that only read never do: they say that none runs (exit 3).
    """
    click_ctx.obj = Ctx(home)
    if click_ctx.invoked_subcommand is None:
        # Bare `godel`: the console on a terminal, the help anywhere else (a pipe, CI).
        if sys.stdout.isatty() and sys.stdin.isatty():
            tui = cli.get_command(click_ctx, "tui")
            assert tui is not None
            click_ctx.invoke(tui)
        else:
            click.echo(click_ctx.get_help())


# metrics ---------------------------------------------------------------------------


@cli.command("metrics")
@pass_ctx
@sync_command
def metrics(ctx: Ctx) -> None:
    """Print the engine's metrics (Prometheus text format)."""
    result = request(ctx, "metrics.get")
    sys.stdout.write(result["text"])


# demo ------------------------------------------------------------------------------


@cli.command("demo")
@click.option("--keep", is_flag=True, help="Leave the daemon running afterwards.")
@click.option("--headless", is_flag=True, help="Print the run even on a terminal (no console).")
@pass_ctx
def demo(ctx: Ctx, keep: bool, headless: bool) -> None:
    """`godel do` on a scratch repository, on the scripted model: planned, edited by
    shell, native and pi agents in worktrees, gated, retried, merged, under a budget.

    On a terminal the run plays in the console (`q` quits); elsewhere it is printed.
    What the engine published is recorded to HOME/demo.rec (`godel replay` plays it)."""
    if sys.stdout.isatty() and sys.stdin.isatty() and not headless:
        # The console is godel_tui's, found by name: core never imports it.
        console_demo = importlib.import_module("godel_tui.demo")
        sys.exit(console_demo.run_in_console(ctx.paths, keep=keep))
    from core.cli.demo import run_demo

    sys.exit(run(run_demo(ctx.paths, keep=keep)))


def main() -> None:
    cli(prog_name="godel")


if __name__ == "__main__":
    main()
