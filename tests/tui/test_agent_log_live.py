"""The agent-log pane against a real daemon: shell and native (scripted model) agents
spawned with the real CLI, the console driven with Pilot."""

from __future__ import annotations

import json
import re
import subprocess

from textual.widgets import Input

from core.models import AgentStatus
from godel_tui.app import GodelApp, PromptScreen
from godel_tui.panes.agent_log import AgentLogPane
from godel_tui.widgets.agent_table import AgentTable
from godel_tui.widgets.log_view import LogView
from tests.conftest import Godel
from tests.tui.conftest import app_for, until_shown


def spawn(godel: Godel, runtime: str = "shell", *extra: str) -> str:
    r = godel.run("agent", "spawn", "--runtime", runtime, *extra, "--json", check=True, timeout=120)
    return str(json.loads(r.stdout)["id"])


def texts(log: LogView) -> list[str]:
    return [t for t, _ in log.lines]


def has(log: LogView, text: str) -> bool:
    return any(text in t for t in texts(log))


async def select(pilot: object, app: GodelApp, agent: str) -> None:
    await until_shown(pilot, lambda: agent in app.model.order(), f"agent {agent}")  # type: ignore[arg-type]
    assert app.query_one(AgentTable).select(agent)
    await until_shown(
        pilot,  # type: ignore[arg-type]
        lambda: (
            app.query_one(AgentLogPane).agent_id == agent
            and app.query_one(AgentLogPane).state == "live"
        ),
        "the stored log read",
    )


async def test_stderr_is_red_and_stdout_plain(godel: Godel) -> None:
    agent = spawn(godel)
    app = app_for(godel)
    async with app.run_test(size=(180, 40)) as pilot:
        await select(pilot, app, agent)
        godel.run("agent", "exec", agent, "echo out-line; echo err-line >&2", check=True)
        log = app.query_one(LogView)
        await until_shown(pilot, lambda: ("err-line", "red") in log.lines, "stderr in red")
        assert ("out-line", "") in log.lines
        await until_shown(pilot, lambda: has(log, "succeeded"), "the exec's end line")


async def test_native_agent_shows_its_tool_call_result_and_usage_once(godel: Godel) -> None:
    agent = spawn(godel, "native", "--model", "scripted")
    godel.run("agent", "exec", agent, "run: echo earlier", check=True)  # history
    app = app_for(godel)
    async with app.run_test(size=(180, 40)) as pilot:
        await select(pilot, app, agent)
        log = app.query_one(LogView)
        assert "→ tool bash: echo earlier" in texts(log)  # stored: shown from agent.logs
        godel.run("agent", "exec", agent, "run: echo hi-from-bash", check=True)
        await until_shown(
            pilot, lambda: has(log, "succeeded") and len(_ends(log)) == 1, "the exec's end"
        )
        lines = texts(log)
        call = lines.index("→ tool bash: echo hi-from-bash")
        assert lines[call + 1] == "← result bash (1 line)"
        assert lines[call + 2] == "  │ hi-from-bash"
        assert any(re.match(r"· tokens \d+ in / \d+ out, \$\d", t) for t in lines[call:])
        # Stored log and events together: every line once.
        assert lines.count("→ tool bash: echo hi-from-bash") == 1
        assert lines.count("← result bash (1 line)") == 2  # one per exec
        assert lines[-1].startswith("■ exec") and "succeeded" in lines[-1]


def _ends(log: LogView) -> list[str]:
    return [t for t in texts(log) if t.startswith("■ exec")]


async def test_search_highlights_and_steps_through_matches(godel: Godel) -> None:
    agent = spawn(godel)
    godel.run(
        "agent",
        "exec",
        agent,
        "seq 1 200; echo first-needle; seq 1 200; echo second-needle; seq 1 50",
        check=True,
    )
    app = app_for(godel)
    async with app.run_test(size=(180, 40)) as pilot:
        await select(pilot, app, agent)
        log = app.query_one(LogView)
        await until_shown(pilot, lambda: has(log, "second-needle"), "the output")
        # `/` in the agents pane filters the agents...
        await pilot.press("1", "slash")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("escape")
        # ... and searches in the log pane.
        await pilot.press("2", "slash")
        bar = app.query_one("#log-search", Input)
        assert bar.has_focus
        bar.value = "NEEDLE"
        await pilot.press("enter")
        assert log.current is not None and not log.follow  # a match pauses the log
        assert "second-needle" in log.lines[log.current - log.dropped][0]  # newest first
        await pilot.pause()
        row = log.current - log.dropped + log.top - int(log.scroll_offset.y)
        hit = [s for s in list(log.render_line(row)) if s.text.lower() == "needle"]
        assert hit and hit[0].style is not None and hit[0].style.bgcolor is not None
        await pilot.press("N")
        assert "first-needle" in log.lines[log.current - log.dropped][0]
        await pilot.press("n")
        assert "second-needle" in log.lines[log.current - log.dropped][0]
        await pilot.press("n")  # wraps around
        assert "first-needle" in log.lines[log.current - log.dropped][0]
        await pilot.press("slash")
        app.query_one("#log-search", Input).value = "no-such-text"
        await pilot.press("enter")
        assert any("no line matches" in n.message for n in app._notifications)


async def test_switching_agents_mid_stream_shows_only_the_selected_agent(godel: Godel) -> None:
    loud, quiet = spawn(godel), spawn(godel)
    godel.run("agent", "exec", quiet, "echo bravo-stored", check=True)
    proc = run_in_background(
        godel, loud, "i=0; while :; do i=$((i+1)); echo alpha-$i; sleep 0.005; done"
    )
    app = app_for(godel)
    try:
        async with app.run_test(size=(180, 40)) as pilot:
            log = app.query_one(LogView)
            await select(pilot, app, loud)
            await until_shown(pilot, lambda: has(log, "alpha-50"), "the loud agent's output")
            await select(pilot, app, quiet)
            assert has(log, "bravo-stored")
            godel.run("agent", "exec", quiet, "echo bravo-live", check=True)
            await until_shown(pilot, lambda: has(log, "bravo-live"), "the quiet agent's output")
            assert not any("alpha" in t for t in texts(log))
            # Back to the loud one, mid-stream: its stored part then live output, every
            # line once and none missing where the two meet.
            await select(pilot, app, loud)
            seen = _alphas(log)
            await until_shown(
                pilot, lambda: len(_alphas(log)) > len(seen) + 100, "more live output"
            )
            numbers = _alphas(log)
            assert numbers == list(range(1, len(numbers) + 1))
            assert not any("bravo" in t for t in texts(log))
    finally:
        godel.run("agent", "kill", loud)
        proc.wait(timeout=60)


def run_in_background(godel: Godel, agent: str, command: str) -> subprocess.Popen[bytes]:
    """``godel agent exec`` left running (its output is read from the log, not here)."""
    return subprocess.Popen(
        godel.cmd("agent", "exec", agent, command),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=godel.cwd,
        env=godel.env,
    )


def _alphas(log: LogView) -> list[int]:
    return [int(t[6:]) for t in texts(log) if re.fullmatch(r"alpha-\d+", t)]


async def test_prompt_steer_and_abort_from_the_pane(godel: Godel) -> None:
    agent = spawn(godel, "native", "--model", "scripted")
    app = app_for(godel)
    async with app.run_test(size=(180, 40)) as pilot:
        await select(pilot, app, agent)
        log = app.query_one(LogView)
        await pilot.press("2", "x")
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one(Input).value = "run: echo from-the-pane"
        await pilot.press("enter")
        await until_shown(pilot, lambda: has(log, "→ tool bash: echo from-the-pane"), "the call")
        await until_shown(pilot, lambda: len(_ends(log)) == 1, "the first exec's end")
        # A slow answer (a word every 0.2 s): steer it, then abort it.
        await pilot.press("x")
        app.screen.query_one(Input).value = "slow: " + " ".join(f"w{i}" for i in range(200))
        await pilot.press("enter")
        await until_shown(
            pilot,
            lambda: app.model.agent(agent).status is AgentStatus.BUSY,  # type: ignore[union-attr]
            "the agent busy",
        )
        await pilot.press("t")
        app.screen.query_one(Input).value = "keep it short"
        await pilot.press("enter")
        await until_shown(
            pilot,
            lambda: any("steered" in n.message for n in app._notifications),
            "the steer delivered",
        )
        await pilot.press("a")
        await until_shown(
            pilot, lambda: any("aborted" in t for t in _ends(log)), "the exec aborted"
        )


async def test_read_only_refuses_to_prompt_from_the_pane(godel: Godel) -> None:
    agent = spawn(godel)
    app = app_for(godel, read_only=True)
    async with app.run_test(size=(180, 40)) as pilot:
        await select(pilot, app, agent)
        await pilot.press("2", "x")
        await pilot.pause()
        assert not isinstance(app.screen, PromptScreen)
        assert any("read-only" in n.message for n in app._notifications)
