"""Memory per exec and per reader is bounded: `agent logs` streams the store page by page,
stored rows are small, a slow caller of an exec misses chunks rather than piling them up,
and an exec's bookkeeping goes with it even when it is cancelled."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from core.engine import Engine, execs
from core.events import ExecFinished
from core.models import AgentSpec, ExecResult, ExecStatus, LogLine, OutputChunk, RuntimeNotice
from tests.engine.conftest import MakeEngine, Match, next_event, subscribe

CAP = 1024 * 1024
PRINTED = 20_000_000


async def test_agent_logs_streams_a_big_exec_in_bounded_pages(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small rows and pages, so that a 1 MiB exec takes many of each.
    monkeypatch.setattr(execs, "OUTPUT_ROW_MAX", 10_000)
    monkeypatch.setattr(execs, "LOGS_PAGE_BYTES", 100_000)
    engine = await make_engine(defaults={"exec_output_max_bytes": CAP})
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    command = f"head -c {PRINTED} /dev/zero | tr '\\0' x"
    results = [ev async for ev in engine.exec(agent.id, command, actor="test")]
    result = results[-1]
    assert isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED

    store = engine.ctx.store
    pages: list[list[LogLine]] = []
    read_page = store.read_output

    async def recorded(agent_id: str, **kw: int | None) -> list[LogLine]:
        page = await read_page(agent_id, **kw)  # type: ignore[arg-type]
        pages.append(page)
        return page

    monkeypatch.setattr(store, "read_output", recorded)
    streamed = [line async for line in engine.logs(agent.id)]
    monkeypatch.undo()

    stored = await store.read_output(agent.id, limit=1_000_000)  # unpaged: all of it
    assert streamed == stored
    stdout = [line for line in streamed if line.stream == "stdout"]
    assert sum(len(line.data) for line in stdout) == CAP
    # Every row is at most one row's size; every page stops at the line that reaches the
    # page size: one page, not the exec, is what a reader holds.
    assert max(len(line.data) for line in streamed) <= 10_000
    sizes = [sum(len(line.data) for line in page) for page in pages]
    assert len(pages) >= CAP // 100_000 and pages[-1] == []
    assert max(sizes) < 100_000 + 10_000
    notice = streamed[-1]
    assert notice.stream == "system"
    assert notice.data.startswith(f"output truncated: {PRINTED - CAP:,} bytes not kept")


async def test_a_slow_caller_misses_chunks_not_the_store(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execs, "CALLER_BEHIND_MAX", 100_000)
    engine = await make_engine(defaults={"exec_output_max_bytes": CAP})
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    ends = subscribe(engine, "ends", "exec.finished")
    stream = engine.exec(agent.id, f"head -c {CAP} /dev/zero | tr '\\0' x", actor="test")
    first = await anext(stream)  # the exec runs; this caller reads nothing more until it ends
    assert isinstance(first, OutputChunk)
    await next_event(ends, Match(ExecFinished, agent_id=agent.id))
    rest = [ev async for ev in stream]

    result = rest[-1]
    assert isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED
    chunks = [first, *(ev for ev in rest if isinstance(ev, OutputChunk))]
    got = sum(len(c.data) for c in chunks)
    assert got < CAP
    assert got <= 100_000 + 2 * 65_536  # what was queued, plus the chunk in hand
    # Each gap is said where it is, with its size: what was streamed and what was said
    # missing add up to all the output.
    notices = [ev for ev in rest if isinstance(ev, RuntimeNotice)]
    assert notices
    missing = 0
    for notice in notices:
        count, says = notice.message.split(" ", 1)
        assert says.startswith("characters of output not streamed here (read too slowly)")
        assert says.endswith(f"they are stored: `godel agent logs {agent.id}`")
        missing += int(count.replace(",", ""))
    assert got + missing == CAP
    stored = await engine.ctx.store.read_output(agent.id)
    assert sum(len(line.data) for line in stored if line.stream == "stdout") == CAP


async def test_a_cancelled_exec_leaves_no_output_budget(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    stream = engine.exec(agent.id, "echo started; sleep 30", actor="test")
    assert isinstance(await anext(stream), OutputChunk)
    live = engine.ctx.live.get(agent.id)
    assert live is not None and live.exec_task is not None
    task = live.exec_task
    assert engine.s.execs._budgets  # the running exec's
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert engine.s.execs._budgets == {}
    await stream.aclose()  # type: ignore[attr-defined]  (aborts the command)
