"""``:`` commands, the palette and ``?`` as a user drives them, against a real daemon:
what they ask for is checked in what the console then receives, or with the real CLI."""

from __future__ import annotations

import json
from typing import Any

from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input

from core.models import AgentStatus
from godel_tui.app import GodelApp
from godel_tui.render import agent_label
from godel_tui.screens.command_line import CommandLine
from godel_tui.screens.help import HelpScreen
from godel_tui.widgets.agent_table import AgentTable
from tests.conftest import Godel
from tests.tui.conftest import app_for, until_shown
from tests.tui.test_console_live import spawn

SIZE = (180, 40)


def notes(app: GodelApp) -> list[str]:
    """Every notification the app shows from now on (a shown one expires)."""
    said: list[str] = []
    notify = app.notify

    def record(message: str, **kwargs: Any) -> None:
        said.append(message)
        notify(message, **kwargs)

    app.notify = record  # type: ignore[method-assign]
    return said


def connected(app: GodelApp) -> bool:
    return app._state.connected


async def command(pilot: Pilot[None], app: GodelApp, line: str) -> None:
    """Open the command line with ``:``, type ``line`` as keys, run it with Enter."""
    await pilot.press("colon")
    await until_shown(pilot, lambda: isinstance(app.screen, CommandLine), "the command line")
    await pilot.press(*line)
    await pilot.press("enter")
    await until_shown(pilot, lambda: not isinstance(app.screen, CommandLine), "the line run")


async def test_spawn_two_agents_from_the_command_line(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    app = app_for(godel)
    said = notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until_shown(pilot, lambda: connected(app), "a connection")
        await command(pilot, app, "spawn shell 2")
        await until_shown(
            pilot,
            lambda: sum(a.runtime == "shell" for a in app.model.views.agents.values()) == 2,
            "two shell agents",
        )
        await until_shown(
            pilot, lambda: sum("spawned shell agent" in m for m in said) == 2, "two notes"
        )
        first = app.model.order()[0]
        app.query_one(AgentTable).select(first)
        await command(pilot, app, "exec echo hi-from-the-command-line")
        await until_shown(
            pilot, lambda: f"exec on {first}: succeeded (exit 0)" in said, "the exec's result"
        )
    listed = json.loads(godel.run("agent", "list", "--json", check=True).stdout)
    assert len(listed) == 2


async def test_scale_and_submit_reach_the_daemon(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    app = app_for(godel)
    said = notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until_shown(pilot, lambda: connected(app), "a connection")
        await command(pilot, app, "spawn shell 2 --swarm api")  # creates the swarm
        await until_shown(pilot, lambda: any("created swarm api" in m for m in said), "the swarm")
        await command(pilot, app, "scale api 1")

        def live_in_api() -> int:
            agents = app.model.views.agents.values()
            return sum(a.swarm == "api" and not a.status.is_terminal for a in agents)

        await until_shown(pilot, lambda: live_in_api() == 1, "one agent left in the swarm")
        assert app.model.views.swarms["api"].desired == 1
        await command(pilot, app, "submit echo from-the-console --swarm api --priority high")
        await until_shown(pilot, lambda: any("queued task" in m for m in said), "the task queued")
    tasks = json.loads(godel.run("task", "list", "--json", check=True).stdout)
    assert [(t["input"], t["swarm"], t["priority"]) for t in tasks] == [
        ("echo from-the-console", "api", "high")
    ]


async def test_the_palette_kills_the_selected_agent(godel: Godel) -> None:
    [agent, other] = spawn(godel, 2)
    app = app_for(godel)
    async with app.run_test(size=SIZE) as pilot:
        await until_shown(pilot, lambda: {agent, other} <= set(app.model.order()), "the agents")
        assert app.query_one(AgentTable).select(agent)
        await pilot.press("ctrl+p")
        await until_shown(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"kill")
        options = app.screen.query_one(CommandList)
        label = agent_label(app.model.agent(agent))  # type: ignore[arg-type]

        def kill_option() -> int | None:
            prompts = [
                str(options.get_option_at_index(i).prompt) for i in range(options.option_count)
            ]
            return next((i for i, p in enumerate(prompts) if p.startswith(f"Kill {label}")), None)

        await until_shown(pilot, lambda: kill_option() is not None, "Kill in the palette")
        options.highlighted = kill_option()  # as the arrow keys would
        await pilot.press("enter")
        await until_shown(
            pilot,
            lambda: app.model.agent(agent).status is AgentStatus.STOPPED,  # type: ignore[union-attr]
            "the agent stopped",
        )
        assert app.model.agent(other).status is AgentStatus.IDLE  # type: ignore[union-attr]


async def test_help_shows_the_keys_as_bound_and_the_filter_grammar(godel: Godel) -> None:
    [agent] = spawn(godel, 1)
    app = app_for(godel, keymap={"agent.kill": "K", "agent.kil": "Z"})
    said = notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until_shown(pilot, lambda: agent in app.model.order(), "the agent")
        # An id naming no action is said once, with the valid ones.
        assert any("no action 'agent.kil'" in m and "agent.kill" in m for m in said)
        await pilot.press("question_mark")
        await until_shown(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        text = app.screen.text  # type: ignore[attr-defined]
        assert "Keys: agents pane" in text
        assert "K  Kill the marked agents" in text
        assert "status:busy runtime:pi !swarm:api" in text
        assert ":scale SWARM N" in text
        await pilot.press("escape")
        await until_shown(pilot, lambda: not isinstance(app.screen, HelpScreen), "help closed")
        # The rebound key kills; the default one no longer does.
        app.query_one(AgentTable).select(agent)
        await pilot.press("K")
        await until_shown(
            pilot,
            lambda: app.model.agent(agent).status is AgentStatus.STOPPED,  # type: ignore[union-attr]
            "the agent killed by K",
        )


async def test_bad_commands_are_notifications_not_crashes(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    app = app_for(godel)
    said = notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until_shown(pilot, lambda: connected(app), "a connection")
        await command(pilot, app, "spwn shell")
        await command(pilot, app, "kill")  # nothing selected
        await command(pilot, app, "scale nosuch 2")  # the daemon refuses
        await command(pilot, app, "strategy nosuch nosuch")
        await until_shown(pilot, lambda: len(said) >= 4, "four notifications")
        assert any("unknown command 'spwn' (did you mean spawn?)" in m for m in said)
        assert any("no agent marked or selected" in m for m in said)
        assert all("\n" not in m and "Traceback" not in m for m in said)
        assert app.is_running


async def test_tab_completes_and_up_recalls(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    app = app_for(godel)
    async with app.run_test(size=SIZE) as pilot:
        await until_shown(pilot, lambda: connected(app), "a connection")
        await command(pilot, app, "sort cost")
        assert app.model.sort_key == "cost"
        await pilot.press("colon")
        await until_shown(pilot, lambda: isinstance(app.screen, CommandLine), "the command line")
        box = app.screen.query_one(Input)
        await pilot.press("s", "p", "tab")
        assert box.value == "spawn "
        await until_shown(pilot, lambda: bool(app.commands.names().get("runtime")), "runtimes")
        await pilot.press("s", "h", "tab")
        assert box.value == "spawn shell "
        await pilot.press("up")
        assert box.value == "sort cost"
        await pilot.press("escape")
        await until_shown(pilot, lambda: not isinstance(app.screen, CommandLine), "closed")


async def test_read_only_refuses_state_changing_commands(godel: Godel) -> None:
    [agent] = spawn(godel, 1)
    app = app_for(godel, read_only=True)
    said = notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await until_shown(pilot, lambda: agent in app.model.order(), "the agent")
        for line in ("spawn shell", "kill", "exec ls", "scale api 1", "submit ls"):
            await command(pilot, app, line)
        await command(pilot, app, "filter status:idle")  # reading is still allowed
        refused = [m for m in said if m.startswith("read-only console:")]
        assert len(refused) == 5
        assert app.model.filter.text == "status:idle"
        assert app.model.agent(agent).status is AgentStatus.IDLE  # type: ignore[union-attr]


async def test_the_palette_spawns_an_agent_that_appears(godel: Godel) -> None:
    app = app_for(godel)
    async with app.run_test(size=SIZE) as pilot:
        await until_shown(pilot, lambda: app._state.connected, "the console live")
        await pilot.press("ctrl+p")
        await until_shown(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*["space" if c == " " else c for c in "spawn shell"])
        options = app.screen.query_one(CommandList)

        def run_option() -> int | None:
            prompts = [
                str(options.get_option_at_index(i).prompt) for i in range(options.option_count)
            ]
            return next((i for i, p in enumerate(prompts) if "Run :spawn shell" in p), None)

        await until_shown(pilot, lambda: run_option() is not None, "Run :spawn shell")
        options.highlighted = run_option()
        await pilot.press("enter")
        await until_shown(
            pilot,
            lambda: any(
                a.runtime == "shell" and a.status is AgentStatus.IDLE
                for a in app.model.views.agents.values()
            ),
            "a new shell agent, idle",
        )
