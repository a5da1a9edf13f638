"""Routing in process: a batch spread over a swarm, explain, and strategy changes."""

from __future__ import annotations

from typing import Any

import pytest

from core.engine import Engine
from core.errors import InvalidInput
from core.events import TaskFinished
from core.models import TaskStatus
from tests.engine.conftest import Match, audit, events, make_swarm, submit, subscribe


async def test_a_batch_completes_with_the_right_results_spread_over_the_swarm(
    engine: Engine,
) -> None:
    await make_swarm(engine, "batch", 5)
    sub = subscribe(engine, "t", "task.finished")
    inputs = [f"echo result-{i}" for i in range(100)]
    ids = await submit(engine, "batch", *inputs)
    finished = await events(sub, Match(TaskFinished), 100)
    assert {e.task_id for e in finished} == set(ids)
    assert {e.status for e in finished} == {"succeeded"}
    tasks = {t.id: t for t in await engine.list_tasks(swarm="batch", limit=1000)}
    for task_id, text in zip(ids, inputs, strict=True):
        result = tasks[task_id].result
        assert result is not None and result.output == text.removeprefix("echo ") + "\n"
    assert len({e.agent_id for e in finished}) == 5  # every agent took a share
    assert engine.swarm_status("batch").tasks_by_status == {"succeeded": 100}


async def test_explain_shows_why_a_task_is_unroutable_and_how_one_was_placed(
    engine: Engine,
) -> None:
    await make_swarm(engine, "rt", 3, skills=["python"])
    sub = subscribe(engine, "t", "task.finished")
    (stuck,) = await submit(engine, "rt", "echo gpu", skills=["gpu"])
    (done,) = await submit(engine, "rt", "echo ok", skills=["python"])
    await events(sub, Match(TaskFinished, task_id=done), 1)

    explained = await engine.explain_route(stuck)
    now: dict[str, Any] = explained["now"]
    assert now["chosen"] is None and now["reason"] == "no agent has skills gpu"
    assert [c["excluded"] for c in now["candidates"]] == ["missing skills: gpu"] * 3
    assert (await engine.get_task(stuck)).status is TaskStatus.READY

    ok = await engine.explain_route(done)
    (past,) = ok["past"]
    assert past.result == (await engine.get_task(done)).lease_agent
    assert past.payload["strategy"] == "balanced"
    scored = [c for c in ok["now"]["candidates"] if c["score"] is not None]
    assert len(scored) == 3 and all(c["parts"] for c in scored)


async def test_the_strategy_changes_at_run_time(engine: Engine) -> None:
    await make_swarm(engine, "rr", 3)
    with pytest.raises(InvalidInput, match="unknown routing strategy 'teleport'"):
        await engine.set_strategy("rr", "teleport", "test")
    swarm = await engine.set_strategy("rr", "round-robin", "test")
    assert swarm.strategy == "round-robin"
    (change,) = await audit(engine, "swarm.strategy", "rr")
    assert change.payload == {"from": "balanced", "to": "round-robin"}

    sub = subscribe(engine, "t", "task.finished")
    ids = await submit(engine, "rr", *[f"echo {i}" for i in range(6)])
    await events(sub, Match(TaskFinished), 6)
    routes = [e for e in await audit(engine, "task.route") if e.subject in ids]
    assert {e.payload["strategy"] for e in routes} == {"round-robin"}
    assert len({e.result for e in routes}) == 3  # round-robin used every agent
