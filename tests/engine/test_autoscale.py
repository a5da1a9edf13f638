"""The autoscaler in process: up at once, down after the window and only idle agents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from core.clock import FakeClock
from core.engine import Engine
from core.events import ExecStarted, SwarmAutoscaled, TaskFinished
from core.models import ExecResult, ExecStatus, RuntimeEvent
from tests.engine.conftest import (
    Gate,
    MakeEngine,
    Match,
    advance,
    audit,
    events,
    make_swarm,
    next_event,
    pending,
    submit,
    subscribe,
)


async def last_result(stream: AsyncIterator[RuntimeEvent]) -> ExecResult:
    result = None
    async for ev in stream:
        result = ev
    assert isinstance(result, ExecResult)
    return result


async def decisions(engine: Engine, swarm: str) -> list[str]:
    return [e.result for e in await audit(engine, "swarm.autoscale", swarm)]


async def test_scale_up_is_immediate_to_ceil_of_work_over_target(
    engine: Engine, gates: Callable[[str], Gate]
) -> None:
    await make_swarm(engine, "auto", 0, max_agents=4, target_per_agent=2)
    sub = subscribe(engine, "t", "swarm.autoscaled", "task.finished")
    gate = gates("auto")
    await submit(engine, "auto", *[gate.cmd] * 5)

    decision = await engine.s.autoscaler.evaluate(await engine.get_swarm("auto"))
    assert decision is not None
    assert (decision.current, decision.desired, decision.target) == (0, 3, 3)  # ceil(5 / 2)
    ev = await next_event(sub, Match(SwarmAutoscaled, swarm="auto"))
    assert (ev.from_agents, ev.to_agents) == (0, 3)
    assert ev.reason == (
        "5 ready or running tasks at 2 per agent need 3 agents; scaling up from 0 at once"
    )
    (entry,) = await audit(engine, "swarm.autoscale", "auto")
    assert entry.actor == "autoscaler" and entry.result == "0->3"
    assert entry.payload == {"desired": 3, "reason": ev.reason}
    assert len(engine.s.swarms.members("auto")) == 3
    assert (await engine.get_swarm("auto")).desired == 3

    gate.open(5)
    await events(sub, Match(TaskFinished, status="succeeded"), 5)


async def test_scale_up_is_clamped_at_max(engine: Engine) -> None:
    await make_swarm(engine, "capped", 0, max_agents=2)
    sub = subscribe(engine, "t", "task.finished")
    await submit(engine, "capped", *["true"] * 7)
    decision = await engine.s.autoscaler.evaluate(await engine.get_swarm("capped"))
    assert decision is not None and decision.target == 2
    assert await decisions(engine, "capped") == ["0->2"]
    finished = await events(sub, Match(TaskFinished), 7)  # two agents serve them all
    assert len({e.agent_id for e in finished}) == 2


async def test_scale_down_waits_for_the_window_and_stops_only_idle_agents(
    make_engine: MakeEngine, clock: FakeClock, gates: Callable[[str], Gate]
) -> None:
    engine = await make_engine(autoscaler={"scale_down_window_s": 60})
    agents = await make_swarm(engine, "auto", 3)
    autoscaler = engine.s.autoscaler
    sub = subscribe(engine, "t", "swarm.autoscaled", "exec.started")
    # One agent is busy with an exec that is no task: no work is queued, yet it stays.
    gate = gates("busy")
    busy = agents[0].id
    run = asyncio.create_task(last_result(engine.exec(busy, gate.cmd, actor="test")))
    await next_event(sub, Match(ExecStarted, agent_id=busy))

    swarm = await engine.get_swarm("auto")
    assert await autoscaler.evaluate(swarm) is None  # fewer wanted: the window starts
    await advance(clock, 59)
    assert await autoscaler.evaluate(swarm) is None
    assert len(engine.s.swarms.members("auto")) == 3
    assert not pending(sub, Match(SwarmAutoscaled))

    await advance(clock, 1)
    decision = await autoscaler.evaluate(swarm)
    assert decision is not None
    assert (decision.current, decision.desired, decision.target) == (3, 0, 1)
    ev = await next_event(sub, Match(SwarmAutoscaled, swarm="auto"))
    assert ev.reason == "0 ready or running tasks need 0 agents for 60s; stopping 2 idle agents"
    assert [a.id for a in engine.s.swarms.members("auto")] == [busy]

    gate.open()
    assert (await run).status is ExecStatus.SUCCEEDED
    assert await autoscaler.evaluate(swarm) is None  # a new window
    await advance(clock, 60)
    decision = await autoscaler.evaluate(swarm)
    assert decision is not None and decision.target == 0
    assert engine.s.swarms.members("auto") == []
    assert await decisions(engine, "auto") == ["3->1", "1->0"]


async def test_work_arriving_during_the_window_resets_it(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(autoscaler={"scale_down_window_s": 60})
    await make_swarm(engine, "auto", 2, runtime="noop")
    swarm = await engine.get_swarm("auto")
    autoscaler = engine.s.autoscaler
    assert await autoscaler.evaluate(swarm) is None  # 0 wanted: the window starts
    await advance(clock, 50)
    # A burst wants both agents: the pending scale-down is forgotten.
    await engine.s.dispatcher.stop()  # keep the tasks queued while it is evaluated
    await submit(engine, "auto", "true", "true")
    assert await autoscaler.evaluate(swarm) is None
    assert autoscaler._windows["auto"].since is None
    await advance(clock, 20)  # past where the first window would have ended
    assert await autoscaler.evaluate(swarm) is None
    assert len(engine.s.swarms.members("auto")) == 2


async def test_a_fixed_swarm_is_left_alone(engine: Engine, clock: FakeClock) -> None:
    await make_swarm(engine, "fixed", 2, min_agents=2, max_agents=2, runtime="noop")
    await engine.s.dispatcher.stop()  # the tasks stay queued: work of 10
    await submit(engine, "fixed", *["true"] * 10)
    swarm = await engine.get_swarm("fixed")
    assert await engine.s.autoscaler.evaluate(swarm) is None
    await advance(clock, 600)
    assert await engine.s.autoscaler.evaluate(swarm) is None
    assert len(engine.s.swarms.members("fixed")) == 2
    assert await decisions(engine, "fixed") == []


async def test_the_loop_evaluates_every_interval(make_engine: MakeEngine, clock: FakeClock) -> None:
    engine = await make_engine(autoscaler={"enabled": True, "interval_s": 5})
    await make_swarm(engine, "looped", 0, max_agents=2, runtime="noop")
    sub = subscribe(engine, "t", "swarm.autoscaled", "task.finished")
    await submit(engine, "looped", "true", "true")
    await advance(clock, 4.9)
    assert not pending(sub, Match(SwarmAutoscaled))
    await advance(clock, 0.1)
    ev = await next_event(sub, Match(SwarmAutoscaled, swarm="looped"))
    assert (ev.from_agents, ev.to_agents) == (0, 2)
    await events(sub, Match(TaskFinished, status="succeeded"), 2)


async def test_a_swarm_destroyed_after_the_round_read_it_is_not_scaled(engine: Engine) -> None:
    # The loop reads every swarm, then evaluates them one by one; one may be destroyed
    # in between. Evaluating its stale record must not bring agents back.
    await make_swarm(engine, "gone", 1, min_agents=1, max_agents=3, runtime="noop")
    stale = await engine.get_swarm("gone")
    await engine.destroy_swarm("gone", "test")
    assert await engine.s.autoscaler.evaluate(stale) is None
    assert engine.s.swarms.members("gone") == []
    assert await decisions(engine, "gone") == []
    assert "gone" not in engine.s.autoscaler._windows
