"""The runs view against a real daemon: a ``godel do`` plan run by the daemon (``do.run``
from another connection, in a real git repository) shows in the console as it goes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from core.api.client import connect
from core.paths import GodelPaths
from godel_tui.screens.runs import RunsScreen, RunTable
from godel_tui.widgets.log_view import LogView
from tests.conftest import Godel
from tests.gitrepo import GIT_ENV, init_repo
from tests.tui.conftest import app_for, until_shown

PLAN = {
    "tasks": [
        {"name": "a", "input": "echo a > a.txt"},
        {"name": "b", "input": "echo b > b.txt", "depends_on": ["a"]},
    ]
}


def git_repo(godel: Godel) -> Path:
    """The project directory as a git repository with one commit."""
    godel.env.update(GIT_ENV)  # the daemon (started with this env) commits too
    return init_repo(godel.cwd, {})


def cell_texts(table: DataTable[Any], row: int) -> list[str]:
    return [c.plain if isinstance(c, Text) else str(c) for c in table.get_row_at(row)]


async def test_a_do_run_shows_live_until_merged(godel: Godel) -> None:
    repo = git_repo(godel)
    godel.run("daemon", "start", check=True)
    app = app_for(godel)
    async with app.run_test(size=(200, 45)) as pilot:
        await until_shown(pilot, lambda: app._state.connected, "live")
        client = await connect(GodelPaths.resolve(godel.home), autostart=False)
        params = {
            "intent": "two files",
            "repo": str(repo),
            "plan": PLAN,
            "agents": 1,
            "strategy": "careful",
            "runtime": "shell",
            "gate": "true",
        }
        run = asyncio.create_task(client.call("do.run", params, on_stream=_ignore))
        try:
            await pilot.press("D")
            await until_shown(pilot, lambda: isinstance(app.screen, RunsScreen), "the runs view")
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            runs = screen.query_one(RunTable)
            tasks = screen.query_one("#run-tasks", DataTable)

            def merged() -> bool:
                if runs.row_count != 1 or tasks.row_count != 2:
                    return False
                row = cell_texts(runs, 0)
                states = [cell_texts(tasks, i)[3] for i in range(2)]
                return row[0] == "✓ merged" and row[4] == "2/2" and states == ["✓ merged"] * 2

            await until_shown(pilot, merged, "the run merged, both tasks merged", within=60)
            report = await run
            row = cell_texts(runs, 0)
            assert row[1] == report["run"] and row[2] == "two files" and row[6] == "0"
            assert [cell_texts(tasks, i)[1] for i in range(2)] == ["a", "b"]
            log = screen.query_one(LogView)
            assert any("b: merged at" in text for text, _ in log.lines)
            # Back to the agents: the cue says what the run did only while it runs.
            await pilot.press("escape")
            await until_shown(pilot, lambda: not isinstance(app.screen, RunsScreen), "the agents")
        finally:
            if not run.done():
                run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await client.close()
        assert (repo / "a.txt").exists() and (repo / "b.txt").exists()


async def test_the_cue_and_the_runs_command(godel: Godel) -> None:
    """While a run goes on the attention line says so; ``:runs`` opens the view."""
    repo = git_repo(godel)
    godel.run("daemon", "start", check=True)
    app = app_for(godel)
    async with app.run_test(size=(200, 45)) as pilot:
        await until_shown(pilot, lambda: app._state.connected, "live")
        client = await connect(GodelPaths.resolve(godel.home), autostart=False)
        # A task that waits for a file the test writes: the run stays running meanwhile.
        gate = repo.parent / "go"
        plan = {
            "tasks": [
                {
                    "name": "wait",
                    "input": f"while [ ! -e {gate} ]; do sleep 0.05; done; echo w > w.txt",
                }
            ]
        }
        params = {"intent": "wait", "repo": str(repo), "plan": plan, "runtime": "shell"}
        run = asyncio.create_task(client.call("do.run", params, on_stream=_ignore))
        try:
            cue = "0/1 merged  (D shows runs)"
            await until_shown(
                pilot, lambda: cue in app._summary_text.get("#attention", ""), "the cue"
            )
            await pilot.press("colon")
            await pilot.press(*"runs", "enter")
            await until_shown(pilot, lambda: isinstance(app.screen, RunsScreen), "the runs view")
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            runs = screen.query_one(RunTable)
            await until_shown(
                pilot,
                lambda: runs.row_count == 1 and cell_texts(runs, 0)[0] == "● running",
                "the run running",
            )
            gate.touch()
            await until_shown(
                pilot, lambda: cell_texts(runs, 0)[0] == "✓ merged", "the run merged", within=60
            )
            await run
            await pilot.press("D")
            await until_shown(pilot, lambda: not isinstance(app.screen, RunsScreen), "the agents")
            await until_shown(
                pilot,
                lambda: "do run" not in app._summary_text.get("#attention", ""),
                "no cue once it merged",
            )
        finally:
            gate.touch()
            if not run.done():
                run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await client.close()


async def _ignore(_: object) -> None:
    return None
