"""``godel runtime ...`` and ``godel model ...``: what agents run on and with, and the
scripted model server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.cli import render
from core.cli.common import Ctx, echo_json, json_option, pass_ctx, request, sync_command

__all__ = ["model", "runtime"]


@click.group()
def runtime() -> None:
    """Inspect the registered runtimes."""


@runtime.command("list")
@json_option
@pass_ctx
@sync_command
def runtime_list(ctx: Ctx, as_json: bool) -> None:
    """List runtimes with their declared capabilities."""
    result = request(ctx, "runtime.list")
    if as_json:
        echo_json(result)
        return
    click.echo(render.table(render.RUNTIME_HEADERS, [render.runtime_row(r) for r in result]))


@click.group()
def model() -> None:
    """List models and run the scripted model server."""


@model.command("list")
@json_option
@pass_ctx
@sync_command
def model_list(ctx: Ctx, as_json: bool) -> None:
    """Configured models with provider, prices (per million tokens) and key status."""
    result = request(ctx, "model.list")
    if as_json:
        echo_json(result)
        return
    click.echo(render.table(render.MODEL_HEADERS, [render.model_row(m) for m in result]))


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
