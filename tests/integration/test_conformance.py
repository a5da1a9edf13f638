"""One conformance suite for every registered runtime, held to what it declares.

Each runtime runs spawn / exec / abort / timeout / steer / health / kill against real
processes and, for LLM runtimes, the real scripted model server over HTTP. A capability
the runtime declares must work; one it does not declare is not tested.
"""

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
    ExecResult,
    ExecStatus,
    OutputChunk,
    RuntimeEvent,
    ToolCallStarted,
)
from core.runtimes.base import AgentHandle, AgentRuntime, Capability, HealthState, RuntimeContext
from core.runtimes.registry import RuntimeRegistry
from tests.conftest import until

# What to send each runtime: a quick input whose result mentions "hello", and a long one.
INPUTS: dict[str, tuple[str, str]] = {
    "shell": ("echo hello", "sleep 30"),
    "native": ("run: echo hello", "run: sleep 30"),
    "pi": ("run: echo hello", "run: sleep 30"),
}
# Runtimes that run nothing have no output to check and nothing long to abort.
NOTHING_RUNS = {"noop"}

REGISTRY = RuntimeRegistry.load(lambda name: RuntimeContext(home=Path("/nonexistent")))
RUNTIMES = [info.name for info in REGISTRY.info() if info.error is None]


def pi_available() -> bool:
    from core.errors import RuntimeFailure
    from core.runtimes.pi import PiRuntime

    try:
        PiRuntime(RuntimeContext(home=Path("/nonexistent"))).find_pi()
    except RuntimeFailure:
        return False
    return True


@pytest.fixture(params=RUNTIMES)
def runtime_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name in NOTHING_RUNS:
        pytest.skip(f"{name} runs nothing: conformance does not apply")
    if name not in INPUTS:
        pytest.skip(f"no conformance inputs for runtime {name!r}: add them to INPUTS")
    if name == "pi" and not pi_available():
        if os.environ.get("CI"):
            pytest.fail("the pi binary is not installed (run `make setup`)")
        pytest.skip("the pi binary is not installed (run `make setup`)")
    return name


async def spawn(name: str, tmp_path: Path, server: Any) -> tuple[AgentRuntime, AgentHandle]:
    registry = RuntimeRegistry.load(lambda n: RuntimeContext(home=tmp_path))
    rt = registry.get(name)
    model = None
    if Capability.MODEL in rt.capabilities:
        model = ResolvedModel(
            name="scripted",
            provider="scripted",
            api="openai",
            base_url=server.base_url + "/v1",
            upstream_id="scripted",
            api_key_env="GODEL_SCRIPTED_API_KEY",
            api_key="k",
            prices=ModelPrices(input_mtok=Decimal(1), output_mtok=Decimal(2)),
            scripted=True,
        )
    ws = tmp_path / "ws"
    ws.mkdir()
    handle = await rt.spawn(f"{name}-c0ffee", AgentSpec(runtime=name), ws, model=model)
    return rt, handle


async def collect(
    rt: AgentRuntime, handle: AgentHandle, text: str, timeout: float | None = 60
) -> tuple[list[RuntimeEvent], ExecResult]:
    events: list[RuntimeEvent] = []
    async for ev in rt.exec(handle, text, exec_id="exec-conf", timeout=timeout):
        events.append(ev)
    assert isinstance(events[-1], ExecResult)
    return events[:-1], events[-1]


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _sleeps() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "sleep" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


async def start_long(
    rt: AgentRuntime,
    handle: AgentHandle,
    text: str,
    events: list[RuntimeEvent],
    timeout: float | None = None,
) -> asyncio.Task[None]:
    async def consume() -> None:
        async for ev in rt.exec(handle, text, exec_id="exec-long", timeout=timeout):
            events.append(ev)

    task = asyncio.create_task(consume())
    for _ in range(500):  # until the long command runs
        if _sleeps():
            break
        await asyncio.sleep(0.02)
    assert _sleeps(), "the long command never started"
    return task


async def test_spawn_exec_health(runtime_name: str, tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(runtime_name, tmp_path, scripted_server)
    caps = rt.capabilities
    if Capability.PERSISTENT_PROCESS in caps:
        assert handle.pid is not None and psutil.pid_exists(handle.pid)
    quick, _ = INPUTS[runtime_name]
    events, result = await collect(rt, handle, quick)
    assert result.status is ExecStatus.SUCCEEDED and result.exit_code == 0
    seen = result.output + "".join(e.data for e in events if isinstance(e, OutputChunk))
    assert "hello" in seen
    if Capability.TOOLS in caps:
        assert any(isinstance(e, ToolCallStarted) and e.name == "bash" for e in events)
    if Capability.COST in caps:
        assert result.usage.total_tokens > 0 and result.cost_usd is not None
        assert result.cost_usd > 0
    if Capability.HEALTH in caps:
        assert (await rt.health(handle)).state is HealthState.HEALTHY
    await rt.kill(handle)


async def test_abort(runtime_name: str, tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(runtime_name, tmp_path, scripted_server)
    if Capability.ABORT not in rt.capabilities:
        await rt.kill(handle)  # a skip must not leave the agent's process behind
        pytest.skip(f"{runtime_name} does not declare abort")
    events: list[RuntimeEvent] = []
    task = await start_long(rt, handle, INPUTS[runtime_name][1], events)
    assert await rt.abort(handle) is True
    await asyncio.wait_for(task, 20)
    result = events[-1]
    assert isinstance(result, ExecResult) and result.status is ExecStatus.ABORTED
    assert not _sleeps()
    _, again = await collect(rt, handle, INPUTS[runtime_name][0])  # still usable
    assert again.status is ExecStatus.SUCCEEDED
    assert await rt.abort(handle) is False
    await rt.kill(handle)


async def test_timeout(runtime_name: str, tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(runtime_name, tmp_path, scripted_server)
    if Capability.TIMEOUT not in rt.capabilities:
        await rt.kill(handle)  # a skip must not leave the agent's process behind
        pytest.skip(f"{runtime_name} does not declare timeout")
    _, result = await collect(rt, handle, INPUTS[runtime_name][1], timeout=1.5)
    assert (result.status, result.exit_code) == (ExecStatus.TIMED_OUT, 124)
    await until(lambda: not _sleeps())  # the command's processes were killed
    await rt.kill(handle)


async def test_steer(runtime_name: str, tmp_path: Path, scripted_server: Any) -> None:
    rt, handle = await spawn(runtime_name, tmp_path, scripted_server)
    if Capability.STEER not in rt.capabilities:
        await rt.kill(handle)  # a skip must not leave the agent's process behind
        pytest.skip(f"{runtime_name} does not declare steer")
    events: list[RuntimeEvent] = []
    task = await start_long(rt, handle, "run: sleep 3", events)
    assert await rt.steer(handle, "please also say banana") is True
    await asyncio.wait_for(task, 30)
    assert any("please also say banana" in str(r.body) for r in scripted_server.requests)
    assert await rt.steer(handle, "too late") is False
    await rt.kill(handle)


async def test_kill_leaves_no_process(
    runtime_name: str, tmp_path: Path, scripted_server: Any
) -> None:
    before = _descendants()
    rt, handle = await spawn(runtime_name, tmp_path, scripted_server)
    events: list[RuntimeEvent] = []
    task = await start_long(rt, handle, INPUTS[runtime_name][1], events)
    waiter = asyncio.create_task(rt.wait_exit(handle))
    await rt.kill(handle)
    await asyncio.wait_for(waiter, 15)
    await asyncio.wait_for(task, 15)
    result = events[-1]
    assert isinstance(result, ExecResult)
    assert result.status is not ExecStatus.SUCCEEDED

    def leftovers() -> set[int]:
        alive = set()
        for pid in _descendants() - before:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.add(pid)
            except psutil.NoSuchProcess:
                pass
        return alive

    for _ in range(100):
        if not leftovers():
            break
        await asyncio.sleep(0.05)
    assert leftovers() == set()
    if Capability.HEALTH in rt.capabilities:
        assert (await rt.health(handle)).state is HealthState.DEAD
    await rt.kill(handle)  # idempotent
