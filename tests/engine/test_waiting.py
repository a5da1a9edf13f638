"""No task silently stuck: a task's runtime is honoured by the router and the queue, and
the engine says why a task waits (``Task.waiting``) and when no agent could ever take it
(``Task.stranded``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.clock import FakeClock
from core.engine import Engine
from core.errors import InvalidInput, UnknownRuntime
from core.events import AgentActivity, ExecStarted, TaskFinished
from core.models import AgentSpec, TaskSpec, TaskStatus
from tests.engine.conftest import (
    Gate,
    MakeEngine,
    Match,
    advance,
    audit,
    make_swarm,
    next_event,
    submit,
    subscribe,
)


async def test_a_task_needing_a_runtime_never_goes_to_another_and_does_not_block_others(
    engine: Engine,
) -> None:
    noop = await engine.spawn_agent(AgentSpec(runtime="noop"), "test")
    sub = subscribe(engine, "t", "task.finished")
    # First in the queue, and the only agent cannot take it: the task behind it still runs
    # (the queue skips what the pool cannot take, so it cannot hold the first place).
    (shell_task,) = await submit(engine, None, "echo hi", runtime="shell")
    (any_task,) = await submit(engine, None, "whatever")
    done = await next_event(sub, Match(TaskFinished, task_id=any_task))
    assert done.agent_id == noop.id and done.status == "succeeded"

    waiting = await engine.get_task(shell_task)
    assert waiting.status is TaskStatus.READY and waiting.attempts == 0
    assert waiting.runtime == "shell" and waiting.stranded
    assert waiting.waiting == (
        "no agent in the default pool can take this task (it needs runtime shell; agents "
        "there: 1 noop; no swarms; spawn a shell agent)"
    )
    explained = await engine.explain_route(shell_task)
    assert explained["now"]["chosen"] is None
    assert explained["now"]["reason"] == "no agent of runtime shell (runtimes here: noop)"
    assert [c["excluded"] for c in explained["now"]["candidates"]] == ["runtime noop, not shell"]

    shell = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    done = await next_event(sub, Match(TaskFinished, task_id=shell_task))
    assert done.agent_id == shell.id and done.status == "succeeded"
    task = await engine.get_task(shell_task)
    assert task.result is not None and task.result.output == "hi\n"
    assert (task.waiting, task.stranded) == ("", False)
    routes = await audit(engine, "task.route", shell_task)
    assert [e.result for e in routes] == [shell.id]


async def test_tasks_needing_skills_no_one_agent_has_do_not_block_the_queue(
    engine: Engine,
) -> None:
    """The pool has skills a and b between two agents, but no agent has both."""
    for skill in ("a", "b"):
        await engine.spawn_agent(AgentSpec(runtime="shell", skills=[skill]), "test")
    sub = subscribe(engine, "t", "task.finished")
    stuck = await submit(engine, None, "echo both", "echo both again", skills=["a", "b"])
    (plain,) = await submit(engine, None, "echo plain")
    done = await next_event(sub, Match(TaskFinished, task_id=plain))
    assert done.status == "succeeded"
    for task_id in stuck:
        task = await engine.get_task(task_id)
        assert task.status is TaskStatus.READY and task.stranded, task.waiting


async def test_unknown_runtimes_and_a_swarm_of_another_runtime_are_refused(
    engine: Engine,
) -> None:
    with pytest.raises(UnknownRuntime) as unknown:
        await submit(engine, None, "true", runtime="bash")
    assert str(unknown.value).startswith("unknown runtime 'bash' (known: ")
    assert "shell" in unknown.value.data["known"]

    await make_swarm(engine, "api", 0, runtime="noop")
    with pytest.raises(InvalidInput) as other:
        await submit(engine, "api", "true", runtime="shell")
    assert str(other.value) == (
        "swarm api runs noop agents, and this task needs runtime shell: submit it to a "
        "shell swarm or without --swarm"
    )
    (ok,) = await submit(engine, "api", "true", runtime="noop")
    assert (await engine.get_task(ok)).runtime == "noop"
    assert await engine.list_tasks(swarm="api") != []
    assert len(await audit(engine, "task.submit")) == 1  # the refused submits left nothing


async def test_submit_says_when_no_agent_present_could_take_a_task(engine: Engine) -> None:
    await make_swarm(engine, "api", 2, runtime="noop")
    (empty,) = await engine.submit_tasks([TaskSpec(input="true")], "test")
    assert empty.stranded and empty.status is TaskStatus.READY  # queued all the same
    assert empty.waiting == (
        "no agent in the default pool can take this task (no agents; swarms: api (noop, 2 "
        "agents); submit with --swarm NAME or spawn an agent)"
    )

    await engine.spawn_agent(AgentSpec(runtime="shell", skills=["python"]), "test")
    (gpu,) = await engine.submit_tasks([TaskSpec(input="true", skills=["gpu", "python"])], "test")
    assert gpu.stranded
    assert gpu.waiting == (
        "no agent in the default pool can take this task (it needs skills gpu,python; no "
        "agent there has skills gpu; swarms: api (noop, 2 agents); submit with --swarm NAME "
        "or spawn an agent with them)"
    )

    # A swarm that stays empty (the autoscaler is off here) strands its tasks too.
    await make_swarm(engine, "idle", 0)
    (none,) = await engine.submit_tasks([TaskSpec(input="true", swarm="idle")], "test")
    assert none.stranded
    assert none.waiting == (
        "no agent in swarm idle can take this task (no agents, and it stays at 0; "
        "`godel swarm scale idle N` adds some)"
    )

    # One an agent can take is not stranded.
    (fine,) = await engine.submit_tasks([TaskSpec(input="true", swarm="api")], "test")
    assert not fine.stranded


async def test_why_a_task_waits_busy_agents_then_dependencies(
    engine: Engine, gates: Callable[[str], Gate]
) -> None:
    (agent,) = await make_swarm(engine, "one", 1)
    gate = gates("busy")
    sub = subscribe(engine, "t", "exec.started", "task.finished")
    (first,) = await submit(engine, "one", gate.cmd)
    await next_event(sub, Match(ExecStarted, agent_id=agent.id))
    (second,) = await submit(engine, "one", "echo second")
    (after,) = await submit(engine, "one", "echo after", depends_on=[first])

    busy = await engine.get_task(second)
    assert (busy.waiting, busy.stranded) == ("all busy (1 agent, 1 task in flight)", False)
    queued = await engine.get_task(after)
    assert queued.waiting == f"dependencies pending: {first} (running)"
    assert (await engine.get_task(first)).waiting == ""  # running: not waiting

    gate.open()
    for task_id in (first, second, after):
        await next_event(sub, Match(TaskFinished, task_id=task_id, status="succeeded"))


async def test_why_a_task_waits_retry_backoff_then_open_breakers(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(health={"failure_threshold": 2, "open_for_s": 30})
    (agent,) = await make_swarm(engine, "br", 1)
    sub = subscribe(engine, "t", "task.finished", "agent.activity")
    (flaky,) = await submit(engine, "br", "exit 1", max_attempts=2)
    await next_event(sub, Match(TaskFinished, task_id=flaky, status="ready"))
    backing_off = await engine.get_task(flaky)
    assert backing_off.waiting.startswith("retry backoff until ")
    assert not backing_off.stranded

    await advance(clock, 2)  # the backoff of a first retry is at most a second
    engine.s.dispatcher.wake()
    await next_event(sub, Match(TaskFinished, task_id=flaky, status="failed"))
    await next_event(sub, Match(AgentActivity, kind="breaker", data=lambda d: d["to"] == "open"))
    (held,) = await submit(engine, "br", "echo held")
    task = await engine.get_task(held)
    assert (task.waiting, task.stranded) == ("breakers open on 1 agent that could take it", False)
    assert task.status is TaskStatus.READY and agent.id not in {
        e.result for e in await audit(engine, "task.route", held)
    }
