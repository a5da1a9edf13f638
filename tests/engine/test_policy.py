"""``[policy] deny``: a refused command never runs, is audited as ``policy.violation``,
and leaves its agent free; a refused task fails once, with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine import Engine
from core.errors import PolicyDenied
from core.events import AgentActivity, ExecStarted, TaskFinished
from core.models import (
    AgentSpec,
    AgentStatus,
    ExecResult,
    ExecStatus,
    PolicyViolation,
    RuntimeEvent,
    TaskStatus,
    ToolCallFinished,
)
from tests.engine.conftest import (
    MakeEngine,
    Match,
    audit,
    make_swarm,
    next_event,
    pending,
    submit,
    subscribe,
)

POLICY = {"deny": ["rm -rf /", r"re:^\s*sudo\b"]}
SUDO_RULE = r"matches deny rule 2 're:^\s*sudo\b'"


async def run_exec(engine: Engine, agent_id: str, text: str) -> list[RuntimeEvent]:
    """Every event of the exec, the result last."""
    out = [ev async for ev in engine.exec(agent_id, text, actor="test", timeout=30)]
    assert isinstance(out[-1], ExecResult)
    return out


async def test_a_refused_shell_exec_is_audited_and_the_agent_stays_idle(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(policy=POLICY)
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    sub = subscribe(engine, "t", "agent.activity", "exec.started")
    marker = tmp_path / "ran"

    with pytest.raises(PolicyDenied) as refused:
        await run_exec(engine, agent.id, f"  sudo touch {marker}")

    assert refused.value.message == (
        f"cannot exec on agent {agent.id}: refused by policy: {SUDO_RULE} ([policy] deny)"
    )
    assert refused.value.data["rule"] == 2
    assert not marker.exists()
    (entry,) = await audit(engine, "policy.violation", agent.id)
    assert (entry.result, entry.actor) == ("refused", "test")
    assert entry.payload["rule"] == "command_deny" and entry.payload["exec_id"] is None
    assert entry.payload["detail"] == f"command '  sudo touch {marker}' {SUDO_RULE}"
    activity = await next_event(sub, Match(AgentActivity, agent_id=agent.id, kind="policy"))
    assert activity.data == {"rule": "command_deny", "detail": entry.payload["detail"]}
    assert await audit(engine, "agent.exec", agent.id) == []  # nothing started
    assert pending(sub, Match(ExecStarted)) == []
    assert (await engine.get_agent(agent.id)).status is AgentStatus.IDLE

    # A literal rule matches whatever the spacing; an allowed command runs as ever.
    with pytest.raises(PolicyDenied, match=r"matches deny rule 1 'rm -rf /'"):
        await run_exec(engine, agent.id, "rm  -rf\t/nothing-here")
    result = (await run_exec(engine, agent.id, "echo rm -rf; echo sudo"))[-1]
    assert isinstance(result, ExecResult) and result.output == "rm -rf\nsudo\n"


async def test_a_native_agents_refused_command_is_told_to_the_model_and_audited(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    # No policy at first: the rules come with a reload and apply to the running agent.
    engine = await make_engine()
    agent = await engine.spawn_agent(AgentSpec(runtime="native"), "test")
    marker = tmp_path / "ran"
    before = (await run_exec(engine, agent.id, "run: echo before"))[-1]
    assert isinstance(before, ExecResult) and before.status is ExecStatus.SUCCEEDED
    (tmp_path / ".godel").mkdir()
    (tmp_path / ".godel" / "config.toml").write_text(
        "[autoscaler]\nenabled = false\n[health]\ninterval_s = 3600\n"
        "[policy]\ndeny = [\"rm -rf /\", 're:^\\s*sudo\\b']\n"
    )
    reload = await engine.reload_config("test", cwd=tmp_path)
    assert reload.applied == ["policy.deny"]

    events = await run_exec(engine, agent.id, f"run: sudo touch {marker}")

    result = events[-1]
    assert isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED
    assert not marker.exists()
    (tool,) = [e for e in events if isinstance(e, ToolCallFinished)]
    assert tool.is_error and tool.output == f"refused by policy: {SUDO_RULE}"
    assert f"refused by policy: {SUDO_RULE}" in result.output  # what the model answered with
    (violation,) = [e for e in events if isinstance(e, PolicyViolation)]
    assert violation.rule == "command_deny"
    (entry,) = await audit(engine, "policy.violation", agent.id)
    assert entry.result == "refused" and entry.payload["exec_id"] == result.exec_id
    assert entry.payload["detail"] == f"command 'sudo touch {marker}' {SUDO_RULE}"
    assert (await engine.get_agent(agent.id)).status is AgentStatus.IDLE


async def test_a_refused_task_fails_at_once_and_its_agent_takes_the_next(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(policy=POLICY)
    (agent,) = await make_swarm(engine, "ops", 1)
    sub = subscribe(engine, "t", "task.finished", "exec.started")

    (bad,) = await submit(engine, "ops", "sudo reboot", max_attempts=5)
    finished = await next_event(sub, Match(TaskFinished, task_id=bad))

    assert finished.status == "failed"  # not "ready": retrying cannot help
    task = await engine.get_task(bad)
    assert task.status is TaskStatus.FAILED and task.attempts == 1
    assert task.error == (
        f"cannot exec on agent {agent.id}: refused by policy: {SUDO_RULE} ([policy] deny) "
        "(not retried)"
    )
    assert pending(sub, Match(ExecStarted)) == []
    (entry,) = await audit(engine, "policy.violation", agent.id)
    assert entry.payload["task_id"] == bad
    (good,) = await submit(engine, "ops", "echo fine")
    done = await next_event(sub, Match(TaskFinished, task_id=good))
    assert done.status == "succeeded" and done.agent_id == agent.id
    assert (await engine.get_agent(agent.id)).status is AgentStatus.IDLE
