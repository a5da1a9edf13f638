"""``godel config ...``: validate, show and reload the configuration."""

from __future__ import annotations

from pathlib import Path

import click

from core.cli.common import Ctx, async_command, call, echo_json, fail, json_option, pass_ctx, run
from core.errors import GodelError

__all__ = ["config"]


@click.group()
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
@json_option
@pass_ctx
@async_command
async def config_reload(ctx: Ctx, as_json: bool) -> None:
    """Make the daemon reload its config and apply what changed (audited).

    Settings that can change while running take effect at once; the rest are
    listed as needing a restart (``godel daemon stop``, then any command).
    """
    result = await call(ctx, "config.reload", {"cwd": str(Path.cwd())})
    if as_json:
        echo_json(result)
        return
    reload = result["reload"]
    digest = result["digest"][:12]
    if reload["applied"]:
        click.echo(f"Config reloaded (digest {digest})")
        click.echo(f"  applied now: {', '.join(reload['applied'])}")
    else:
        click.echo(f"Nothing new to apply (digest {digest})")
    if reload["needs_restart"]:
        click.echo(
            f"  needs a daemon restart: {', '.join(reload['needs_restart'])} "
            "(the old values stay in force until `godel daemon stop`, then any command)"
        )
