"""Budgets against running work: a real pi agent stopped at its turn boundary when a
dollar budget runs out mid-exec, and tasks held at 90 % that do not block the tasks of
other scopes queued behind them."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from core.engine import Engine
from core.errors import BudgetExhausted
from core.events import BudgetThreshold, TaskChanged
from core.llm.scripted import ScriptedServer
from core.llm.scripted.script import Match as Rule_Match
from core.llm.scripted.script import Reply, Rule, Script, ToolCallReply, UsageSpec
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    ExecResult,
    ExecStatus,
    RuntimeEvent,
    StatusSource,
    TaskStatus,
    ToolCallFinished,
    TurnUsage,
    Usage,
    utcnow,
)
from core.runtimes.base import Capability
from tests.engine.conftest import MakeEngine, Match, make_swarm, next_event, submit, subscribe
from tests.integration.test_conformance import pi_available

KEY_ENV = "GODEL_PRICED_KEY"
TURN_TOKENS = 20_000  # input tokens each scripted turn reports: $0.02 at $1 per million


def _bash(command: str) -> Reply:
    return Reply(
        tool_calls=[ToolCallReply(name="bash", arguments={"command": command})],
        usage=UsageSpec(input_tokens=TURN_TOKENS, output_tokens=100),
    )


# Three model calls if nothing stops pi: bash, bash again, then the answer.
THREE_TURNS = Script(
    rules=[
        Rule(
            match=Rule_Match(tool_name="bash", tool_result_regex="^turn-two"),
            reply=Reply(text="all done", usage=UsageSpec(input_tokens=TURN_TOKENS)),
        ),
        Rule(match=Rule_Match(tool_name="bash"), reply=_bash("echo turn-two")),
        Rule(match=Rule_Match(last="user"), reply=_bash("echo turn-one")),
    ]
)


async def _spend(engine: Engine, scope: str = "project", unit: str = "usd") -> tuple[str, str]:
    for b in await engine.show_budgets():
        if b.scope == scope and b.unit == unit:
            return str(b.spent), str(b.reserved)
    raise AssertionError(f"no budget {scope}")


async def test_a_pi_agent_stops_at_the_turn_boundary(
    make_engine: MakeEngine, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """$0.01 left and a first turn costing $0.02: pi's tool runs, its next model call is
    stopped (aborted if already under way), the exec fails with "budget exhausted", and
    the budget is charged pi's own cost report: at most one turn past the refusal."""
    if not pi_available():
        if os.environ.get("CI"):
            pytest.fail("the pi binary is not installed (run `make setup`)")
        pytest.skip("the pi binary is not installed (run `make setup`)")
    scripted_server.use_script(THREE_TURNS)
    engine = await make_engine(
        providers={
            "priced": {
                "kind": "openai",
                "base_url": scripted_server.base_url + "/v1",
                "api_key_env": KEY_ENV,
            }
        },
        models={
            "priced": {
                "provider": "priced",
                "id": "scripted",
                "input_per_mtok": "1",
                "output_per_mtok": "2",
                "context_window": 32000,
            }
        },
    )
    engine.s.budgets.estimate = Usage(input_tokens=10)  # $0.00001: the exec may start
    await engine.set_budget("project", Decimal("0.01"), unit="usd", period="none", actor="t")
    sub = subscribe(engine, "t", "budget.threshold")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    agent = await engine.spawn_agent(
        AgentSpec(runtime="pi", model="priced", workdir=workspace), "test", keys={KEY_ENV: "k"}
    )

    events: list[RuntimeEvent] = []
    async for ev in engine.exec(agent.id, "go", actor="test"):
        events.append(ev)
    final = events[-1]
    assert isinstance(final, ExecResult)
    assert final.status is ExecStatus.FAILED, final
    assert final.reason.startswith(
        "budget exhausted: project at $0.02 of $0.01 (including this exec so far)"
    ), final.reason
    # The first turn finished: its tool ran and its output is there.
    tools = [e for e in events if isinstance(e, ToolCallFinished)]
    assert tools[0].output == "turn-one\n"
    # The third call was never made; the second at most started (pi sends it as it
    # ends the first turn, before Godel can answer).
    assert len(scripted_server.requests) <= 2
    assert all(q.rule != 0 for q in scripted_server.requests)
    turns = [e for e in events if isinstance(e, TurnUsage)]
    assert 1 <= len(turns) <= 2
    # Settled with pi's own cost: what the turns reported, one turn over at most.
    assert final.cost_usd == sum((t.cost_usd or Decimal(0) for t in turns), Decimal(0))
    assert Decimal("0.0202") <= final.cost_usd <= Decimal("0.0404")
    spent, reserved = await _spend(engine)
    assert Decimal(spent) == final.cost_usd and reserved == "0"
    await next_event(sub, Match(BudgetThreshold, level="exhausted"))
    actions = [e.action for e in await engine.audit_list(subject=agent.id)]
    assert "budget.stop" in actions
    # The agent is free again, and the next exec is refused before it runs.
    assert (await engine.get_agent(agent.id)).status is AgentStatus.IDLE
    with pytest.raises(BudgetExhausted, match=r"^budget exhausted"):
        async for _ in engine.exec(agent.id, "go", actor="test"):
            pass


def _shell_agent() -> Agent:
    """An agent record on the shell runtime, to charge ``runtime:shell`` through the
    service (reserve and settle need no process)."""
    return Agent(
        id="charger",
        runtime="shell",
        model="scripted",
        workspace=Path("/tmp"),
        status=AgentStatus.IDLE,
        status_source=StatusSource.USER,
        status_at=utcnow(),
        created_at=utcnow(),
        spec=AgentSpec(runtime="shell"),
    )


async def test_held_tasks_do_not_block_other_scopes_behind_them(
    make_engine: MakeEngine,
) -> None:
    """runtime:shell held at 92 %: 300 tasks naming that runtime wait at the front of
    the pool's queue (more than a round's first page), and a task naming no runtime,
    submitted after them, still runs at once."""
    engine = await make_engine()
    await make_swarm(engine, "web", 2)
    sub = subscribe(engine, "t", "budget.threshold", "task.changed")
    await engine.set_budget("runtime:shell", Decimal("1.00"), unit="usd", period="none", actor="t")
    charger = _shell_agent()
    await engine.s.budgets.reserve(charger, frozenset({Capability.MODEL}), "e1", None)
    await engine.s.budgets.settle(
        "e1",
        ExecResult(
            exec_id="e1", status=ExecStatus.SUCCEEDED, exit_code=0, cost_usd=Decimal("0.92")
        ),
    )
    await next_event(sub, Match(BudgetThreshold, level="hold"))

    held = await submit(engine, "web", *[f"echo held {i}" for i in range(300)], runtime="shell")
    (free,) = await submit(engine, "web", "echo free")
    ev = await next_event(sub, Match(TaskChanged, task_id=free, status="succeeded"))
    assert ev.task_id == free
    for task_id in (held[0], held[-1]):
        task = await engine.get_task(task_id)
        assert task.status is TaskStatus.READY
        assert task.waiting.startswith(
            "held by budget runtime:shell: $0.92 of $1.00 spent (92%): no new dispatch at 90 %"
        ), task.waiting
    # Raising the limit frees them (the change wakes the dispatcher).
    await engine.set_budget("runtime:shell", Decimal("100"), unit="usd", period="none", actor="t")
    await next_event(sub, Match(TaskChanged, task_id=held[-1], status="succeeded"), timeout=60)
