"""The console as a user drives it, against a real daemon with real shell agents."""

from __future__ import annotations

import json

from core.models import AgentStatus
from godel_tui.widgets.agent_table import AgentTable
from godel_tui.widgets.log_view import LogView
from tests.conftest import Godel
from tests.tui.conftest import app_for, until_shown


def spawn(godel: Godel, n: int) -> list[str]:
    out = []
    for _ in range(n):
        r = godel.run("agent", "spawn", "--runtime", "shell", "--json", check=True)
        out.append(json.loads(r.stdout)["id"])
    return out


async def test_agents_appear_and_marked_ones_are_killed(godel: Godel) -> None:
    ids = spawn(godel, 3)
    app = app_for(godel)
    async with app.run_test(size=(180, 40)) as pilot:
        model = app.model
        await until_shown(pilot, lambda: set(ids) <= set(model.order()), "three agents")
        table = app.query_one(AgentTable)
        table.select(ids[0])
        await pilot.press("space")
        table.select(ids[1])
        await pilot.press("space")
        assert model.marked == {ids[0], ids[1]}
        await pilot.press("ctrl+k")
        await until_shown(
            pilot,
            lambda: all(model.agent(a).status is AgentStatus.STOPPED for a in ids[:2]),  # type: ignore[union-attr]
            "two agents stopped",
        )
        assert model.agent(ids[2]).status is AgentStatus.IDLE  # type: ignore[union-attr]


async def test_exec_output_reaches_the_agent_log(godel: Godel) -> None:
    [agent] = spawn(godel, 1)
    app = app_for(godel)
    async with app.run_test(size=(180, 40)) as pilot:
        await until_shown(pilot, lambda: agent in app.model.order(), "the agent")
        app.query_one(AgentTable).select(agent)
        godel.run("agent", "exec", agent, "echo hello-from-the-log", check=True)
        log = app.query_one(LogView)
        await until_shown(
            pilot, lambda: any("hello-from-the-log" in t for t, _ in log.lines), "the output"
        )


async def test_read_only_refuses_to_kill(godel: Godel) -> None:
    [agent] = spawn(godel, 1)
    app = app_for(godel, read_only=True)
    async with app.run_test(size=(180, 40)) as pilot:
        await until_shown(pilot, lambda: agent in app.model.order(), "the agent")
        await pilot.press("ctrl+k")
        await pilot.pause()
        assert app.model.agent(agent).status is AgentStatus.IDLE  # type: ignore[union-attr]
        assert any("read-only" in n.message for n in app._notifications)


async def test_restart_from_the_console_replaces_the_agent(godel: Godel) -> None:
    [agent] = spawn(godel, 1)
    app = app_for(godel)
    async with app.run_test(size=(180, 40)) as pilot:
        model = app.model
        await until_shown(pilot, lambda: agent in model.order(), "the agent")
        app.query_one(AgentTable).select(agent)
        await pilot.press("R")
        await until_shown(
            pilot,
            lambda: (
                model.agent(agent).status is AgentStatus.STOPPED  # type: ignore[union-attr]
                and len([a for a in model.views.agents.values() if not a.status.is_terminal]) == 1
            ),
            "the agent stopped and a new one live",
        )


async def test_the_demo_plays_in_the_console(godel: Godel) -> None:
    from core.cli.demo import prepare
    from core.paths import GodelPaths
    from godel_tui.demo import DemoApp
    from godel_tui.screens.runs import RunsScreen

    paths = GodelPaths.resolve(godel.home)
    app = DemoApp(paths, await prepare(paths, lambda _line: None))
    async with app.run_test(size=(180, 40)) as pilot:
        await until_shown(
            pilot,
            lambda: any("demo finished" in n.message for n in app._notifications),
            "the demo's end",
            within=120,
        )
        assert app.result == 0
        # The godel do run reaches the console as do.* events: merged, three tasks.
        await until_shown(
            pilot,
            lambda: any(
                r.state == "merged" and [t.state for t in r.tasks] == ["merged"] * 3
                for r in app.model.views.runs.values()
            ),
            "the demo's run merged in the console's view",
        )
        assert isinstance(app.screen, RunsScreen)  # opened as the run started
        runtimes = {a.runtime for a in app.model.views.agents.values()}
        assert runtimes == {"shell", "native", "pi"}
    assert (godel.home / "demo.rec").stat().st_size > 0
