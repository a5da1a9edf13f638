"""``godel tui``: the console's command (loaded by name from ``core.cli.main``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from core.cli.common import Ctx, fail, pass_ctx
from core.errors import GodelError


@click.command("tui")
@click.option("--read-only", is_flag=True, help="Disable every action that changes state.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write what the console receives to FILE (replay it with `godel replay FILE`).",
)
@click.option("--serve", is_flag=True, help="Serve the console to a web browser instead.")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where --serve listens (default 127.0.0.1:8566; port 0: any free one).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Let --serve listen beyond this machine (the page has no authentication).",
)
@pass_ctx
def tui(
    ctx: Ctx,
    read_only: bool,
    record: Path | None,
    serve: bool,
    listen: str | None,
    allow_remote: bool,
) -> None:
    """The console: watch and steer the swarm live (starts the daemon if needed).

    \b
    Keys: / filter, space mark, ctrl+k kill, x exec, t steer, ! next agent that needs
    you, s sort, : command, ctrl+p palette, ? help, q quit (agents keep running).
    Rebind keys in the config's [tui] keymap (action id = "keys").
    """
    if serve:
        _serve(ctx, read_only, record, listen, allow_remote)
        return
    if listen is not None or allow_remote:
        fail("--listen and --allow-remote go with --serve", 2)
    if not sys.stdout.isatty() and not _web_driver():
        fail("the console needs a terminal; use `godel agent list` or `godel events --follow`", 2)
    try:
        from godel_tui.app import GodelApp
    except ImportError as e:  # pragma: no cover - textual is a dependency
        fail(f"the console cannot load ({e}); run `make setup`")
    if record is not None and not record.parent.is_dir():
        fail(f"--record: directory {record.parent} does not exist", 2)
    from core.config import load_tui_settings

    try:
        # The [tui] section of the files that apply here, as the CLI finds them.
        settings = load_tui_settings()
    except GodelError as e:
        fail(e.message)
    GodelApp(ctx.paths, read_only=read_only, record=record, keymap=settings.keymap).run()


def _web_driver() -> bool:
    """Run by textual-serve (``--serve``): the app talks to a browser, not a terminal."""
    return os.environ.get("TEXTUAL_DRIVER", "").startswith("textual.drivers.web_driver")


def _serve(
    ctx: Ctx, read_only: bool, record: Path | None, listen: str | None, allow_remote: bool
) -> None:
    if record is not None:
        fail("--record cannot go with --serve (each browser tab is a console of its own)", 2)
    from godel_tui.serve import DEFAULT_LISTEN, ServeError, serve

    try:
        serve(ctx.paths, listen or DEFAULT_LISTEN, read_only=read_only, allow_remote=allow_remote)
    except ServeError as e:
        fail(str(e), 2)
    except OSError as e:  # the port is taken, the address is not this machine's
        fail(f"cannot listen on {listen or DEFAULT_LISTEN}: {e.strerror or e}")


@click.command("replay")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="How fast to play: 2 is twice as fast, 0 as fast as it can.",
)
@click.option("--paused", is_flag=True, help="Start paused (p plays, . steps).")
@pass_ctx
def replay(ctx: Ctx, file: Path, speed: float, paused: bool) -> None:
    """Play a recording in the console: what `godel tui --record FILE` received, or a
    daemon's events.jsonl. Read-only; no daemon is needed.

    \b
    Keys: p pause or resume, . step, , step back, [ ] 10 s back or forward,
    < > start or end, + - faster or slower, ? help, q quit.
    """
    from godel_tui.replay import RecordingError, ReplayFeed, check_recording

    try:
        check_recording(file)
    except RecordingError as e:
        fail(str(e), 2)
    if not sys.stdout.isatty() and not _web_driver():
        fail("the replay needs a terminal; `godel events --file FILE` prints a recording", 2)
    from core.config import load_tui_settings
    from godel_tui.app import GodelApp

    try:
        settings = load_tui_settings()
    except GodelError as e:
        fail(e.message)
    GodelApp(
        ctx.paths,
        keymap=settings.keymap,
        feed=lambda sink: ReplayFeed(file, sink, speed=speed, paused=paused),
    ).run()
