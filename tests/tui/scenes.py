"""The console's pictures: the recorded fixture (``fixtures/console.jsonl``, made by
``make_fixture.py``) replayed paused at fixed points, then driven as a user would. The
runs view's scenes replay ``fixtures/do_run.jsonl`` (``make_fixture.py runs``).

Shared by the snapshot tests (``test_snapshots.py``) and ``make screenshots``
(``scripts/screenshots.py``), so the README shows what the tests pin. What makes a
picture the same on every run: a paused replay (ages, attention and rates are on the
recording's clock, which stands still), local time in UTC (the status line), no toasts,
no blinking cursor, and a frame and a summary drawn after the last change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input, Static

from core.paths import GodelPaths
from godel_tui.app import GodelApp
from godel_tui.feed import FeedSink
from godel_tui.panes.agent_log import AgentLogPane
from godel_tui.replay import ReplayFeed
from godel_tui.screens.command_line import CommandLine
from godel_tui.screens.help import HelpScreen
from godel_tui.screens.runs import RunsScreen, RunTable
from godel_tui.widgets.agent_table import AgentTable
from godel_tui.widgets.log_view import LogView

FIXTURE = Path(__file__).parent / "fixtures" / "console.jsonl"
DO_FIXTURE = Path(__file__).parent / "fixtures" / "do_run.jsonl"
SIZE = (228, 40)  # the agents table fits its pane
BUILDER = "shell-000010"  # the named agent with output in the fixture
WITHIN = 30.0  # seconds any one wait may take (a loaded machine: the whole suite beside)

Scene = Callable[[Pilot[None]], Awaitable[None]]


@contextlib.contextmanager
def utc() -> Iterator[None]:
    """Local time is UTC (the status line shows the replay's clock in local time)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def replay_app(fixture: Path = FIXTURE) -> GodelApp:
    """The console replaying the fixture, paused at its start (no daemon, read-only)."""

    def feed(sink: FeedSink) -> ReplayFeed:
        return ReplayFeed(fixture, sink, paused=True)

    # No daemon is asked: the home is only named (and not shown in a replay).
    return GodelApp(GodelPaths.resolve("/nonexistent/godel"), feed=feed)


def playback(app: GodelApp) -> ReplayFeed:
    feed = app.playback
    assert isinstance(feed, ReplayFeed)
    return feed


async def until(pilot: Pilot[None], cond: Callable[[], object], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"the console never showed {what} within {WITHIN:g}s")
        await pilot.pause(0.02)


async def loaded(pilot: Pilot[None]) -> ReplayFeed:
    app = pilot.app
    assert isinstance(app, GodelApp)
    feed = playback(app)
    await until(pilot, lambda: feed.index is not None and app.model.loads, "the fixture")
    return feed


async def play_to(pilot: Pilot[None], pos: int) -> None:
    """Play event by event (as ``.`` does) up to ``pos``: the agent log gets the output."""
    app = pilot.app
    assert isinstance(app, GodelApp)
    feed = await loaded(pilot)
    for _ in range(pos - feed.pos):
        feed.control("step")
    # Applied too: a seek drops the events the app has not applied yet.
    await until(pilot, lambda: feed.pos == pos and not app._pending, f"event {pos} applied")


async def settle(pilot: Pilot[None], pos: int | None = None) -> None:
    """Stand at ``pos`` (default: where it is) with everything drawn for it.

    Going there is a seek even when already there: the sparkline and burn-rate samples
    start over at a seek, so they are the same whatever the playing before took."""
    app = pilot.app
    assert isinstance(app, GodelApp)
    feed = await loaded(pilot)
    target = feed.pos if pos is None else pos
    feed.seek_pos(target)
    await until(pilot, lambda: feed._seek is None and feed.pos == target, f"event {target}")
    await drawn(pilot)


async def drawn(pilot: Pilot[None]) -> None:
    """Until a frame and a summary have been drawn after the last change, then without
    toasts or a blinking cursor."""
    app = pilot.app
    assert isinstance(app, GodelApp)
    feed = playback(app)
    table = app.query_one(AgentTable)
    await until(pilot, lambda: app._snapshot is None and not app._pending, "the events applied")
    after = asyncio.get_running_loop().time()
    await until(
        pilot,
        lambda: app._last_summary > after and table.now == feed.now(),
        "a frame and a summary",
    )
    app.clear_notifications()
    for inp in app.screen.query(Input):
        inp.cursor_blink = False
    await pilot.pause()


def end(app: GodelApp) -> int:
    index = playback(app).index
    assert index is not None
    return len(index)


# --- the scenes ------------------------------------------------------------------------


async def main(pilot: Pilot[None]) -> None:
    """All four panes at the end of the recording, the builder's log filled."""
    app = pilot.app
    assert isinstance(app, GodelApp)
    await loaded(pilot)
    app.query_one(AgentTable).select(BUILDER)
    await until(pilot, lambda: app.query_one(AgentLogPane).agent_id == BUILDER, "its log")
    await play_to(pilot, end(app))
    await settle(pilot)


async def filtered(pilot: Pilot[None]) -> None:
    """``/`` with ``swarm:api,batch`` typed: the agents of two swarms."""
    await main(pilot)
    await pilot.press("slash")
    await pilot.press(*"swarm:api,batch")
    await pilot.press("enter")
    app = pilot.app
    assert isinstance(app, GodelApp)
    await until(pilot, lambda: app.model.filter.text == "swarm:api,batch", "the filter")
    await drawn(pilot)


async def marks(pilot: Pilot[None]) -> None:
    """Two agents marked with space: ctrl+k, x, t and a act on both."""
    await main(pilot)
    app = pilot.app
    assert isinstance(app, GodelApp)
    table = app.query_one(AgentTable)
    for agent in ("shell-000002", "shell-000003"):
        table.select(agent)
        await pilot.press("space")
    await until(pilot, lambda: len(app.model.marked) == 2, "two marks")
    await drawn(pilot)


async def attention(pilot: Pilot[None]) -> None:
    """``!``: to the agent whose process was killed by hand (failed, process_exit)."""
    await main(pilot)
    await pilot.press("exclamation_mark")
    app = pilot.app
    assert isinstance(app, GodelApp)
    table = app.query_one(AgentTable)
    await until(pilot, lambda: table.selected == "shell-000012", "the failed agent")
    await until(pilot, lambda: app.query_one(AgentLogPane).agent_id == "shell-000012", "its log")
    await drawn(pilot)


async def palette(pilot: Pilot[None]) -> None:
    """ctrl+p with ``kill`` typed: the actions and ``:`` commands that match, those that
    change state marked disabled (a replay is read-only)."""
    await main(pilot)
    await pilot.press("ctrl+p")
    app = pilot.app
    assert isinstance(app, GodelApp)
    await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
    await pilot.press(*"kill")
    screen = app.screen
    results = screen.query_one(CommandList)

    def gathered() -> bool:
        busy = any(w.is_running and w.node is screen for w in app.workers)
        return not busy and results.option_count > 0

    await until(pilot, gathered, "the palette's results")
    await drawn(pilot)


async def help_screen(pilot: Pilot[None]) -> None:
    """``?`` in the agents pane."""
    await main(pilot)
    await pilot.press("question_mark")
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
    await drawn(pilot)


async def command_line(pilot: Pilot[None]) -> None:
    """``:`` with a command typed: the line under it says its usage."""
    await main(pilot)
    await pilot.press("colon")
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, CommandLine), "the command line")
    await pilot.press(*"scale api 6")
    hint = app.screen.query_one("#command-hint", Static)
    await until(pilot, lambda: ":scale" in str(hint.render()), "the usage of :scale")
    await drawn(pilot)


async def agent_log(pilot: Pilot[None]) -> None:
    """The log pane focused (``2``), ``compiled`` searched: matches highlighted."""
    await main(pilot)
    await pilot.press("2")
    await pilot.press("slash")
    await pilot.press(*"compiled")
    await pilot.press("enter")
    app = pilot.app
    assert isinstance(app, GodelApp)
    log = app.query_one(LogView)
    await until(pilot, lambda: log.search == "compiled", "the search")
    await drawn(pilot)


async def replay_status(pilot: Pilot[None]) -> None:
    """Half-way through, paused, at twice the speed (``+``): the status line says so."""
    app = pilot.app
    assert isinstance(app, GodelApp)
    await loaded(pilot)
    await settle(pilot, end(app) // 2)
    await pilot.press("plus")
    feed = playback(app)
    await until(pilot, lambda: feed.speed == 2, "x2")
    await drawn(pilot)


async def runs_cue(pilot: Pilot[None]) -> None:
    """The do-run fixture at its end: the attention line says a run is going on and one
    failed, and which key shows them."""
    app = pilot.app
    assert isinstance(app, GodelApp)
    await loaded(pilot)
    await settle(pilot, end(app))


async def runs_view(pilot: Pilot[None]) -> None:
    """``D`` at the end of the do-run fixture: three runs (merged, failed, running), the
    running one's tasks and lines."""
    await runs_cue(pilot)
    await pilot.press("D")
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, RunsScreen), "the runs view")
    table = app.screen.query_one(RunTable)
    await until(pilot, lambda: table.row_count == 3, "three runs")
    await drawn(pilot)


SCENES: dict[str, Scene] = {
    "main": main,
    "filter": filtered,
    "marks": marks,
    "attention": attention,
    "palette": palette,
    "help": help_screen,
    "command-line": command_line,
    "agent-log": agent_log,
    "replay": replay_status,
    "runs-cue": runs_cue,
    "runs": runs_view,
}
FIXTURES: dict[str, Path] = {"runs-cue": DO_FIXTURE, "runs": DO_FIXTURE}  # else FIXTURE


def scene_app(name: str) -> GodelApp:
    """The console a scene starts from: its fixture replayed, paused at its start."""
    return replay_app(FIXTURES.get(name, FIXTURE))
