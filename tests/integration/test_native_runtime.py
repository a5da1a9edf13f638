"""The native agent loop against the real scripted model server over HTTP."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import pytest

from core.llm.catalog_types import ModelPrices, ResolvedModel
from core.models import (
    AgentSpec,
    AssistantText,
    ExecResult,
    ExecStatus,
    PolicyViolation,
    RuntimeEvent,
    RuntimeNotice,
    ToolCallFinished,
    ToolCallStarted,
    TurnUsage,
)
from core.runtimes.base import AgentHandle, HealthState, RuntimeContext
from core.runtimes.native import NativeRuntime

PRICES = ModelPrices(input_mtok=Decimal(1), output_mtok=Decimal(2), source="test")


def model_for(server: Any, api: str = "openai") -> ResolvedModel:
    base = server.base_url + "/v1" if api == "openai" else server.base_url
    return ResolvedModel(
        name="scripted",
        provider="scripted",
        api=api,
        base_url=base,
        upstream_id="scripted",
        api_key_env="GODEL_SCRIPTED_API_KEY",
        api_key="sekrit-value",
        prices=PRICES,
        scripted=True,
    )


async def spawn(
    tmp_path: Path, server: Any, api: str = "openai", **options: Any
) -> tuple[NativeRuntime, AgentHandle]:
    rt = NativeRuntime(RuntimeContext(home=tmp_path, options=options))
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    handle = await rt.spawn(
        "native-abc123", AgentSpec(runtime="native"), ws, model=model_for(server, api)
    )
    return rt, handle


async def run(
    rt: NativeRuntime, handle: AgentHandle, text: str, timeout: float | None = 30
) -> tuple[list[RuntimeEvent], ExecResult]:
    events: list[RuntimeEvent] = []
    async for ev in rt.exec(handle, text, exec_id="exec-1", timeout=timeout):
        events.append(ev)
    result = events[-1]
    assert isinstance(result, ExecResult)
    return events[:-1], result


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_run_command_tool_answer_usage_and_cost(
    tmp_path: Path, scripted_server: Any, api: str
) -> None:
    rt, handle = await spawn(tmp_path, scripted_server, api)
    events, result = await run(rt, handle, "run: echo hello")
    calls = [e for e in events if isinstance(e, ToolCallStarted)]
    results = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [(c.name, c.arguments) for c in calls] == [("bash", {"command": "echo hello"})]
    assert [(r.output, r.is_error) for r in results] == [("hello\n", False)]
    answer = "".join(e.text for e in events if isinstance(e, AssistantText))
    assert "hello" in answer and answer == result.output
    assert result.status is ExecStatus.SUCCEEDED and result.exit_code == 0
    turns = [e for e in events if isinstance(e, TurnUsage)]
    assert len(turns) == 2 and all(t.usage.input_tokens > 0 for t in turns)
    u = result.usage
    assert u.input_tokens == sum(t.usage.input_tokens for t in turns)
    assert result.cost_usd == (u.input_tokens * 1 + u.output_tokens * 2) / Decimal(1_000_000)
    # The real key value went over the wire, never the variable's name.
    keys = {
        r.headers.get("authorization") or r.headers.get("x-api-key")
        for r in scripted_server.requests
    }
    assert all("sekrit-value" in (k or "") for k in keys)
    await rt.kill(handle)


async def test_write_read_and_edit_stay_in_the_workspace(
    tmp_path: Path, scripted_server: Any
) -> None:
    rt, handle = await spawn(tmp_path, scripted_server)
    _, result = await run(rt, handle, "write notes/a.txt: hi there")
    assert result.status is ExecStatus.SUCCEEDED
    assert (handle.workspace / "notes" / "a.txt").read_text() == "hi there"
    events, result = await run(rt, handle, "read notes/a.txt")
    assert [e.output for e in events if isinstance(e, ToolCallFinished)] == ["hi there"]
    await rt.kill(handle)


async def test_paths_outside_the_workspace_are_refused(
    tmp_path: Path, scripted_server: Any
) -> None:
    rt, handle = await spawn(tmp_path, scripted_server)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, handle.workspace / "link")
    for target in ("../escape.txt", str(tmp_path / "abs.txt"), "link/x.txt"):
        events, _ = await run(rt, handle, f"write {target}: nope")
        refused = [e for e in events if isinstance(e, PolicyViolation)]
        assert len(refused) == 1 and refused[0].rule == "workspace_confinement", target
        tool = [e for e in events if isinstance(e, ToolCallFinished)]
        assert tool[0].is_error and tool[0].output.startswith("refused:")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "abs.txt").exists()
    assert not (outside / "x.txt").exists()
    await rt.kill(handle)


async def test_abort_kills_the_running_tool(tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(tmp_path, scripted_server)
    events: list[RuntimeEvent] = []

    async def consume() -> None:
        async for ev in rt.exec(handle, "run: sleep 30", exec_id="exec-1", timeout=None):
            events.append(ev)

    task = asyncio.create_task(consume())

    def running_sleeps() -> list[psutil.Process]:
        out = []
        for p in psutil.Process().children(recursive=True):
            try:
                if "sleep" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    for _ in range(500):  # until the tool's command runs
        if any(isinstance(e, ToolCallStarted) for e in events) and running_sleeps():
            break
        await asyncio.sleep(0.02)
    sleeps = running_sleeps()
    assert sleeps
    assert await rt.abort(handle) is True
    await asyncio.wait_for(task, 10)
    result = events[-1]
    assert isinstance(result, ExecResult)
    assert (result.status, result.exit_code) == (ExecStatus.ABORTED, 130)
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in sleeps)
    # The conversation stays usable after an abort.
    _, again = await run(rt, handle, "hello")
    assert again.status is ExecStatus.SUCCEEDED
    assert await rt.abort(handle) is False
    await rt.kill(handle)


async def test_timeout(tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(tmp_path, scripted_server)
    _, result = await run(rt, handle, "run: sleep 30", timeout=0.5)
    assert (result.status, result.exit_code) == (ExecStatus.TIMED_OUT, 124)
    await rt.kill(handle)


async def test_steer_is_delivered_between_turns(tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(tmp_path, scripted_server)
    events: list[RuntimeEvent] = []
    tool_started = asyncio.Event()

    async def consume() -> None:
        async for ev in rt.exec(handle, "run: sleep 1", exec_id="exec-1", timeout=30):
            events.append(ev)
            if isinstance(ev, ToolCallStarted):
                tool_started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(tool_started.wait(), 10)  # mid-turn: the steer waits for its end
    assert await rt.steer(handle, "also say banana") is True
    await asyncio.wait_for(task, 20)
    assert any(isinstance(e, RuntimeNotice) and "banana" in e.message for e in events)
    bodies = [str(r.body) for r in scripted_server.requests]
    assert any("also say banana" in b for b in bodies)
    assert await rt.steer(handle, "nobody listens") is False
    await rt.kill(handle)


async def test_endpoint_error_fails_the_exec(tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(tmp_path, scripted_server)
    _, result = await run(rt, handle, "fail: 400")
    assert result.status is ExecStatus.FAILED and result.exit_code == 1
    assert "400" in result.reason
    await rt.kill(handle)


async def test_turn_limit(tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(tmp_path, scripted_server, max_turns=1)
    _, result = await run(rt, handle, "run: echo x")
    assert result.status is ExecStatus.FAILED
    assert "turn limit reached (1 turns)" in result.reason
    await rt.kill(handle)


async def test_kill_ends_the_agent(tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(tmp_path, scripted_server)
    waiter = asyncio.create_task(rt.wait_exit(handle))
    assert (await rt.health(handle)).state is HealthState.HEALTHY
    await rt.kill(handle)
    assert await asyncio.wait_for(waiter, 5) == 0
    assert (await rt.health(handle)).state is HealthState.DEAD
    await rt.kill(handle)  # idempotent
