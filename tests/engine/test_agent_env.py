"""Agents get a scrubbed environment: the harmless variables, what config lets through,
their own env and id, and (LLM runtimes) only their own provider's key, where it is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.engine import Engine
from core.models import AgentSpec, ExecResult, ExecStatus, ToolCallFinished
from tests.engine.conftest import MakeEngine

if TYPE_CHECKING:
    from core.llm.scripted import ScriptedServer

# Set in the daemon's (here: the test process's) environment; no agent may see them.
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-daemon-secret",
    "OPENAI_API_KEY": "sk-openai-daemon-secret",
    "SECRET_X": "x-daemon-secret",
}
KEY_ENV = "AGENT_ENV_TEST_KEY"
KEY = "sk-callers-own-key"


@pytest.fixture
def daemon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PASS_ME", "passed-through")


def parse_env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def run(engine: Engine, agent_id: str, text: str) -> tuple[ExecResult, list[str]]:
    result, tools = None, []
    async for ev in engine.exec(agent_id, text, actor="test"):
        if isinstance(ev, ExecResult):
            result = ev
        elif isinstance(ev, ToolCallFinished):
            tools.append(ev.output)
    assert result is not None and result.status is ExecStatus.SUCCEEDED, result
    return result, tools


@pytest.mark.usefixtures("daemon_env")
async def test_a_shell_agent_sees_no_secret_of_the_daemons(make_engine: MakeEngine) -> None:
    engine = await make_engine(defaults={"env_passthrough": ["PASS_ME", "NOT_SET_ANYWHERE"]})
    agent = await engine.spawn_agent(AgentSpec(runtime="shell", env={"MINE": "1"}), "test")
    result, _ = await run(engine, agent.id, "env")
    env = parse_env(result.output)
    assert not SECRETS.keys() & env.keys(), env
    assert not any(v in result.output for v in SECRETS.values())
    assert env["PATH"] and env["PASS_ME"] == "passed-through"
    assert env["MINE"] == "1" and env["GODEL_AGENT_ID"] == agent.id
    assert "NOT_SET_ANYWHERE" not in env


@pytest.mark.usefixtures("daemon_env")
async def test_a_native_agents_commands_see_no_key_yet_its_model_gets_its_own(
    make_engine: MakeEngine, scripted_server: ScriptedServer
) -> None:
    engine = await make_engine(
        providers={
            "keyed": {"kind": "openai", "base_url": scripted_server.base_url + "/v1"}
            | {"api_key_env": KEY_ENV}
        },
        models={"keyed": {"provider": "keyed", "id": "scripted"}},
        defaults={"model": "keyed", "env_passthrough": ["PASS_ME"]},
    )
    agent = await engine.spawn_agent(
        AgentSpec(runtime="native"), "test", keys={KEY_ENV: KEY, "OPENAI_API_KEY": "sk-2"}
    )
    _, tools = await run(engine, agent.id, "run: env")
    assert len(tools) == 1
    env = parse_env(tools[0])
    # The model's key stays in the daemon, which makes the calls; commands need none.
    assert not (SECRETS.keys() | {KEY_ENV}) & env.keys(), env
    assert KEY not in tools[0] and "sk-2" not in tools[0]
    assert env["PASS_ME"] == "passed-through" and env["GODEL_AGENT_ID"] == agent.id
    assert scripted_server.requests
    assert {q.api_key for q in scripted_server.requests} == {KEY}


async def test_env_passthrough_changes_at_the_next_start_only(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine()
    (tmp_path / ".godel").mkdir()
    (tmp_path / ".godel" / "config.toml").write_text(
        "[autoscaler]\nenabled = false\n[health]\ninterval_s = 3600\n"
        '[defaults]\nenv_passthrough = ["SECRET_X"]\n'
    )
    reload = await engine.reload_config("test", cwd=tmp_path)
    assert reload.needs_restart == ["defaults.env_passthrough"]
    # What `config show` prints is what agents get: nothing more until a restart.
    assert engine.config.config.defaults.env_passthrough == []
