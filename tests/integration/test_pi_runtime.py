"""The pi runtime against the real pi binary and Godel's scripted model server.

Skipped when pi is not installed (``make setup`` installs it) unless ``CI`` is set: in CI
a missing pi must fail the suite, not hide it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import pytest

from core.errors import AgentUnavailable, InvalidInput, RuntimeFailure
from core.llm.catalog_types import ModelPrices, ResolvedModel
from core.llm.scripted import ScriptedServer
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    AssistantText,
    ExecResult,
    ExecStatus,
    OutputChunk,
    RuntimeEvent,
    RuntimeNotice,
    StatusSource,
    ToolCallFinished,
    ToolCallStarted,
    TurnUsage,
)
from core.runtimes.base import AgentHandle, HealthState, RuntimeContext
from core.runtimes.pi import PiRuntime
from core.runtimes.pi import runtime as pi_runtime_module
from tests.conftest import gone, until


def _pi_installed() -> bool:
    try:
        PiRuntime(RuntimeContext(home=Path("/nonexistent"))).find_pi()
    except RuntimeFailure:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _pi_installed() and not os.environ.get("CI"),
    reason="pi is not installed: run `make setup` (in CI, with CI set, these tests fail instead)",
)

KEY_ENV = "GODEL_SCRIPTED_API_KEY"
KEY = "scripted-key"
PRICES = ModelPrices(input_mtok=Decimal(1), output_mtok=Decimal(2))
# No hidden SDK-level retries: pi's own (visible) retries are what these tests look at,
# and a 503 then costs 3 requests instead of 9 (with 0.4 s + 0.9 s back-offs each).
FAST_SETTINGS = {"retry": {"provider": {"maxRetries": 0}}}


def scripted_model(server: ScriptedServer, api: str = "openai") -> ResolvedModel:
    return ResolvedModel(
        name="scripted",
        provider="scripted",
        api="openai" if api == "openai" else "anthropic",
        base_url=server.base_url + "/v1" if api == "openai" else server.base_url,
        upstream_id="scripted",
        api_key_env=KEY_ENV,
        api_key=KEY,
        prices=PRICES,
        context_window=32000,
        max_tokens=4096,
        scripted=True,
    )


@dataclass
class Harness:
    """Spawns pi agents in a temp dir and kills them all at the end."""

    tmp: Path
    server: ScriptedServer
    handles: list[tuple[PiRuntime, AgentHandle]] = field(default_factory=list)

    def runtime(self, **options: Any) -> PiRuntime:
        options.setdefault("pi_settings", FAST_SETTINGS)
        return PiRuntime(RuntimeContext(home=self.tmp / "home", options=options))

    async def spawn(
        self, rt: PiRuntime | None = None, *, api: str = "openai", agent_id: str = "pi-test01"
    ) -> tuple[PiRuntime, AgentHandle]:
        rt = rt or self.runtime()
        ws = self.tmp / "ws"
        ws.mkdir(exist_ok=True)
        handle = await rt.spawn(
            agent_id, AgentSpec(runtime="pi"), ws, model=scripted_model(self.server, api)
        )
        self.handles.append((rt, handle))
        return rt, handle


@pytest.fixture
def server(scripted_server: ScriptedServer) -> Iterator[ScriptedServer]:
    yield scripted_server


@pytest.fixture
async def harness(tmp_path: Path, server: ScriptedServer) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, server)
    yield h
    for rt, handle in h.handles:
        await rt.kill(handle)


async def collect(
    rt: PiRuntime, handle: AgentHandle, text: str, timeout: float | None = 20.0
) -> tuple[list[RuntimeEvent], ExecResult]:
    events = [ev async for ev in rt.exec(handle, text, exec_id="exec-1", timeout=timeout)]
    result = events[-1]
    assert isinstance(result, ExecResult), events
    return events[:-1], result


async def wait_child(pi_pid: int, name: str = "sleep", timeout: float = 5.0) -> psutil.Process:
    """A descendant of pi named ``name`` (a tool process), once it exists."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for p in psutil.Process(pi_pid).children(recursive=True):
            try:
                if p.name() == name:
                    return p
            except psutil.NoSuchProcess:
                continue
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} process under pi {pi_pid}")


async def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if gone(pid):
            return True
        await asyncio.sleep(0.05)
    return gone(pid)


def expected_cost(input_tokens: int, output_tokens: int) -> Decimal:
    return (input_tokens * PRICES.input_mtok + output_tokens * PRICES.output_mtok) / Decimal(
        1_000_000
    )


# --- spawn -------------------------------------------------------------------------


async def test_spawn_is_ready_with_the_model_asked_for(harness: Harness) -> None:
    rt, handle = await harness.spawn()
    st = handle.state["pi"]
    resp = await st.ask({"type": "get_state"}, 5.0)
    assert resp is not None and resp.success
    assert resp.data["model"]["provider"] == "godel"
    assert resp.data["model"]["id"] == "scripted"
    assert resp.data["isStreaming"] is False
    agent_dir = harness.tmp / "home" / "agents" / "pi-test01" / "pi"
    models = json.loads((agent_dir / "models.json").read_text())
    assert models["providers"]["godel"]["apiKey"] == KEY_ENV
    settings = json.loads((agent_dir / "settings.json").read_text())
    assert settings["compaction"] == {"enabled": False}
    # The key lives in pi's environment only, never in a file.
    for path in agent_dir.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
    assert (await rt.health(handle)).state is HealthState.HEALTHY
    assert handle.pid is not None and handle.pid_started_at is not None


async def test_spawn_needs_a_model(harness: Harness) -> None:
    with pytest.raises(InvalidInput, match="--model"):
        await harness.runtime().spawn("pi-x", AgentSpec(runtime="pi"), harness.tmp, model=None)


async def test_missing_pi_binary_says_make_setup(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = harness.runtime(pi_bin=str(harness.tmp / "no" / "pi"))
    with pytest.raises(RuntimeFailure, match="make setup"):
        await harness.spawn(rt)
    # Nothing configured and nothing installed: the bundled path and PATH are tried.
    monkeypatch.delenv("GODEL_PI_BIN", raising=False)
    monkeypatch.setenv("PATH", str(harness.tmp / "empty"))
    monkeypatch.setattr(pi_runtime_module, "bundled_pi_bin", lambda: harness.tmp / "none" / "pi")
    with pytest.raises(RuntimeFailure, match="make setup"):
        await harness.spawn(harness.runtime())


async def test_spawn_fails_when_pi_selects_another_model(harness: Harness) -> None:
    # A later --model wins in pi's CLI: get_state then disagrees with what Godel asked.
    rt = harness.runtime(pi_args=["--model", "other-model"])
    with pytest.raises(RuntimeFailure, match=r"godel/other-model instead of godel/scripted"):
        await harness.spawn(rt)
    assert not [p for p in psutil.Process().children(recursive=True) if "rpc" in p.cmdline()]


async def test_spawn_reports_pi_startup_errors(harness: Harness) -> None:
    rt = harness.runtime(pi_args=["--provider", "nope"])
    with pytest.raises(RuntimeFailure, match=r"exited with code 1.*Unknown provider"):
        await harness.spawn(rt)


async def test_pi_sees_its_own_key_and_no_other_secret_of_the_daemons(
    harness: Harness, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {"ANTHROPIC_API_KEY": "sk-ant-daemon", "OPENAI_API_KEY": "sk-oai-daemon"}
    for name, value in {**secrets, "SECRET_X": "x-daemon", "PASS_ME": "through"}.items():
        monkeypatch.setenv(name, value)
    rt = PiRuntime(
        RuntimeContext(
            home=harness.tmp / "home",
            options={"pi_settings": FAST_SETTINGS},
            env_passthrough=("PASS_ME",),
        )
    )
    rt, handle = await harness.spawn(rt)
    events, result = await collect(rt, handle, "run: env")
    assert result.status is ExecStatus.SUCCEEDED, result
    [out] = [e.output for e in events if isinstance(e, ToolCallFinished)]
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env[KEY_ENV] == KEY and env["PASS_ME"] == "through" and env["PATH"]
    assert not {*secrets, "SECRET_X"} & env.keys(), env
    assert {req.api_key for req in server.requests} == {KEY}


# --- exec --------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_run_echo_hello(harness: Harness, server: ScriptedServer, api: str) -> None:
    rt, handle = await harness.spawn(api=api)
    events, result = await collect(rt, handle, "run: echo hello")

    started = [e for e in events if isinstance(e, ToolCallStarted)]
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [(e.name, e.arguments) for e in started] == [("bash", {"command": "echo hello"})]
    assert [(e.name, e.output, e.is_error) for e in finished] == [("bash", "hello\n", False)]
    assert started[0].call_id == finished[0].call_id
    # bash output also streams as stdout, for `godel agent logs`.
    assert "".join(e.data for e in events if isinstance(e, OutputChunk)) == "hello\n"
    text = "".join(e.text for e in events if isinstance(e, AssistantText))
    assert "hello" in text

    assert result.status is ExecStatus.SUCCEEDED and result.exit_code == 0, result
    assert result.output == text and "echo hello" in result.output
    usage = result.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert result.cost_usd == expected_cost(usage.input_tokens, usage.output_tokens)
    turns = [e for e in events if isinstance(e, TurnUsage)]
    assert len(turns) == 2 and all(t.model == "scripted" for t in turns)
    assert sum(t.usage.total_tokens for t in turns) == usage.total_tokens
    assert sum((t.cost_usd or Decimal(0) for t in turns), Decimal(0)) == result.cost_usd

    assert len(server.requests) == 2
    for req in server.requests:
        assert req.api == api
        assert req.api_key == KEY  # the value, never the variable's name

    # The agent takes the next prompt at once.
    _, again = await collect(rt, handle, "hello there")
    assert again.status is ExecStatus.SUCCEEDED
    assert again.output == "You said: hello there"


async def test_unknown_prices_mean_unknown_cost(harness: Harness) -> None:
    rt = harness.runtime()
    ws = harness.tmp / "ws"
    ws.mkdir()
    model = scripted_model(harness.server).model_copy(update={"prices": None})
    handle = await rt.spawn("pi-test02", AgentSpec(runtime="pi"), ws, model=model)
    harness.handles.append((rt, handle))
    events, result = await collect(rt, handle, "hi")
    assert result.status is ExecStatus.SUCCEEDED
    assert result.usage.total_tokens > 0 and result.cost_usd is None
    assert [e.cost_usd for e in events if isinstance(e, TurnUsage)] == [None]


async def test_one_exec_at_a_time(harness: Harness) -> None:
    rt, handle = await harness.spawn()
    gen = rt.exec(handle, "slow: one two three", exec_id="exec-1", timeout=10)
    first = await anext(gen)
    assert isinstance(first, AssistantText | TurnUsage | RuntimeNotice)
    with pytest.raises(AgentUnavailable, match="busy"):
        await anext(rt.exec(handle, "hi", exec_id="exec-2", timeout=10))
    health = await rt.health(handle)  # get_state while busy is answered, by id
    assert health.state is HealthState.HEALTHY and "exec-1" in health.detail
    rest = [ev async for ev in gen]
    result = rest[-1]
    assert isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED
    assert result.output == "one two three"


async def test_steer_is_delivered_between_turns(harness: Harness, server: ScriptedServer) -> None:
    rt, handle = await harness.spawn()
    assert await rt.steer(handle, "nobody listens") is False  # idle

    events: list[RuntimeEvent] = []

    async def run() -> None:
        async for ev in rt.exec(handle, "run: sleep 1", exec_id="exec-1", timeout=20):
            events.append(ev)

    task = asyncio.create_task(run())
    await wait_child(handle.pid or 0)
    assert await rt.steer(handle, "also say banana") is True
    await asyncio.wait_for(task, 20)

    result = events[-1]
    assert isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED, result
    notices = [e.message for e in events if isinstance(e, RuntimeNotice)]
    assert "steer delivered: also say banana" in notices
    # The model saw the steer in a request made after the bash result.
    assert len(server.requests) == 2
    assert "also say banana" not in json.dumps(server.requests[0].body)
    assert "also say banana" in json.dumps(server.requests[1].body)
    assert result.output == "You said: also say banana"


async def test_abort_stops_the_running_tool(harness: Harness) -> None:
    rt, handle = await harness.spawn()
    events: list[RuntimeEvent] = []

    async def run() -> None:
        async for ev in rt.exec(handle, "run: sleep 30", exec_id="exec-1", timeout=60):
            events.append(ev)

    task = asyncio.create_task(run())
    sleeper = await wait_child(handle.pid or 0)
    assert await rt.abort(handle) is True
    await asyncio.wait_for(task, 10)
    result = events[-1]
    assert isinstance(result, ExecResult)
    assert result.status is ExecStatus.ABORTED and result.exit_code == 130, result
    assert await wait_gone(sleeper.pid)
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert finished and finished[0].is_error
    assert await rt.abort(handle) is False  # nothing runs any more
    _, again = await collect(rt, handle, "still there?")
    assert again.status is ExecStatus.SUCCEEDED


async def test_timeout_aborts_the_exec(harness: Harness) -> None:
    rt, handle = await harness.spawn()
    _, result = await collect(rt, handle, "run: sleep 30", timeout=1.0)
    assert result.status is ExecStatus.TIMED_OUT and result.exit_code == 124, result
    assert "timed out after 1s" in result.reason
    assert 1.0 <= result.duration_s < 5.0
    assert not [p for p in psutil.Process(handle.pid or 0).children(recursive=True)]
    _, again = await collect(rt, handle, "hi")
    assert again.status is ExecStatus.SUCCEEDED


async def test_server_error_ends_after_pis_retries(
    harness: Harness, server: ScriptedServer
) -> None:
    rt, handle = await harness.spawn()
    events, result = await collect(rt, handle, "fail: 503")
    assert result.status is ExecStatus.FAILED and result.exit_code == 1, result
    assert "503" in result.reason and "after 2 retries" in result.reason
    # One request per pi attempt: the exec did not end at the first agent_end.
    assert len(server.requests) == 3
    notices = [e.message for e in events if isinstance(e, RuntimeNotice)]
    assert len([n for n in notices if "retry" in n]) == 2
    _, again = await collect(rt, handle, "hi")
    assert again.status is ExecStatus.SUCCEEDED and len(server.requests) == 4


async def test_client_error_fails_without_retry(harness: Harness, server: ScriptedServer) -> None:
    rt, handle = await harness.spawn()
    _, result = await collect(rt, handle, "fail: 400")
    assert result.status is ExecStatus.FAILED and "400" in result.reason
    assert len(server.requests) == 1
    assert result.duration_s < 3.0


# --- the process -------------------------------------------------------------------


async def test_kill_ends_pi_and_its_tool_processes(harness: Harness) -> None:
    rt, handle = await harness.spawn()
    events: list[RuntimeEvent] = []

    async def run() -> None:
        async for ev in rt.exec(handle, "run: sleep 30", exec_id="exec-1", timeout=60):
            events.append(ev)

    task = asyncio.create_task(run())
    sleeper = await wait_child(handle.pid or 0)
    await rt.kill(handle)
    await asyncio.wait_for(task, 10)
    assert gone(handle.pid or 0)
    assert await wait_gone(sleeper.pid, 1.0)
    result = events[-1]
    assert isinstance(result, ExecResult)
    assert result.status is ExecStatus.INTERRUPTED and result.reason == "agent was killed"
    assert (await rt.health(handle)).state is HealthState.DEAD
    assert await rt.wait_exit(handle) is not None
    await rt.kill(handle)  # twice is fine


async def test_pi_dying_mid_exec_interrupts_it(harness: Harness) -> None:
    rt, handle = await harness.spawn()
    events: list[RuntimeEvent] = []

    async def run() -> None:
        async for ev in rt.exec(handle, "run: sleep 30", exec_id="exec-1", timeout=60):
            events.append(ev)

    task = asyncio.create_task(run())
    sleeper = await wait_child(handle.pid or 0)
    # SIGKILL only once the runtime has recorded the tool process (it scans while tools run).
    await until(lambda: sleeper.pid in handle.state["pi"].tools_seen)
    os.kill(handle.pid or 0, signal.SIGKILL)
    await asyncio.wait_for(task, 10)
    result = events[-1]
    assert isinstance(result, ExecResult)
    assert result.status is ExecStatus.INTERRUPTED, result
    assert "pi exited with code -9" in result.reason
    assert await rt.wait_exit(handle) == -9
    # SIGKILL leaves pi no chance to end its detached tool shells: Godel does.
    assert await wait_gone(sleeper.pid)
    with pytest.raises(AgentUnavailable):
        await anext(rt.exec(handle, "hi", exec_id="exec-2", timeout=5))


async def test_recover_ends_a_surviving_pi_and_its_tools(harness: Harness) -> None:
    rt, handle = await harness.spawn()
    task = asyncio.create_task(collect(rt, handle, "run: sleep 30", timeout=60))
    sleeper = await wait_child(handle.pid or 0)
    now = datetime.now(UTC)
    agent = Agent(
        id=handle.agent_id,
        runtime="pi",
        workspace=handle.workspace,
        pid=handle.pid,
        pid_started_at=handle.pid_started_at,
        status=AgentStatus.BUSY,
        status_source=StatusSource.SPAWN,
        status_at=now,
        created_at=now,
        spec=AgentSpec(runtime="pi"),
    )
    # A restarted daemon has a fresh runtime object and no handle.
    reason = await harness.runtime().recover(agent)
    assert "terminated" in reason
    assert gone(handle.pid or 0)
    assert await wait_gone(sleeper.pid, 2.0)
    _, result = await asyncio.wait_for(task, 10)
    assert result.status is ExecStatus.INTERRUPTED
