"""``godel config ...``: validate, show and reload the configuration.

The daemon runs with the config of the directory it was started in (or last reloaded
from). ``config validate`` says whether that is the config it validated; every other
command warns in one line when the daemon's config is not the one that applies where it
runs (``core.cli.caller``); ``config reload`` makes the daemon load this directory's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from core.api import blocking
from core.api.protocol import DaemonNotRunning
from core.cli.common import Ctx, async_command, call, echo_json, fail, json_option, pass_ctx, run
from core.config.files import ConfigFile, describe_files, user_config_path
from core.errors import GodelError

__all__ = ["config"]


@click.group()
def config() -> None:
    """Show and check configuration (.godel/config.toml and the user file)."""


def _daemon_config(ctx: Ctx) -> dict[str, Any] | None:
    """The daemon's config identity (``config.sources``), or None if no daemon runs.
    Never starts one: validating is a read."""
    try:
        identity: dict[str, Any] = blocking.call(ctx.paths, "config.sources")
    except DaemonNotRunning:
        return None
    return identity


def _daemon_line(ctx: Ctx, digest: str, daemon: dict[str, Any] | None) -> str:
    if daemon is None:
        return (
            f"Daemon:    none runs for {ctx.paths.home} (one started from here loads this config)"
        )
    files = describe_files([ConfigFile.from_json(f) for f in daemon["files"]])
    when = f"loaded {daemon['loaded_at']}" if daemon.get("loaded_at") else "loaded at its start"
    if daemon["digest"] == digest:
        return f"Daemon:    runs with the same settings ({files}, {when})"
    return (
        f"Daemon:    runs with another config: {files} (digest {daemon['digest'][:12]}, "
        f"{when}); run `godel config reload` to use this one"
    )


@config.command("validate")
@json_option
@pass_ctx
def config_validate(ctx: Ctx, as_json: bool) -> None:
    """Check the config files that apply here; names the file and key of any problem,
    and says whether the daemon runs with this config."""
    from core.config import load_config
    from core.config.checks import check_usable
    from core.runtimes.registry import known_runtime_names

    try:
        loaded = load_config(known_runtime_names())
        check_usable(loaded)  # what spawn would find wrong, found now
    except GodelError as e:
        if as_json:
            echo_json({"ok": False, "error": e.message, **e.data})
        fail(e.message)
        return
    try:
        daemon = _daemon_config(ctx)
    except GodelError as e:
        fail(f"the config is valid, but the daemon did not say which it uses: {e.message}")
    if as_json:
        echo_json(
            {
                "ok": True,
                **loaded.identity(),
                "daemon": (
                    {"running": False}
                    if daemon is None
                    else {"running": True, "same": daemon["digest"] == loaded.digest, **daemon}
                ),
            }
        )
        return
    files = ", ".join(str(s) for s in loaded.sources) or "no config files (defaults)"
    click.echo(f"Config OK: {files} (digest {loaded.digest[:12]})")
    click.echo(_daemon_line(ctx, loaded.digest, daemon))


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
        result = {"config": loaded.config.model_dump(mode="json"), **loaded.identity()}
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
    """Make the daemon load the config that applies here and apply what changed (audited).

    Settings that can change while running take effect at once; the rest are
    listed as needing a restart (``godel daemon stop``, then any command).
    """
    # The daemon loads what applies here: this directory's project file and this shell's
    # user file ($GODEL_CONFIG), not its own.
    params = {"cwd": str(Path.cwd()), "user_file": str(user_config_path())}
    result = await call(ctx, "config.reload", params)
    if as_json:
        echo_json(result)
        return
    reload = result["reload"]
    digest = result["digest"][:12]
    files = ", ".join(result["sources"]) or "no config files (defaults)"
    if reload["applied"]:
        click.echo(f"Config reloaded from {files} (digest {digest})")
        click.echo(f"  applied now: {', '.join(reload['applied'])}")
    else:
        click.echo(f"Nothing new to apply: {files} (digest {digest})")
    if reload["needs_restart"]:
        click.echo(
            f"  needs a daemon restart: {', '.join(reload['needs_restart'])} "
            "(the old values stay in force until `godel daemon stop`, then any command)"
        )
