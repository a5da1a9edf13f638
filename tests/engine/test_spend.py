"""Spend metrics count every exec once, as it ends: run by a task or directly."""

from __future__ import annotations

from decimal import Decimal

from core.engine import Engine
from core.events import TaskFinished
from core.federation.metrics import parse_exposition
from core.models import AgentSpec, ExecRecord, ExecResult
from tests.engine.conftest import MakeEngine, Match, make_swarm, next_event, submit, subscribe

TOKENS = 'godel_tokens_total{{kind="{kind}",runtime="native",swarm="{swarm}"}}'
COST = 'godel_cost_usd_total{{runtime="native",swarm="{swarm}"}}'


async def spend(engine: Engine, swarm: str) -> tuple[float, float, float]:
    v = parse_exposition(await engine.metrics_text())
    return (
        v.get(TOKENS.format(kind="input", swarm=swarm), 0.0),
        v.get(TOKENS.format(kind="output", swarm=swarm), 0.0),
        v.get(COST.format(swarm=swarm), 0.0),
    )


def totals(execs: list[ExecRecord]) -> tuple[float, float, float]:
    return (
        float(sum(x.usage.input_tokens for x in execs)),
        float(sum(x.usage.output_tokens for x in execs)),
        float(sum((x.cost_usd or Decimal(0) for x in execs), Decimal(0))),
    )


async def test_an_exec_without_a_task_is_counted_once(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    agent = await engine.spawn_agent(AgentSpec(runtime="native", model="scripted"), "test")
    assert await spend(engine, "") == (0, 0, 0)
    result = None
    async for ev in engine.exec(agent.id, "hello there", actor="test"):
        if isinstance(ev, ExecResult):
            result = ev
    assert result is not None and result.usage.input_tokens > 0 and result.cost_usd
    execs = await engine.list_execs(agent.id)
    assert len(execs) == 1
    assert await spend(engine, "") == totals(execs)  # no swarm: the label is empty


async def test_a_task_exec_is_counted_once(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    (agent,) = await make_swarm(engine, "llm", 1, runtime="native", model="scripted")
    sub = subscribe(engine, "t", "task.finished")
    (task_id,) = await submit(engine, "llm", "hello from a task")
    await next_event(sub, Match(TaskFinished, task_id=task_id, status="succeeded"))
    execs = await engine.list_execs(agent.id)
    assert len(execs) == 1 and execs[0].usage.output_tokens > 0
    # The exec's end committed before the task's: its spend is in the metrics already.
    assert await spend(engine, "llm") == totals(execs)
