"""The ``godel`` command line: a client of the daemon (or of an embedded engine).

Exit codes: 0 success; 1 a Godel error (printed as one line on stderr); 2 bad usage;
3 ``daemon status`` when no daemon runs; ``agent exec`` exits with the command's own
exit code (124 on timeout, 130 when aborted). ``--json`` on every listing.

This module holds the root group, ``metrics``, ``demo`` and ``main()``; the command groups
live in ``core/cli/*_cmds.py`` (daemon, agent, runtime/model, audit, config, bench) and
``core/cli/work.py`` (task, swarm, route).
"""

from __future__ import annotations

import sys

import click

from core import __version__
from core.cli.agent_cmds import agent
from core.cli.audit_cmds import audit
from core.cli.bench_cmds import bench
from core.cli.common import Ctx, async_command, call, pass_ctx, run
from core.cli.config_cmds import config
from core.cli.daemon_cmds import daemon
from core.cli.model_cmds import model, runtime
from core.cli.work import route, swarm, task


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


# metrics ---------------------------------------------------------------------------


@cli.command("metrics")
@pass_ctx
@async_command
async def metrics(ctx: Ctx) -> None:
    """Print the engine's metrics (Prometheus text format)."""
    result = await call(ctx, "metrics.get")
    sys.stdout.write(result["text"])


# demo ------------------------------------------------------------------------------


@cli.command("demo")
@click.option("--agents", "n_agents", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--keep", is_flag=True, help="Leave the daemon and agents running afterwards.")
@pass_ctx
def demo(ctx: Ctx, n_agents: int, keep: bool) -> None:
    """Spawn shell agents, run real commands on them, show the audit trail."""
    from core.cli.demo import run_demo

    sys.exit(run(run_demo(ctx.paths, n_agents=n_agents, keep=keep)))


cli.add_command(daemon)
cli.add_command(agent)
cli.add_command(runtime)
cli.add_command(model)
cli.add_command(audit)
cli.add_command(config)
cli.add_command(bench)
cli.add_command(task)
cli.add_command(swarm)
cli.add_command(route)


def main() -> None:
    cli(prog_name="godel")


if __name__ == "__main__":
    main()
