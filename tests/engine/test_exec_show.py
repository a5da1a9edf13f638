"""Reading one exec by its id: its record and its output, every stream, in order."""

from __future__ import annotations

import pytest

from core.engine import Engine, execs
from core.errors import ExecNotFound
from core.events import AgentOutput, ExecFinished
from core.models import AgentSpec, ExecResult, ExecStatus, OutputChunk
from tests.engine.conftest import MakeEngine, Match, next_event, pending, subscribe


async def test_an_exec_is_read_by_its_id_with_stdout_and_stderr(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    results = [
        ev
        async for ev in engine.exec(agent.id, "echo out; echo err >&2; exit 3", actor="test")
        if isinstance(ev, ExecResult)
    ]
    (result,) = results
    shown = await engine.get_exec(result.exec_id)
    assert shown.record.id == result.exec_id and shown.record.agent_id == agent.id
    assert (shown.record.status, shown.record.exit_code) == (ExecStatus.FAILED, 3)
    assert shown.record.finished_at is not None
    by_stream = {line.stream: line.data for line in shown.output}
    assert by_stream == {"stdout": "out\n", "stderr": "err\n"}
    assert not shown.truncated

    first = await engine.get_exec(result.exec_id, limit=1)
    assert len(first.output) == 1 and first.truncated
    assert [x.id for x in await engine.list_execs(agent.id)] == [result.exec_id]


async def test_an_unknown_exec_is_named(engine: Engine) -> None:
    with pytest.raises(ExecNotFound) as e:
        await engine.get_exec("exec-000000000000")
    assert str(e.value) == "exec 'exec-000000000000' not found"


async def test_a_huge_output_is_shown_up_to_a_byte_cap(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execs, "SHOW_MAX_BYTES", 100_000)
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    # ~1 MB in 64 KiB-ish chunks: more than the cap, far fewer lines than the limit.
    command = "head -c 1000000 /dev/zero | tr '\\0' x; echo"
    results = [ev async for ev in engine.exec(agent.id, command, actor="test")]
    result = results[-1]
    assert isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED
    shown = await engine.get_exec(result.exec_id)
    assert shown.truncated
    size = sum(len(line.data) for line in shown.output)
    assert 0 < size <= 100_000


async def test_output_past_the_exec_cap_is_counted_not_stored_nor_published(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(defaults={"exec_output_max_bytes": 4096})
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    ends = subscribe(engine, "ends", "exec.finished")
    outputs = subscribe(engine, "outputs", "agent.output")
    command = "head -c 1000000 /dev/zero | tr '\\0' x; echo"
    results = [ev async for ev in engine.exec(agent.id, command, actor="test")]
    result = results[-1]
    assert isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED
    finished = await next_event(ends, Match(ExecFinished, exec_id=result.exec_id))
    published = pending(outputs, Match(AgentOutput, exec_id=result.exec_id))
    dropped = 1_000_001 - 4096
    assert finished.output_dropped == dropped
    # Events stop at the cap, as does what the caller streamed and the result.
    assert sum(len(e.data) for e in published) == 4096
    streamed = [ev for ev in results if isinstance(ev, OutputChunk)]
    assert sum(len(ev.data) for ev in streamed) == 4096
    assert len(result.output) <= 4096
    notice = f"output truncated: {dropped:,} bytes not kept (cap 4,096 bytes; "
    assert notice in result.reason

    shown = await engine.get_exec(result.exec_id)
    stored = [line for line in shown.output if line.stream == "stdout"]
    assert sum(len(line.data) for line in stored) == 4096
    assert shown.output[-1].stream == "system"
    assert shown.output[-1].data.startswith(notice)
    assert shown.output[-1].data.endswith("[defaults] exec_output_max_bytes)")
