"""Health in process: circuit breakers fed by task results, probes, and the ejection cap."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import psutil

from core.clock import FakeClock
from core.engine import Engine
from core.events import (
    AgentActivity,
    AgentHealthChanged,
    AgentStatusChanged,
    ExecStarted,
    TaskFinished,
)
from core.federation.health import BreakerState
from core.models import AgentSpec, AgentStatus, StatusSource
from tests.engine.conftest import (
    Gate,
    MakeEngine,
    Match,
    advance,
    audit,
    events,
    make_swarm,
    next_event,
    pid_of,
    poll_now,
    submit,
    subscribe,
    until,
)


def breaker_to(state: BreakerState) -> Match[AgentActivity]:
    return Match(AgentActivity, kind="breaker", data=lambda d: d["to"] == state.value)


async def test_failures_open_the_breaker_then_one_trial_closes_it(
    make_engine: MakeEngine, clock: FakeClock, gates: Callable[[str], Gate]
) -> None:
    engine = await make_engine(health={"failure_threshold": 2, "open_for_s": 30})
    (agent,) = await make_swarm(engine, "br", 1)
    health = engine.s.health
    breakers = subscribe(engine, "breakers", "agent.activity")
    sub = subscribe(engine, "t", "task.finished", "exec.started")

    await submit(engine, "br", "exit 1", "exit 1", max_attempts=1)
    opened = await next_event(breakers, breaker_to(BreakerState.OPEN))
    assert opened.agent_id == agent.id
    assert opened.data["from"] == "closed"
    assert opened.data["reason"] == "2 consecutive failures; open for 30s"
    (entry,) = await audit(engine, "agent.breaker", agent.id)
    assert entry.result == "open" and entry.payload["from"] == "closed"

    # Open: nothing is sent to it (in a pool of one, that one may be ejected).
    gate = gates("trial")
    await events(sub, Match(TaskFinished, status="failed"), 2)
    trial, after = await submit(engine, "br", f"{gate.cmd}; echo trial", "echo after")
    assert health.workers("br") == []
    assert await engine.s.dispatcher.dispatch_once() == 0
    await advance(clock, 29.9)
    assert health.breaker_state(agent.id) is BreakerState.OPEN
    assert await engine.s.dispatcher.dispatch_once() == 0

    # Half-open once open_for_s has passed: exactly one trial goes through.
    await advance(clock, 0.2)
    poll_now(engine)
    started = await next_event(sub, Match(ExecStarted))
    assert started.agent_id == agent.id
    assert (await engine.get_task(trial)).lease_agent == agent.id
    assert health.breaker_state(agent.id) is BreakerState.HALF_OPEN
    assert not health.admit(agent.id)  # the single trial is out
    assert health.workers("br") == []
    assert await engine.s.dispatcher.dispatch_once() == 0
    assert (await engine.get_task(after)).attempts == 0

    # The trial succeeds: closed, and the next task runs.
    gate.open()
    closed = await next_event(breakers, breaker_to(BreakerState.CLOSED))
    assert closed.data["reason"] == "trial succeeded"
    finished = await events(sub, Match(TaskFinished), 2)
    assert [(e.task_id, e.status) for e in finished] == [
        (trial, "succeeded"),
        (after, "succeeded"),
    ]
    states = [e.result for e in await audit(engine, "agent.breaker", agent.id)]
    assert states == ["open", "half_open", "closed"]


async def test_breaker_changes_are_published_and_the_views_show_them(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(health={"failure_threshold": 2, "open_for_s": 30})
    (agent,) = await make_swarm(engine, "br", 1)
    sub = subscribe(engine, "h", "agent.health")

    def row() -> tuple[str, str]:
        r = engine.views.agent_row(agent.id)
        assert r is not None
        return r.breaker, r.health_detail

    # A failure below the threshold: still closed, but counted.
    await submit(engine, "br", "exit 1", "exit 1", max_attempts=1)
    first = await next_event(sub, Match(AgentHealthChanged, agent_id=agent.id))
    assert (first.breaker, first.failures, first.source) == ("closed", 1, "exec outcome")
    assert first.detail == "1 consecutive exec failure (opens at 2)"

    opened = await next_event(sub, Match(AgentHealthChanged, breaker="open"))
    assert (opened.failures, opened.ejected, opened.source) == (2, True, "exec outcome")
    assert row() == ("open", "2 consecutive failures; open for 30s")
    r = engine.views.agent_row(agent.id)
    assert r is not None and r.breaker_at == opened.at
    assert engine.view_snapshot().router.breakers == {"open": 1}

    # Once the open time is over the change is published with no task asking for it.
    await advance(clock, 30)
    half = await next_event(sub, Match(AgentHealthChanged, breaker="half_open"))
    assert (half.source, half.ejected) == ("open time", False)
    assert row() == ("half_open", "open for 30s elapsed")
    assert engine.view_snapshot().router.breakers == {"half_open": 1}

    # The trial succeeds: closed again, and the router counts nothing.
    await submit(engine, "br", "echo trial")
    closed = await next_event(sub, Match(AgentHealthChanged, breaker="closed"))
    assert (closed.failures, closed.source) == (0, "exec outcome")
    assert row() == ("closed", "trial succeeded")
    assert engine.view_snapshot().router.breakers == {}


async def test_a_failed_trial_reopens_the_breaker_for_longer(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(health={"failure_threshold": 1, "open_for_s": 10})
    (agent,) = await make_swarm(engine, "br", 1)
    sub = subscribe(engine, "t", "agent.activity")
    await submit(engine, "br", "exit 1", max_attempts=1)
    await next_event(sub, breaker_to(BreakerState.OPEN))
    await submit(engine, "br", "exit 2", max_attempts=1)
    await advance(clock, 10)
    poll_now(engine)
    await next_event(sub, breaker_to(BreakerState.HALF_OPEN))
    reopened = await next_event(sub, breaker_to(BreakerState.OPEN))
    assert reopened.data["reason"] == "trial failed; open for 20s"
    breaker = engine.s.health.trackers[agent.id].breaker
    assert breaker.state is BreakerState.OPEN and breaker.open_duration_s == 20
    states = [e.result for e in await audit(engine, "agent.breaker", agent.id)]
    assert states == ["open", "half_open", "open"]


async def test_probes_mark_a_stopped_process_unhealthy_and_then_healthy_again(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(health={"unhealthy_threshold": 2, "healthy_threshold": 2})
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    pid = pid_of(engine, agent.id)
    prober = engine.s.health.prober
    sub = subscribe(engine, "t", "agent.status_changed")

    os.kill(pid, signal.SIGSTOP)
    # Polled: a signal is delivered asynchronously and nothing announces it.
    await until(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, "bash stopped")
    assert await prober.probe_now(agent.id) is None  # one failure is below the threshold
    change = await prober.probe_now(agent.id)
    assert change is not None and not change.healthy
    marked = await next_event(sub, Match(AgentStatusChanged, agent_id=agent.id))
    assert marked.status is AgentStatus.UNHEALTHY and marked.source is StatusSource.PROBE
    assert marked.reason == "shell process is stopped"
    assert engine.s.health.workers(None) == []  # an unhealthy agent takes no work
    (entry,) = await audit(engine, "agent.health", agent.id)
    assert entry.result == "unhealthy"

    os.kill(pid, signal.SIGCONT)
    await until(lambda: psutil.Process(pid).status() != psutil.STATUS_STOPPED, "bash resumed")
    assert await prober.probe_now(agent.id) is None
    change = await prober.probe_now(agent.id)
    assert change is not None and change.healthy
    back = await next_event(sub, Match(AgentStatusChanged, agent_id=agent.id))
    assert back.status is AgentStatus.IDLE
    assert [a.id for a in engine.s.health.workers(None)] == [agent.id]


async def test_a_probe_that_finds_the_process_dead_marks_it_at_once(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    live = engine.ctx.live.get(agent.id)
    assert live is not None and live.watcher is not None
    # Stand in for an exit the exit watcher has not seen yet: only the probe can tell.
    live.watcher.cancel()
    sub = subscribe(engine, "t", "agent.status_changed")
    os.kill(pid_of(engine, agent.id), signal.SIGKILL)
    state: Any = live.handle.state["shell"]
    await state.exited.wait()  # the runtime saw the process end

    change = await engine.s.health.prober.probe_now(agent.id)
    assert change is not None and not change.healthy  # dead: no threshold to wait for
    marked = await next_event(sub, Match(AgentStatusChanged, agent_id=agent.id))
    assert marked.status is AgentStatus.UNHEALTHY
    assert "exited" in marked.reason or "gone" in marked.reason
    assert (await engine.get_agent(agent.id)).status is AgentStatus.UNHEALTHY


async def test_the_ejection_cap_keeps_most_of_a_pool_serving(make_engine: MakeEngine) -> None:
    engine = await make_engine(
        health={"failure_threshold": 1, "open_for_s": 60, "max_ejection_percent": 10}
    )
    agents = await make_swarm(engine, "cap", 10)
    health = engine.s.health
    sub = subscribe(engine, "t", "agent.activity", "task.finished")

    # One failure on each of four agents (one round claims them on four agents).
    await submit(engine, "cap", *["exit 1"] * 4, max_attempts=1)
    opened = await events(sub, breaker_to(BreakerState.OPEN), 4)
    broken = {e.agent_id for e in opened}
    assert len(broken) == 4
    assert all(health.breaker_state(a) is BreakerState.OPEN for a in broken)

    # At most max(1, 10 % of 10) = 1 stays out; the other three work on regardless.
    workers = {a.id for a in health.workers("cap")}
    assert len(workers) == 9
    (kept_out,) = {a.id for a in agents} - workers
    assert kept_out in broken
    assert health.cap_overrides == broken - {kept_out}
    # The views hear which open breakers the cap lets work on.
    for agent_id in broken - {kept_out}:
        r = engine.views.agent_row(agent_id)
        assert r is not None
        assert (r.breaker, r.health_detail) == (
            "open",
            "open, but the ejection cap lets it work on",
        )

    # The rest keep serving: the next round puts a task on each of the nine.
    pending = await submit(engine, "cap", *[f"echo {i}" for i in range(9)])
    finished = await events(sub, Match(TaskFinished, task_id=lambda t: t in pending), 9)
    assert {e.status for e in finished} == {"succeeded"}
    ran_on = {e.agent_id for e in finished}
    assert kept_out not in ran_on
    assert ran_on & (broken - {kept_out})  # agents with open breakers still work
