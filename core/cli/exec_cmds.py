"""``godel exec ...``: read one exec by its id (``agent exec`` runs them).

Read-only: it never starts a stopped daemon (it says none runs and exits 3).
"""

from __future__ import annotations

import click

from core.api.shapes import ExecShowObject
from core.cli import render
from core.cli.common import Ctx, async_command, call, echo_json, json_option, pass_ctx

__all__ = ["exec_group"]


@click.group("exec")
def exec_group() -> None:
    """Inspect execs: what ran on an agent, how it ended, and its output."""


@exec_group.command("show")
@click.argument("exec_id")
@json_option
@pass_ctx
@async_command
async def exec_show(ctx: Ctx, exec_id: str, as_json: bool) -> None:
    """Show one exec: agent, status, exit code, reason, times, tokens, cost, and its
    output by stream (stdout, stderr, and for LLM agents their tool calls).

    --json prints ``{exec, output: [log lines in order], truncated}``.
    """
    shown: ExecShowObject = await call(ctx, "exec.get", {"id": exec_id}, start=False)
    if as_json:
        echo_json(shown)
        return
    click.echo(render.exec_detail(shown))
