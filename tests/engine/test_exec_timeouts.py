"""Timeouts on frozen processes: the agent, the exec and its message tell one story."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from core.engine import Engine
from core.errors import AgentUnavailable
from core.events import AgentStatusChanged, ExecFinished, Subscription
from core.models import AgentSpec, AgentStatus, ExecResult, ExecStatus, StatusSource
from core.runtimes import shell
from core.runtimes.base import HealthState
from core.runtimes.pi import run_loop
from tests.engine.conftest import MakeEngine, Match, next_event, pid_of, subscribe, until
from tests.integration.test_conformance import pi_available


async def run_exec(engine: Engine, agent_id: str, command: str, timeout: float) -> ExecResult:
    result = None
    async for ev in engine.exec(agent_id, command, actor="test", timeout=timeout):
        if isinstance(ev, ExecResult):
            result = ev
    assert result is not None
    return result


async def one_story(
    engine: Engine, sub: Subscription, agent_id: str, result: ExecResult, why: str
) -> None:
    """The agent turned unhealthy with the exec's reason, and the exec's end (committed
    with the agent's status, in one transaction) and the store say the same."""
    marked = await next_event(
        sub, Match(AgentStatusChanged, agent_id=agent_id, status=lambda s: s != AgentStatus.BUSY)
    )
    assert marked.status is AgentStatus.UNHEALTHY
    assert marked.source is StatusSource.RUNTIME_EVENT
    assert marked.reason == (
        f"exec {result.exec_id} timed out and its command could not be ended: {why}"
    )
    finished = await next_event(sub, Match(ExecFinished, exec_id=result.exec_id))
    assert finished.status is ExecStatus.TIMED_OUT and finished.reason == result.reason
    stored = await engine.get_agent(agent_id)
    assert (stored.status, stored.status_reason) == (AgentStatus.UNHEALTHY, marked.reason)


async def test_a_frozen_command_is_killed_and_the_agent_is_idle_again(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    sub = subscribe(engine, "t", "agent.status_changed", "exec.finished")

    # The command's subshell stops itself: SIGTERM stays pending, SIGKILL ends it.
    result = await run_exec(engine, agent.id, "kill -STOP $BASHPID; echo never", 0.2)

    assert result.status is ExecStatus.TIMED_OUT
    assert result.reason == "timed out after 0.2s"
    assert "busy" not in result.reason
    idle = await next_event(
        sub, Match(AgentStatusChanged, agent_id=agent.id, status=AgentStatus.IDLE)
    )
    assert idle.reason == f"{result.exec_id} timed_out"
    finished = await next_event(sub, Match(ExecFinished, exec_id=result.exec_id))
    assert finished.status is ExecStatus.TIMED_OUT and finished.reason == result.reason
    assert (await engine.get_agent(agent.id)).status is AgentStatus.IDLE
    assert (await run_exec(engine, agent.id, "echo again", 10)).output == "again\n"


async def test_a_frozen_shell_leaves_the_agent_unhealthy_until_it_resumes(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell, "_STOP_WAIT_S", 0.3)  # for the end markers after the kill
    engine = await make_engine(health={"healthy_threshold": 1})
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    pid = pid_of(engine, agent.id)
    sub = subscribe(engine, "t", "agent.status_changed", "exec.finished")

    # The command freezes bash itself: the killed command's end can never be reported.
    result = await run_exec(engine, agent.id, f"kill -STOP {pid}; sleep 30", 0.2)

    why = "its command could not be ended: the shell process is stopped (frozen)"
    assert result.status is ExecStatus.TIMED_OUT
    assert why in result.reason and "busy" not in result.reason
    await one_story(engine, sub, agent.id, result, "the shell process is stopped (frozen)")
    assert engine.s.health.workers(None) == []
    with pytest.raises(AgentUnavailable, match=r"it is unhealthy: exec \S+ timed out"):
        await run_exec(engine, agent.id, "echo no", 10)

    os.kill(pid, signal.SIGCONT)
    state = engine.ctx.live.get(agent.id)
    assert state is not None
    bash = state.handle.state["shell"]
    # Polled: bash reporting the killed command's end announces nothing.
    await until(lambda: bash.run is None, "the killed command's end reported")
    assert psutil.Process(pid).status() != psutil.STATUS_STOPPED
    change = await engine.s.health.prober.probe_now(agent.id)
    assert change is not None and change.healthy
    back = await next_event(sub, Match(AgentStatusChanged, agent_id=agent.id))
    assert back.status is AgentStatus.IDLE
    assert (await run_exec(engine, agent.id, "echo again", 10)).output == "again\n"


async def test_a_frozen_pi_leaves_the_agent_unhealthy_with_the_execs_reason(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pi_available():
        if os.environ.get("CI"):
            pytest.fail("the pi binary is not installed (run `make setup`)")
        pytest.skip("the pi binary is not installed (run `make setup`)")
    monkeypatch.setattr(run_loop, "STOP_WAIT_S", 0.3)  # for pi's answer to the abort
    engine = await make_engine(health={"healthy_threshold": 1})
    agent = await engine.spawn_agent(AgentSpec(runtime="pi"), "test")  # the scripted model
    pid = pid_of(engine, agent.id)
    sub = subscribe(engine, "t", "agent.status_changed", "exec.finished")

    # pi's bash tool freezes pi itself: the abort the timeout sends is never answered.
    result = await run_exec(engine, agent.id, f"run: kill -STOP {pid}; sleep 30", 3.0)

    why = "its command could not be ended: the pi process is stopped (frozen)"
    assert result.status is ExecStatus.TIMED_OUT
    assert result.reason.startswith(f"timed out after 3s; {why}; the agent is unhealthy")
    assert "busy" not in result.reason
    await one_story(engine, sub, agent.id, result, "the pi process is stopped (frozen)")
    health = await engine.health(agent.id)
    assert health.state is HealthState.UNHEALTHY
    assert health.detail == "the pi process is stopped (frozen)"
    with pytest.raises(AgentUnavailable, match=r"it is unhealthy: exec \S+ timed out"):
        await run_exec(engine, agent.id, "hello", 10)

    os.kill(pid, signal.SIGCONT)
    state = engine.ctx.live.get(agent.id)
    assert state is not None
    pi = state.handle.state["pi"]
    # Polled: pi answering the abort (and the run freed) announces nothing.
    await until(lambda: pi.run is None, "pi's answer to the abort", timeout=30)
    assert pi.stuck is None
    change = await engine.s.health.prober.probe_now(agent.id)
    assert change is not None and change.healthy
    back = await next_event(sub, Match(AgentStatusChanged, agent_id=agent.id))
    assert back.status is AgentStatus.IDLE
    again = await run_exec(engine, agent.id, "hello", 30)
    assert again.status is ExecStatus.SUCCEEDED
