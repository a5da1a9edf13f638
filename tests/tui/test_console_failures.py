"""What the console shows when things break, against a real daemon: an agent's process
killed by hand, and the daemon itself stopped and started while the console runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal

from core.models import AgentStatus, StatusSource
from godel_tui.widgets.agent_table import AgentTable
from tests.conftest import Godel
from tests.tui.conftest import app_for, until_shown
from tests.tui.test_console_live import spawn


def shown(app: object, selector: str) -> str:
    return str(app.query_one(selector).render())  # type: ignore[attr-defined]


async def test_an_agent_killed_by_hand_fails_from_process_exit_and_needs_you(
    godel: Godel,
) -> None:
    victim, other = spawn(godel, 2)
    pid = json.loads(godel.run("agent", "get", victim, "--json", check=True).stdout)["pid"]
    app = app_for(godel)
    async with app.run_test(size=(200, 40)) as pilot:
        model = app.model
        await until_shown(pilot, lambda: {victim, other} <= set(model.order()), "both agents")
        assert shown(app, "#attention") == "nothing needs you"
        os.kill(int(pid), signal.SIGKILL)  # not through Godel: the process just dies

        def failed() -> bool:
            a = model.agent(victim)
            return a is not None and a.status is AgentStatus.FAILED

        await until_shown(pilot, failed, "the agent failed")
        cell = model.agent(victim)
        assert cell is not None and cell.status_source is StatusSource.PROCESS_EXIT
        await until_shown(
            pilot, lambda: "lost or failed agent" in shown(app, "#attention"), "attention"
        )
        assert model.attention().agents == [victim]
        # Ended rows are hidden; ! jumps to it all the same, and its row says why.
        await pilot.press("exclamation_mark")
        table = app.query_one(AgentTable)
        await until_shown(pilot, lambda: table.selected == victim, "the jump to it")
        row = table._row(victim).text
        assert "failed" in row and "process_exit" in row, row
        assert model.agent(other).status is AgentStatus.IDLE  # type: ignore[union-attr]


async def test_the_console_survives_a_daemon_restart(godel: Godel) -> None:
    godel.run("swarm", "create", "api", "--runtime", "shell", "--count", "2", check=True)
    old = [a for a in _agents(godel) if a["swarm"] == "api"]
    assert len(old) == 2
    app = app_for(godel)
    async with app.run_test(size=(200, 40)) as pilot:
        model = app.model
        ids = {a["id"] for a in old}
        await until_shown(pilot, lambda: ids <= set(model.views.agents), "the swarm")
        await asyncio.to_thread(godel.run, "daemon", "stop", check=True)
        await until_shown(
            pilot, lambda: "lost the daemon" in shown(app, "#status"), "the daemon gone", 30
        )
        await asyncio.to_thread(godel.run, "daemon", "start", check=True)
        await until_shown(
            pilot,
            lambda: "reconnected; resynced from a snapshot" in shown(app, "#status"),
            "that it reconnected and resynced",
            30,
        )
        assert any("resynced" in n.message for n in app._notifications)

        def restarted() -> bool:
            # The old agents stopped with the daemon; it refilled the swarm with new ones.
            cells = model.views.agents.values()
            stopped = all(model.agent(a).status is AgentStatus.STOPPED for a in ids)  # type: ignore[union-attr]
            new = [c for c in cells if c.swarm == "api" and c.id not in ids]
            return stopped and len(new) == 2 and all(c.status is AgentStatus.IDLE for c in new)

        await until_shown(pilot, restarted, "the old agents stopped, the new ones idle", 30)
        live = {a["id"]: a["status"] for a in _agents(godel)}
        assert {a: live[a] for a in ids} == {a: "stopped" for a in ids}


def _agents(godel: Godel) -> list[dict[str, str]]:
    r = godel.run("agent", "list", "--all", "--json", check=True)
    return list(json.loads(r.stdout))
