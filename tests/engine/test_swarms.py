"""Swarms in process: replacing dead agents (backoff, give up, reset), scaling, destroying."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from core.clock import FakeClock
from core.engine import Engine
from core.errors import InvalidInput, SwarmError
from core.events import AgentSpawned, AuditAppended, ExecStarted, TaskFinished
from core.models import AgentStatus, TaskStatus
from tests.engine.conftest import (
    Gate,
    MakeEngine,
    Match,
    advance,
    audit,
    events,
    gone,
    make_swarm,
    next_event,
    pending,
    pid_of,
    submit,
    subscribe,
)

RESTARTS: dict[str, Any] = {
    "restart_base_s": 1.0,
    "restart_factor": 2.0,
    "restart_jitter": 0.0,  # exact delays
    "max_restarts": 2,
    "restart_window_s": 600.0,
    "restart_reset_after_s": 120.0,
}


async def kill_process(engine: Engine, agent_id: str) -> None:
    """SIGKILL an agent's process and wait until the engine has dealt with it."""
    live = engine.ctx.live.get(agent_id)
    assert live is not None and live.watcher is not None
    watcher = live.watcher
    os.kill(pid_of(engine, agent_id), signal.SIGKILL)
    # The exit watcher marks the agent failed and runs the hooks for a gone agent (its
    # tasks back to the queue, a replacement scheduled): its end proves they ran.
    await asyncio.wait_for(asyncio.shield(watcher), 10)
    assert (await engine.get_agent(agent_id)).status is AgentStatus.FAILED


def restart_done() -> Match[AuditAppended]:
    return Match(AuditAppended, action="swarm.restart")


async def last_restart(engine: Engine, swarm: str) -> dict[str, Any]:
    entries = await audit(engine, "swarm.restart", swarm)
    return {"result": entries[-1].result, **entries[-1].payload}


def member_ids(engine: Engine, swarm: str) -> set[str]:
    return {a.id for a in engine.s.swarms.members(swarm)}


async def test_a_dead_swarm_agent_is_replaced_after_the_restart_backoff(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(health=RESTARTS)
    agents = await make_swarm(engine, "heal", 2)
    sub = subscribe(engine, "t", "audit.appended", "agent.spawned")
    dead = agents[0].id
    await kill_process(engine, dead)
    assert member_ids(engine, "heal") == {agents[1].id}

    await advance(clock, 0.99)  # not yet
    assert member_ids(engine, "heal") == {agents[1].id}
    assert not pending(sub, Match(AgentSpawned))

    await advance(clock, 0.01)
    done = await next_event(sub, restart_done())
    assert done.result == "ok"
    restart = await last_restart(engine, "heal")
    assert restart["dead_agent"] == dead and restart["delay_s"] == 1.0
    assert member_ids(engine, "heal") == {agents[1].id, restart["replacement"]}
    replacement = await engine.get_agent(restart["replacement"])
    assert replacement.status is AgentStatus.IDLE and replacement.swarm == "heal"


async def test_replacement_gives_up_after_max_restarts_in_the_window(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(health=RESTARTS)
    (victim,) = await make_swarm(engine, "crashy", 1)
    sub = subscribe(engine, "t", "audit.appended")
    victim_id = victim.id
    for delay in (1.0, 2.0):  # the backoff doubles
        await kill_process(engine, victim_id)
        await advance(clock, delay)
        done = await next_event(sub, restart_done())
        assert done.result == "ok"
        restart = await last_restart(engine, "crashy")
        assert restart["delay_s"] == delay
        victim_id = restart["replacement"]

    await kill_process(engine, victim_id)  # the third death within the window
    gave_up = await next_event(sub, restart_done())
    assert gave_up.result == "gave up"
    restart = await last_restart(engine, "crashy")
    assert restart["dead_agent"] == victim_id
    assert restart["reason"] == "restarted 2 times in 600s (limit 2); not restarting again"
    await advance(clock, 60)
    assert member_ids(engine, "crashy") == set()


async def test_a_stable_replacement_restarts_the_backoff(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(health={**RESTARTS, "max_restarts": 5})
    (first,) = await make_swarm(engine, "steady", 1)
    sub = subscribe(engine, "t", "audit.appended")
    restarts = engine.s.swarms.restarts

    await kill_process(engine, first.id)
    await advance(clock, 1.0)
    await next_event(sub, restart_done())
    replacement = (await last_restart(engine, "steady"))["replacement"]
    assert restarts.next_delay("steady") == 2.0  # a crash now would wait longer

    await advance(clock, 120.0)  # the replacement stayed up restart_reset_after_s
    assert restarts.next_delay("steady") == 1.0
    await kill_process(engine, replacement)
    await advance(clock, 1.0)
    done = await next_event(sub, restart_done())
    assert done.result == "ok"
    assert (await last_restart(engine, "steady"))["delay_s"] == 1.0


async def test_an_agent_stopped_on_purpose_is_not_replaced(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(health=RESTARTS)
    agents = await make_swarm(engine, "calm", 2, max_agents=3)
    await engine.kill_agent(agents[0].id, "test")
    await advance(clock, 10)
    assert member_ids(engine, "calm") == {agents[1].id}
    assert await audit(engine, "swarm.restart", "calm") == []


async def test_scale_spawns_and_stops_real_agents_within_bounds(engine: Engine) -> None:
    agents = await make_swarm(engine, "elastic", 2, max_agents=5)
    await engine.scale_swarm("elastic", 4, "test")
    pids = [pid_of(engine, a) for a in member_ids(engine, "elastic")]
    assert len(pids) == 4

    _, errors = await engine.scale_swarm("elastic", 1, "test")
    assert not errors
    (left,) = member_ids(engine, "elastic")
    assert left in {a.id for a in agents}  # the newest go first
    assert sum(gone(p) for p in pids) == 3
    with pytest.raises(InvalidInput, match="between 0 and 5"):
        await engine.scale_swarm("elastic", 9, "test")
    (entry, _) = await audit(engine, "swarm.scale", "elastic")
    assert entry.payload == {"from": 2, "to": 4}


async def test_destroying_50_shell_agents_stops_all_and_forgets_the_swarm(
    engine: Engine, gates: Callable[[str], Gate]
) -> None:
    agents = await make_swarm(engine, "big", 50)
    pids = [pid_of(engine, a.id) for a in agents]
    sub = subscribe(engine, "t", "task.finished", "exec.started")
    # Work done (metric series), a routing pool, an autoscaler window, and tasks left over.
    await submit(engine, "big", *[f"echo {i}" for i in range(50)])
    await events(sub, Match(TaskFinished), 50)
    gate = gates("big")
    running = await submit(engine, "big", gate.cmd, gate.cmd)
    await events(sub, Match(ExecStarted), 2)
    assert await engine.s.autoscaler.evaluate(await engine.get_swarm("big")) is None
    assert "big" in engine.s.autoscaler._windows
    assert "big" in engine.s.swarms.routing.pools
    assert 'swarm="big"' in (await engine.metrics_text()).decode()

    stopped, cancelled = await engine.destroy_swarm("big", "test")
    assert sorted(stopped) == sorted(a.id for a in agents)
    assert cancelled == 2
    assert all(gone(p) for p in pids)
    assert engine.s.swarms.members("big") == []
    for a in await engine.list_agents():
        assert a.status is AgentStatus.STOPPED
    for task_id in running:
        assert (await engine.get_task(task_id)).status is TaskStatus.CANCELLED
    assert "big" not in engine.s.swarms.routing.pools
    assert 'swarm="big"' not in (await engine.metrics_text()).decode()
    assert "big" not in engine.s.autoscaler._windows
    assert engine.list_swarms() == []
    with pytest.raises(SwarmError, match="swarm 'big' not found"):
        engine.swarm_status("big")


async def test_destroying_a_swarm_while_it_scales_up_leaves_no_agent_behind(
    engine: Engine,
) -> None:
    await make_swarm(engine, "racing", 0, max_agents=20)
    sub = subscribe(engine, "t", "agent.spawned")
    scaling = asyncio.create_task(engine.scale_swarm("racing", 20, "test"))
    await next_event(sub, Match(AgentSpawned))  # spawns are under way
    stopped, _ = await engine.destroy_swarm("racing", "test")
    assert stopped
    _, errors = await scaling
    assert not errors
    assert engine.s.swarms.members("racing") == []
    assert await engine.list_agents(include_ended=False) == []
