"""A command that prints faster than its exec is read waits on its pipe: the shell
runtime holds at most about ``QUEUE_MAX_BYTES`` of its output, and loses none of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.models import AgentSpec, ExecResult, ExecStatus, OutputChunk
from core.runtimes.base import AgentHandle, RuntimeContext
from core.runtimes.shell import _STATE_KEY, ShellRuntime
from core.runtimes.shell_agent import _READ_CHUNK, QUEUE_MAX_BYTES, Run, ShellAgent
from tests.conftest import until

PRINTED = 20_000_000


@pytest.fixture
def runtime(tmp_path: Path) -> ShellRuntime:
    return ShellRuntime(RuntimeContext(home=tmp_path / "home"))


@pytest.fixture
async def agent(runtime: ShellRuntime, tmp_path: Path) -> AsyncIterator[AgentHandle]:
    handle = await runtime.spawn("shell-abc123", AgentSpec(runtime="shell"), tmp_path)
    yield handle
    await runtime.kill(handle)


def current_run(handle: AgentHandle) -> Run:
    st = handle.state[_STATE_KEY]
    assert isinstance(st, ShellAgent) and st.run is not None
    return st.run


async def test_a_command_faster_than_its_reader_waits_on_its_pipe(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    command = f"head -c {PRINTED} /dev/zero | tr '\\0' x"
    stream = runtime.exec(agent, command, exec_id="e1", timeout=None)
    first = await anext(stream)
    assert isinstance(first, OutputChunk)
    run = current_run(agent)
    # Not reading on: the readers fill the queue to its bound, then stop reading (no
    # event says so: polled).
    await until(lambda: not run.room.is_set())
    assert QUEUE_MAX_BYTES <= run.queued <= QUEUE_MAX_BYTES + 2 * _READ_CHUNK
    size = len(first.data)
    result: ExecResult | None = None
    async for ev in stream:
        if isinstance(ev, OutputChunk):
            size += len(ev.data)
            assert run.queued <= QUEUE_MAX_BYTES + 2 * _READ_CHUNK
        else:
            assert isinstance(ev, ExecResult)
            result = ev
    assert result is not None and result.status is ExecStatus.SUCCEEDED
    assert size == PRINTED  # waited for, none dropped


async def test_an_abandoned_loud_exec_frees_the_agent(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    # Its readers were waiting for room nobody would make: abandoning lets them drain.
    stream = runtime.exec(agent, "yes", exec_id="e1", timeout=None)
    assert isinstance(await anext(stream), OutputChunk)
    run = current_run(agent)
    await until(lambda: not run.room.is_set())
    await stream.aclose()  # type: ignore[attr-defined]
    # Abandoned: the runtime stops the command in the background; its run ends (the
    # event) and the agent is free once the reaper lets it go.
    await asyncio.wait_for(run.finished.wait(), 10)
    st = agent.state[_STATE_KEY]
    await until(lambda: st.run is None)
    chunks = [ev async for ev in runtime.exec(agent, "echo free", exec_id="e2", timeout=5)]
    # (Late writes of the killed `yes`, between the execs, come first: the runtime hands
    # output that arrives between execs to the next one.)
    out = "".join(ev.data for ev in chunks if isinstance(ev, OutputChunk))
    assert out.endswith("free\n")
    assert isinstance(chunks[-1], ExecResult) and chunks[-1].status is ExecStatus.SUCCEEDED
