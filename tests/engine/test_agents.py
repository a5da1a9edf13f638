"""Agents in process: spawn, exec, kill, and following an agent's log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from core.engine import Engine
from core.errors import AgentUnavailable, InvalidInput
from core.events import AgentCreated, AgentStatusChanged, ExecStarted
from core.models import (
    AgentSpec,
    AgentStatus,
    ExecResult,
    ExecStatus,
    LogLine,
    OutputChunk,
    RuntimeEvent,
    StatusSource,
)
from tests.engine.conftest import Match, gone, next_event, pid_of, subscribe


async def run(engine: Engine, agent_id: str, command: str) -> list[RuntimeEvent]:
    return [ev async for ev in engine.exec(agent_id, command, actor="test")]


async def test_spawn_exec_and_kill_a_shell_agent(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="shell", name="one"), "test")
    assert agent.status is AgentStatus.IDLE and agent.pid is not None
    assert engine.is_live(agent.id) and pid_of(engine, agent.id) == agent.pid

    evs = await run(engine, agent.id, "echo out; echo err >&2; exit 3")
    result = evs[-1]
    assert isinstance(result, ExecResult)
    assert (result.status, result.exit_code, result.output) == (ExecStatus.FAILED, 3, "out\n")
    chunks = {(ev.stream, ev.data) for ev in evs if isinstance(ev, OutputChunk)}
    assert chunks == {("stdout", "out\n"), ("stderr", "err\n")}
    (record,) = await engine.list_execs(agent.id)
    assert record.status is ExecStatus.FAILED and record.exit_code == 3
    assert (await engine.get_agent(agent.id)).status is AgentStatus.IDLE

    with pytest.raises(InvalidInput):
        await run(engine, agent.id, "   ")

    killed = await engine.kill_agent(agent.id, "test")
    assert killed.status is AgentStatus.STOPPED and killed.status_source is StatusSource.USER
    assert killed.status_reason == "killed by test"
    assert gone(agent.pid) and not engine.is_live(agent.id)
    with pytest.raises(AgentUnavailable, match="it is stopped"):
        await run(engine, agent.id, "echo too late")
    actions = [e.action for e in await engine.audit_list(subject=agent.id)]
    assert actions == ["agent.spawn", "agent.exec", "agent.exec.finish", "agent.kill"]


async def last(stream: AsyncIterator[RuntimeEvent]) -> RuntimeEvent:
    evs = [ev async for ev in stream]
    return evs[-1]


async def test_one_exec_at_a_time_and_an_abort_right_after_the_start(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    sub = subscribe(engine, "t", "exec.started")
    first = asyncio.create_task(last(engine.exec(agent.id, "sleep 30", actor="test")))
    await next_event(sub, Match(ExecStarted, agent_id=agent.id))
    with pytest.raises(AgentUnavailable, match="busy"):
        await run(engine, agent.id, "echo second")
    # Announced, perhaps not yet begun by the runtime: the abort must still take.
    assert await engine.abort(agent.id, "test")
    ended = await first
    assert isinstance(ended, ExecResult) and ended.status is ExecStatus.ABORTED
    evs = await run(engine, agent.id, "echo free")  # free again at once
    assert isinstance(evs[-1], ExecResult) and evs[-1].output == "free\n"
    (entry,) = [e for e in await engine.audit_list(subject=agent.id) if e.action == "agent.abort"]
    assert entry.result == "ok"


async def follow(stream: AsyncIterator[LogLine], into: list[LogLine]) -> None:
    async for line in stream:
        into.append(line)


async def test_logs_follow_returns_every_line_and_ends_with_the_agent(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    await run(engine, agent.id, "echo before")
    stream = engine.logs(agent.id, follow=True)
    # The first line proves the follower has subscribed (it subscribes before reading).
    first = await anext(stream)
    assert first.data == "before\n"

    lines: list[LogLine] = []
    follower = asyncio.create_task(follow(stream, lines))
    evs = await run(engine, agent.id, "for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2")
    assert isinstance(evs[-1], ExecResult) and evs[-1].status is ExecStatus.SUCCEEDED
    await engine.kill_agent(agent.id, "test")
    await asyncio.wait_for(follower, 10)  # it ends by itself once the agent has ended

    assert {line.exec_id for line in lines} == {evs[-1].exec_id}
    stdout = "".join(line.data for line in lines if line.stream == "stdout")
    stderr = "".join(line.data for line in lines if line.stream == "stderr")
    assert stdout == "".join(f"line-{i}\n" for i in range(1, 6))
    assert stderr == "oops\n"
    seqs = [line.seq for line in lines]
    assert seqs == sorted(set(seqs)) and seqs[0] > first.seq  # each line once, in order


async def test_a_noop_agent_runs_nothing_and_succeeds(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="noop"), "test")
    (result,) = await run(engine, agent.id, "anything")
    assert isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED
    await engine.kill_agent(agent.id, "test")
    assert (await engine.get_agent(agent.id)).status is AgentStatus.STOPPED


async def test_a_spawn_whose_caller_goes_away_still_ends_idle_not_starting(
    engine: Engine,
) -> None:
    """A Ctrl-C (the RPC handler cancelled) once left the agent `starting` for good."""
    sub = subscribe(engine, "t", "agent.created", "agent.status_changed")
    call = asyncio.create_task(engine.spawn_agent(AgentSpec(runtime="shell"), "test"))
    created = await next_event(sub, Match(AgentCreated))
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    await next_event(
        sub, Match(AgentStatusChanged, agent_id=created.agent_id, status=AgentStatus.IDLE)
    )
    assert engine.agent_row(created.agent_id).status is AgentStatus.IDLE


async def test_a_taken_agent_id_is_drawn_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.engine import agents as agents_module

    first = await engine.spawn_agent(AgentSpec(runtime="noop"), "test")
    drawn = iter([first.id, first.id, "noop-fresh1"])
    monkeypatch.setattr(agents_module, "new_agent_id", lambda runtime: next(drawn))
    second = await engine.spawn_agent(AgentSpec(runtime="noop"), "test")
    assert second.id == "noop-fresh1"


async def test_restart_stops_the_agent_and_spawns_one_like_it(engine: Engine) -> None:
    from tests.engine.conftest import audit, make_swarm

    (old,) = await make_swarm(engine, "r", 1)
    new = await engine.restart_agent(old.id, "test")
    assert new.id != old.id and new.swarm == "r" and new.spec == old.spec
    gone_agent = await engine.get_agent(old.id)
    assert gone_agent.status is AgentStatus.STOPPED
    assert gone_agent.status_reason == "restarted by test"
    assert [e.subject for e in await audit(engine, "agent.restart")] == [old.id]
    assert (await engine.get_agent(new.id)).status is AgentStatus.IDLE
