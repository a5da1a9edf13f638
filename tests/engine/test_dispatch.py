"""The dispatcher in process: order, dependencies, retries, dead agents, cancel, backpressure."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from core.clock import FakeClock
from core.engine import Engine
from core.errors import QueueFull
from core.events import AgentOutput, ExecFinished, ExecStarted, QueuePressure, TaskFinished
from core.models import AgentStatus, ExecStatus, TaskPriority, TaskStatus
from tests.engine.conftest import (
    Gate,
    Match,
    advance,
    audit,
    events,
    gone,
    make_swarm,
    next_event,
    pid_of,
    poll_now,
    submit,
    subscribe,
    until,
)


async def output_of(engine: Engine, task_id: str) -> str:
    result = (await engine.get_task(task_id)).result
    assert result is not None, f"{task_id} has no result"
    return result.output


async def test_priority_then_fifo_on_one_agent(engine: Engine) -> None:
    # No agent yet: everything is queued before anything runs, so the order is the queue's.
    await make_swarm(engine, "solo", 0, max_agents=1)
    sub = subscribe(engine, "t", "task.finished")
    (low,) = await submit(engine, "solo", "echo low", priority=TaskPriority.LOW)
    n1, n2 = await submit(engine, "solo", "echo n1", "echo n2")
    (crit,) = await submit(engine, "solo", "echo crit", priority=TaskPriority.CRITICAL)
    # Critical, but it waits for the low one.
    (dep,) = await submit(
        engine, "solo", "echo after-low", depends_on=[low], priority=TaskPriority.CRITICAL
    )
    assert (await engine.get_task(dep)).status is TaskStatus.QUEUED

    await engine.scale_swarm("solo", 1, "test")
    finished = await events(sub, Match(TaskFinished), 5)
    assert [e.task_id for e in finished] == [crit, n1, n2, low, dep]
    assert {e.status for e in finished} == {"succeeded"}
    assert await output_of(engine, dep) == "after-low\n"


async def test_dependencies_released_on_success_and_failed_transitively_on_failure(
    engine: Engine, gates: Callable[[str], Gate]
) -> None:
    await make_swarm(engine, "deps", 2)
    sub = subscribe(engine, "t", "task.finished")
    gate = gates("d")
    (a,) = await submit(engine, "deps", "echo a")
    (b,) = await submit(engine, "deps", "echo b", depends_on=[a])
    # d fails only once its dependents are queued (else they would fail at submit).
    (d,) = await submit(engine, "deps", f"{gate.cmd}; exit 3", max_attempts=1)
    (c,) = await submit(engine, "deps", "echo c", depends_on=[d])
    (e,) = await submit(engine, "deps", "echo e", depends_on=[c])
    gate.open(2)  # the manual retry below runs it again

    done = {}
    for ev in await events(sub, Match(TaskFinished), 3):
        done[ev.task_id] = ev.status
    assert done == {a: "succeeded", b: "succeeded", d: "failed"}

    assert await output_of(engine, b) == "b\n"
    failed = await engine.get_task(d)
    assert failed.attempts == 1 and failed.error == "failed after 1 attempt: exit code 3"
    for task_id, because in ((c, d), (e, c)):
        t = await engine.get_task(task_id)
        assert t.status is TaskStatus.FAILED and t.attempts == 0
        assert t.error == f"dependency {because} failed for good"
        (entry,) = await audit(engine, "task.finish", task_id)
        assert entry.result == "failed"

    # A failed task can be retried by hand: from scratch, and failed again here.
    again = await engine.retry_task(d, "test")
    assert again.status is TaskStatus.READY and again.attempts == 0
    redone = await next_event(sub, Match(TaskFinished, task_id=d))
    assert redone.status == "failed"
    assert [e.actor for e in await audit(engine, "task.retry.manual", d)] == ["test"]


async def test_a_failing_task_is_retried_only_after_its_backoff_then_failed(
    engine: Engine, clock: FakeClock
) -> None:
    await make_swarm(engine, "flaky", 1)
    sub = subscribe(engine, "t", "task.finished", "exec.started")
    (t,) = await submit(engine, "flaky", "exit 3", max_attempts=2)
    await next_event(sub, Match(TaskFinished, task_id=t, status="ready"))

    task = await engine.get_task(t)
    assert task.status is TaskStatus.READY and task.attempts == 1
    wait = task.not_before - clock.time()
    assert 0.5 <= wait <= 1.0  # the first retry's backoff: U(0.5, 1) s
    assert await engine.s.dispatcher.dispatch_once() == 0

    await advance(clock, wait - 0.01)  # not yet
    assert await engine.s.dispatcher.dispatch_once() == 0
    task = await engine.get_task(t)
    assert task.status is TaskStatus.READY and task.attempts == 1

    await advance(clock, 0.02)  # past not_before: the next dispatch round takes it
    poll_now(engine)
    failed = await next_event(sub, Match(TaskFinished, task_id=t))
    assert failed.status == "failed"
    task = await engine.get_task(t)
    assert task.attempts == 2 and task.error == "failed after 2 attempts: exit code 3"
    assert [e.result for e in await audit(engine, "task.retry", t)] == ["ready"]
    assert [e.result for e in await audit(engine, "task.finish", t)] == ["failed"]


async def test_a_task_whose_agent_dies_finishes_on_another_agent(
    engine: Engine, tmp_path: Path
) -> None:
    await make_swarm(engine, "pair", 2)
    sub = subscribe(engine, "t", "agent.output", "task.finished")
    # The first attempt (only) blocks; the retry on the other agent goes straight through.
    once = tmp_path / "once"
    cmd = f"if mkdir {once} 2>/dev/null; then sleep 30 & echo started; wait; fi; echo finished"
    (t,) = await submit(engine, "pair", cmd)
    started = await next_event(sub, Match(AgentOutput, data="started\n"))
    first = started.agent_id
    pid = pid_of(engine, first)
    sleeps = psutil.Process(pid).children(recursive=True)
    assert sleeps

    os.kill(pid, signal.SIGKILL)  # the agent's process dies mid-task
    done = await next_event(sub, Match(TaskFinished, task_id=t))
    assert done.status == "succeeded" and done.agent_id != first

    task = await engine.get_task(t)
    assert task.lease_agent == done.agent_id
    assert task.result is not None and task.result.output == "finished\n"
    assert task.attempts == 1  # the dead agent's attempt is not held against the task
    (requeue,) = await audit(engine, "task.requeue", t)
    assert requeue.payload["agent_id"] == first
    assert (await engine.get_agent(first)).status is AgentStatus.FAILED
    # bash's group goes with it: the command it ran does not outlive it. (Polled: no
    # event announces that a dead agent's process group was cleaned up.)
    await until(lambda: all(gone(p.pid) for p in sleeps), "the dead agent's sleep to end")


async def test_cancel_of_a_running_task_aborts_it_on_its_agent(engine: Engine) -> None:
    (agent,) = await make_swarm(engine, "c", 1)
    sub = subscribe(engine, "t", "agent.output", "exec.finished", "task.finished")
    (t,) = await submit(engine, "c", "sleep 30 & echo started; wait")
    started = await next_event(sub, Match(AgentOutput, data="started\n"))
    sleeps = psutil.Process(pid_of(engine, agent.id)).children(recursive=True)
    assert sleeps

    task = await engine.cancel_task(t, "test")
    assert task.status is TaskStatus.CANCELLED and task.error == "cancelled by test"
    ended = await next_event(sub, Match(ExecFinished, exec_id=started.exec_id))
    assert ended.status is ExecStatus.ABORTED
    assert all(gone(p.pid) for p in sleeps)

    # The cancelled attempt left no verdict, and the agent serves the next task.
    (t2,) = await submit(engine, "c", "echo still-works")
    done = await next_event(sub, Match(TaskFinished))
    assert (done.task_id, done.status, done.agent_id) == (t2, "succeeded", agent.id)
    assert (await engine.get_task(t)).status is TaskStatus.CANCELLED


async def test_backpressure_refuses_a_submit_past_95_percent_naming_the_capacity(
    engine: Engine,
) -> None:
    await make_swarm(engine, "tiny", 0, capacity=20)
    sub = subscribe(engine, "t", "queue.pressure")
    await submit(engine, "tiny", *[f"echo {i}" for i in range(19)])  # 95 %: still accepted
    warned = await next_event(sub, Match(QueuePressure, capacity=20))
    assert warned.scope == "swarm 'tiny'" and warned.fraction == 0.95

    with pytest.raises(QueueFull) as refused:
        await submit(engine, "tiny", "echo one-too-many")
    message = str(refused.value)
    assert "queue full" in message and "capacity of 20" in message and "retry" in message
    assert refused.value.data["capacity"] == 20
    assert await engine.task_counts("tiny") == {"ready": 19}


async def test_cancel_right_after_the_exec_started_still_aborts_it(engine: Engine) -> None:
    # No output to wait for: the cancel comes as soon as the exec is announced, possibly
    # before the runtime has begun it.
    (agent,) = await make_swarm(engine, "quick", 1)
    sub = subscribe(engine, "t", "exec.started", "exec.finished")
    (t,) = await submit(engine, "quick", "sleep 30")
    started = await next_event(sub, Match(ExecStarted, agent_id=agent.id))
    await engine.cancel_task(t, "test")
    ended = await next_event(sub, Match(ExecFinished, exec_id=started.exec_id))
    assert ended.status is ExecStatus.ABORTED
    assert (await engine.get_task(t)).status is TaskStatus.CANCELLED


async def test_a_routing_decision_says_how_long_it_took(engine: Engine) -> None:
    from core.events import TaskRouted

    await make_swarm(engine, "timed", 1)
    sub = subscribe(engine, "t", "task.routed")
    (t,) = await submit(engine, "timed", "true")
    routed = await next_event(sub, Match(TaskRouted, task_id=t))
    # The router's own time, measured around the choice: never reported as zero.
    assert routed.elapsed_ms > 0
    assert engine.views.router_state().latency_p50_ms is not None
