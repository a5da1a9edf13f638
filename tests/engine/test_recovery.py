"""A daemon restart in process: leased tasks back to the queue at once, swarms refilled.

A second engine on the first one's home is the restarted daemon. The lease is 600 s and
the fake clock never moves, so a task that finishes after the restart cannot have
waited out its lease. (A SIGKILLed daemon, whose agents recovery marks ``lost``, is
tested with a real daemon in ``tests/integration/test_restart.py``.)
"""

from __future__ import annotations

from collections.abc import Callable

from core.clock import FakeClock
from core.events import AuditAppended, TaskChanged, TaskFinished
from core.models import AgentStatus, TaskStatus
from tests.engine.conftest import (
    Gate,
    MakeEngine,
    Match,
    audit,
    make_swarm,
    next_event,
    submit,
    subscribe,
)

LONG_LEASE = {"lease_s": 600.0}


async def test_a_restart_after_a_stop_requeues_leased_tasks_at_once_and_refills_swarms(
    make_engine: MakeEngine, clock: FakeClock, gates: Callable[[str], Gate]
) -> None:
    first = await make_engine(queue=LONG_LEASE)
    old = await make_swarm(first, "batch", 2)
    gate = gates("work")
    sub = subscribe(first, "t", "task.changed")
    ids = await submit(first, "batch", f"{gate.cmd}; echo one", f"{gate.cmd}; echo two")
    for t in ids:
        await next_event(sub, Match(TaskChanged, task_id=t, status="running"))
    await first.stop("stop requested", actor="test")
    now = clock.time()

    second = await make_engine(start=False, home=first.paths, queue=LONG_LEASE)
    sub = subscribe(second, "t", "task.finished", "audit.appended")
    await second.start("test")
    # Before the restarted engine serves anything, each leased task is back in the queue,
    # with the reason on the audit log.
    for t in ids:
        (entry,) = await audit(second, "task.requeue", t)
        assert entry.actor == "test" and entry.result == "ready"
        assert entry.payload["agent_id"] in {a.id for a in old}
        assert "ended with the previous daemon: stopped" in str(entry.payload["reason"])
    restored = await next_event(sub, Match(AuditAppended, action="swarm.restore"))
    assert restored.subject == "batch" and restored.result == "ok"
    members = second.s.swarms.members("batch")
    assert len(members) == 2 and not {a.id for a in members} & {a.id for a in old}
    (entry,) = await audit(second, "swarm.restore", "batch")
    assert entry.payload["desired"] == 2 and len(entry.payload["spawned"]) == 2  # type: ignore[arg-type]

    gate.open(2)
    for _ in ids:
        done = await next_event(sub, Match(TaskFinished, task_id=lambda t: t in ids))
        assert done.status == "succeeded"
    assert clock.time() == now  # no lease ran out: the clock never moved
    for t in ids:
        task = await second.get_task(t)
        assert task.status is TaskStatus.SUCCEEDED
        assert task.attempts == 1  # the attempt the stop cut short is not counted
    for a in old:
        assert (await second.get_agent(a.id)).status is AgentStatus.STOPPED


async def test_a_restart_leaves_a_swarm_at_its_size_and_a_destroyed_one_empty(
    make_engine: MakeEngine,
) -> None:
    first = await make_engine()
    await make_swarm(first, "kept", 1, max_agents=3)
    await first.scale_swarm("kept", 3, "test")
    await make_swarm(first, "gone", 2)
    await first.destroy_swarm("gone", "test")
    await first.stop("stop requested", actor="test")

    second = await make_engine(start=False, home=first.paths)
    sub = subscribe(second, "t", "audit.appended")
    await second.start("test")
    await next_event(sub, Match(AuditAppended, action="swarm.restore", subject="kept"))
    assert len(second.s.swarms.members("kept")) == 3
    assert second.s.swarms.members("gone") == []
    assert await audit(second, "swarm.restore", "gone") == []


async def test_a_restart_with_nothing_left_behind_requeues_and_restores_nothing(
    make_engine: MakeEngine,
) -> None:
    first = await make_engine()
    await make_swarm(first, "idle", 0, max_agents=2)
    await first.stop("stop requested", actor="test")
    second = await make_engine(home=first.paths)
    assert await audit(second, "task.requeue") == []
    assert await audit(second, "swarm.restore") == []
