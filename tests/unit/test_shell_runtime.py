"""The shell runtime and the process helpers, against real bash processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from core.errors import AgentUnavailable, RuntimeFailure
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    ExecResult,
    ExecStatus,
    OutputChunk,
    StatusSource,
)
from core.runtimes.base import AgentHandle, AgentRuntime, Capability, HealthState, RuntimeContext
from core.runtimes.process import is_same_process, process_started_at
from core.runtimes.shell import ShellRuntime
from core.runtimes.shell_protocol import EndMarker
from tests.conftest import until


@pytest.fixture
def runtime(tmp_path: Path) -> ShellRuntime:
    return ShellRuntime(RuntimeContext(home=tmp_path / "home"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "work space"  # a space, to prove the path is quoted
    ws.mkdir()
    return ws


@pytest.fixture
def real_workspace(workspace: Path) -> Path:
    return workspace.resolve()  # what ``pwd -P`` prints


@pytest.fixture
async def agent(runtime: ShellRuntime, workspace: Path) -> AsyncIterator[AgentHandle]:
    spec = AgentSpec(runtime="shell", env={"GODEL_TEST_VAR": "a 'quoted' value"})
    handle = await runtime.spawn("shell-abc123", spec, workspace)
    yield handle
    await runtime.kill(handle)


async def run(
    runtime: ShellRuntime, handle: AgentHandle, command: str, limit_s: float | None = None
) -> tuple[list[OutputChunk], ExecResult]:
    chunks: list[OutputChunk] = []
    result: ExecResult | None = None
    async for event in runtime.exec(handle, command, exec_id="exec-1", timeout=limit_s):
        assert result is None, "nothing may follow the result"
        if isinstance(event, OutputChunk):
            chunks.append(event)
        else:
            result = event
    assert result is not None
    return chunks, result


async def drain(stream: AsyncIterator[object]) -> tuple[list[OutputChunk], ExecResult]:
    chunks: list[OutputChunk] = []
    async for event in stream:
        if isinstance(event, OutputChunk):
            chunks.append(event)
        else:
            assert isinstance(event, ExecResult)
            return chunks, event
    raise AssertionError("the stream ended without a result")


def text(chunks: list[OutputChunk], stream: str = "stdout") -> str:
    return "".join(c.data for c in chunks if c.stream == stream)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(*pids: int, within: float = 3.0) -> None:
    await until(lambda: not any(alive(p) for p in pids), within)


def make_agent(pid: int | None, started_at: float | None, workspace: Path) -> Agent:
    now = datetime.now(UTC)
    return Agent(
        id="shell-abc123",
        runtime="shell",
        workspace=workspace,
        pid=pid,
        pid_started_at=started_at,
        status=AgentStatus.IDLE,
        status_source=StatusSource.SPAWN,
        status_at=now,
        created_at=now,
        spec=AgentSpec(runtime="shell"),
    )


def test_declares_the_protocol(runtime: ShellRuntime) -> None:
    assert isinstance(runtime, AgentRuntime)
    assert ShellRuntime.name == "shell"
    assert Capability.PERSISTENT_PROCESS in ShellRuntime.capabilities
    assert Capability.STEER not in ShellRuntime.capabilities


async def test_spawn_records_its_own_process_group(agent: AgentHandle) -> None:
    assert agent.pid is not None
    assert os.getpgid(agent.pid) == agent.pid  # its own group, so kill reaches everything
    assert is_same_process(agent.pid, agent.pid_started_at)


async def test_echo(runtime: ShellRuntime, agent: AgentHandle) -> None:
    chunks, result = await run(runtime, agent, "echo hello")
    assert text(chunks) == "hello\n"
    assert result.status == ExecStatus.SUCCEEDED
    assert result.exit_code == 0
    assert result.output == "hello\n"
    assert result.exec_id == "exec-1"
    assert all(c.exec_id == "exec-1" for c in chunks)


async def test_stderr_is_separate(runtime: ShellRuntime, agent: AgentHandle) -> None:
    chunks, result = await run(runtime, agent, "echo out; echo err >&2")
    assert text(chunks, "stdout") == "out\n"
    assert text(chunks, "stderr") == "err\n"
    assert result.output == "out\n"


async def test_exit_code_is_propagated(runtime: ShellRuntime, agent: AgentHandle) -> None:
    _, result = await run(runtime, agent, "echo partial; exit 3")
    assert result.status == ExecStatus.FAILED
    assert result.exit_code == 3
    _, result = await run(runtime, agent, "false")
    assert (result.status, result.exit_code) == (ExecStatus.FAILED, 1)


async def test_output_streams_before_the_command_ends(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    started = time.monotonic()
    seen: list[tuple[float, object]] = []
    async for event in runtime.exec(agent, "echo a; sleep 1; echo b", exec_id="e", timeout=None):
        seen.append((time.monotonic() - started, event))
    first_at, first = seen[0]
    result_at, result = seen[-1]
    assert isinstance(first, OutputChunk) and first.data == "a\n"
    assert first_at < 0.5
    assert isinstance(result, ExecResult) and result.output == "a\nb\n"
    assert result_at >= 0.9


async def test_output_without_trailing_newline(runtime: ShellRuntime, agent: AgentHandle) -> None:
    chunks, result = await run(runtime, agent, "printf abc")
    assert text(chunks) == "abc"
    assert result.output == "abc"
    assert result.status == ExecStatus.SUCCEEDED


async def test_invalid_utf8_is_replaced(runtime: ShellRuntime, agent: AgentHandle) -> None:
    chunks, result = await run(runtime, agent, r"printf 'ok\377\376\n'; printf '\000x\n' >&2")
    assert text(chunks) == "ok\ufffd\ufffd\n"
    assert text(chunks, "stderr") == "\x00x\n"
    assert result.status == ExecStatus.SUCCEEDED


async def test_a_character_split_across_writes_is_decoded(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    chunks, _ = await run(runtime, agent, r"printf '\303'; sleep 0.2; printf '\251\n'")
    assert text(chunks) == "\u00e9\n"


async def test_stdin_is_empty(runtime: ShellRuntime, agent: AgentHandle) -> None:
    _, result = await run(runtime, agent, 'cat; read -r x; echo "read=$?"')
    assert result.output == "read=1\n"
    # The control pipe was not consumed: the agent still works.
    _, result = await run(runtime, agent, "echo still here")
    assert result.output == "still here\n"


async def test_runs_in_the_workspace_with_the_agent_env(
    runtime: ShellRuntime, agent: AgentHandle, real_workspace: Path
) -> None:
    _, result = await run(runtime, agent, 'pwd -P; echo "$GODEL_AGENT_ID"; echo "$GODEL_TEST_VAR"')
    assert result.output == f"{real_workspace}\nshell-abc123\na 'quoted' value\n"


async def test_execs_do_not_share_shell_state(runtime: ShellRuntime, agent: AgentHandle) -> None:
    await run(runtime, agent, "cd /; FOO=1; export BAR=2")
    _, result = await run(runtime, agent, 'echo "$(basename "$PWD") ${FOO:-unset} ${BAR:-unset}"')
    assert result.output == "work space unset unset\n"


async def test_command_with_quotes_and_positional_params(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    command = "echo \"it's\" '$HOME' \"$#\"\ncat <<'EOF'\n\\x `y`\nEOF"
    _, result = await run(runtime, agent, command)
    assert result.output == "it's $HOME 0\n\\x `y`\n"


async def test_a_forged_end_marker_is_plain_output(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    _, result = await run(runtime, agent, r"printf '\036GODEL:0123abcd:end:0\n'; echo after")
    assert result.output == "\x1eGODEL:0123abcd:end:0\nafter\n"
    assert result.status == ExecStatus.SUCCEEDED


def test_end_marker_split_across_reads() -> None:
    marker = EndMarker("cafe")
    stream = b"out\x1eno\x1eGODEL:cafe:en" + b"d:42\nrest"
    out = b""
    code: int | None = None
    rest = b""
    for i in range(len(stream)):  # one byte per read: the worst split
        piece, found, after = marker.feed(stream[i : i + 1])
        out += piece
        if found is not None:
            code, rest = found, after
            break
    assert (out, code) == (b"out\x1eno", 42)
    assert rest == b""  # "rest" came after the marker, in later reads


async def test_large_output_is_streamed_and_capped(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    chunks, result = await run(runtime, agent, "head -c 3000000 /dev/zero | tr '\\0' a; echo END")
    assert len(chunks) > 1
    assert len(text(chunks)) == 3_000_004
    assert len(result.output) == 1024 * 1024
    assert result.output.endswith("aEND\n")
    assert "3000004" in result.reason
    assert result.status == ExecStatus.SUCCEEDED


async def test_timeout_kills_the_command_tree(runtime: ShellRuntime, agent: AgentHandle) -> None:
    started = time.monotonic()
    chunks, result = await run(runtime, agent, "sh -c 'sleep 30 & echo $!; wait'", limit_s=0.5)
    assert time.monotonic() - started < 2.5
    assert result.status == ExecStatus.TIMED_OUT
    assert result.exit_code == 124
    assert result.reason == "timed out after 0.5s"
    assert text(chunks, "stderr") == ""  # no "Terminated" noise from bash
    await wait_gone(int(text(chunks)))
    _, result = await run(runtime, agent, "echo alive")
    assert result.output == "alive\n"


async def test_abort(runtime: ShellRuntime, agent: AgentHandle) -> None:
    assert await runtime.abort(agent) is False  # nothing runs
    stream = runtime.exec(agent, "sleep 30 & echo $!; wait", exec_id="e", timeout=None)
    first = await anext(stream)
    assert isinstance(first, OutputChunk)
    assert await runtime.abort(agent) is True
    _, result = await drain(stream)
    assert (result.status, result.exit_code) == (ExecStatus.ABORTED, 130)
    await wait_gone(int(first.data))
    _, result = await run(runtime, agent, "echo next")
    assert result.status == ExecStatus.SUCCEEDED


async def test_concurrent_exec_is_refused(runtime: ShellRuntime, agent: AgentHandle) -> None:
    first = runtime.exec(agent, "echo started; sleep 30", exec_id="e1", timeout=None)
    assert isinstance(await anext(first), OutputChunk)
    second = runtime.exec(agent, "echo no", exec_id="e2", timeout=None)
    with pytest.raises(AgentUnavailable, match="agent shell-abc123 is busy with exec e1"):
        await anext(second)
    health = await runtime.health(agent)
    assert health.state == HealthState.HEALTHY
    assert "e1" in health.detail
    await runtime.abort(agent)
    _, result = await drain(first)
    assert result.status == ExecStatus.ABORTED


async def test_an_abandoned_exec_frees_the_agent(runtime: ShellRuntime, agent: AgentHandle) -> None:
    stream = runtime.exec(agent, "sleep 30 & echo $!; wait", exec_id="e1", timeout=None)
    first = await anext(stream)
    assert isinstance(first, OutputChunk)
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_gone(int(first.data))
    deadline = time.monotonic() + 2.5
    while True:
        try:
            _, result = await run(runtime, agent, "echo free")
            break
        except AgentUnavailable:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert result.output == "free\n"


async def test_kill_ends_the_shell_and_its_children(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    assert agent.pid is not None
    stream = runtime.exec(agent, "sleep 30 & echo $!; wait", exec_id="e1", timeout=None)
    first = await anext(stream)
    assert isinstance(first, OutputChunk)
    sleep_pid = int(first.data)
    await runtime.kill(agent)
    _, result = await asyncio.wait_for(drain(stream), 2)
    assert result.status == ExecStatus.INTERRUPTED
    assert result.exit_code is None
    assert "killed" in result.reason
    assert await asyncio.wait_for(runtime.wait_exit(agent), 2) == -signal.SIGTERM
    await wait_gone(agent.pid, sleep_pid)
    assert (await runtime.health(agent)).state == HealthState.DEAD
    await runtime.kill(agent)  # idempotent
    with pytest.raises(AgentUnavailable, match="not running"):
        await run(runtime, agent, "echo no")


async def test_external_sigkill_interrupts_the_exec(
    runtime: ShellRuntime, agent: AgentHandle
) -> None:
    assert agent.pid is not None
    stream = runtime.exec(agent, "sleep 30 & echo $!; wait", exec_id="e1", timeout=None)
    first = await anext(stream)
    assert isinstance(first, OutputChunk)
    os.kill(agent.pid, signal.SIGKILL)
    _, result = await asyncio.wait_for(drain(stream), 2)
    assert result.status == ExecStatus.INTERRUPTED
    assert result.exit_code is None
    assert "exited with code -9" in result.reason
    health = await runtime.health(agent)
    assert health.state == HealthState.DEAD
    assert "-9" in health.detail
    assert await asyncio.wait_for(runtime.wait_exit(agent), 1) == -signal.SIGKILL
    # Nobody can reach what the dead shell left running, so it is cleaned up.
    await wait_gone(int(first.data))


async def test_spawn_fails_for_a_missing_shell(tmp_path: Path, workspace: Path) -> None:
    rt = ShellRuntime(RuntimeContext(home=tmp_path, options={"shell": "/nonexistent/bash"}))
    with pytest.raises(RuntimeFailure, match="cannot start /nonexistent/bash"):
        await rt.spawn("shell-000001", AgentSpec(runtime="shell"), workspace)


async def test_spawn_fails_for_a_shell_that_exits(tmp_path: Path, workspace: Path) -> None:
    rt = ShellRuntime(RuntimeContext(home=tmp_path, options={"shell": "/bin/false"}))
    with pytest.raises(RuntimeFailure, match="exited with code 1 before it was ready"):
        await rt.spawn("shell-000001", AgentSpec(runtime="shell"), workspace)


async def test_spawn_fails_for_a_missing_workspace(runtime: ShellRuntime, tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="is not a directory"):
        await runtime.spawn("shell-000001", AgentSpec(runtime="shell"), tmp_path / "nope")


async def test_recover_terminates_a_surviving_process(
    runtime: ShellRuntime, workspace: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", "sleep 30 & wait", start_new_session=True
    )
    await until(lambda: psutil.Process(proc.pid).children())  # sh started its sleep
    children = psutil.Process(proc.pid).children()
    reason = await runtime.recover(make_agent(proc.pid, process_started_at(proc.pid), workspace))
    assert reason == (
        f"daemon restarted: process {proc.pid} survived but its pipes were lost; terminated it"
    )
    assert await asyncio.wait_for(proc.wait(), 2) == -signal.SIGTERM
    await wait_gone(*(c.pid for c in children))


async def test_recover_reports_a_process_that_ended(runtime: ShellRuntime, workspace: Path) -> None:
    proc = await asyncio.create_subprocess_exec("true")
    started_at = process_started_at(proc.pid) or time.time()
    await proc.wait()
    reason = await runtime.recover(make_agent(proc.pid, started_at, workspace))
    assert reason == f"process {proc.pid} ended while the daemon was down"
    assert await runtime.recover(make_agent(None, None, workspace)) == "no process was recorded"


async def test_recover_leaves_a_reused_pid_alone(runtime: ShellRuntime, workspace: Path) -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "30", start_new_session=True)
    try:
        real_start = process_started_at(proc.pid)
        assert real_start is not None
        assert is_same_process(proc.pid, real_start)
        assert not is_same_process(proc.pid, real_start - 100)
        # Same pid, different start time: someone else's process now.
        reason = await runtime.recover(make_agent(proc.pid, real_start - 100, workspace))
        assert reason == f"process {proc.pid} ended while the daemon was down"
        assert alive(proc.pid)
    finally:
        proc.kill()
        await proc.wait()
