"""The shared views: folding the event stream onto an old snapshot gives the new one.

The strong form: the "new snapshot" is read from the store, not folded, so any change
the store commits without an event (or an event without the change) fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.engine import Engine
from core.events import (
    AgentHealthChanged,
    AgentStatusChanged,
    EventRecorder,
    ExecFinished,
    SwarmChanged,
    TaskChanged,
    read_recording,
)
from core.events.recording import ReadStats
from core.models import AgentSpec, AgentStatus
from core.views import Views, ViewSnapshot
from tests.engine.conftest import Gate, Match, make_swarm, next_event, submit, subscribe

FINAL = {"succeeded", "failed", "cancelled"}


# Breakers live in the daemon's memory only: the store's snapshot shows every one closed,
# and only ``agent.health`` events move them. The fold is checked against the daemon's
# live views for these instead.
HEALTH = {"breaker", "breaker_at", "health_detail"}


def comparable(snap: ViewSnapshot) -> dict[str, Any]:
    """What the store can know: everything but the router's live decisions and the
    agents' breakers; recent tasks as a set (the store orders ties by time, the fold by
    commit)."""
    data = snap.model_dump(
        mode="json", exclude={"seq": True, "router": True, "agents": {"__all__": HEALTH}}
    )
    data["tasks_recent"] = sorted(data["tasks_recent"], key=lambda t: t["id"])
    data["strategies"] = snap.router.strategies
    return data


async def store_snapshot(engine: Engine) -> ViewSnapshot:
    snap = await engine.ctx.store.view_snapshot()
    snap.seq = engine.bus.seq
    return snap


async def test_live_views_start_equal_to_the_store(engine: Engine) -> None:
    await make_swarm(engine, "s", 2)
    await make_swarm(engine, "idle", 0, max_agents=1)
    await submit(engine, "idle", "true")  # no agent to run it: nothing moves meanwhile
    assert comparable(engine.view_snapshot()) == comparable(await store_snapshot(engine))


async def test_a_recorded_stream_folded_onto_an_old_snapshot_gives_the_new_one(
    engine: Engine, tmp_path: Path, gates: Callable[[str], Gate]
) -> None:
    gate = gates("held")
    await make_swarm(engine, "before", 1)
    old = await store_snapshot(engine)
    recording = tmp_path / "stream.jsonl"
    recorder = EventRecorder(engine.bus, recording)
    recorder.start()
    sub = subscribe(engine, "test")

    # Agents come and go, execs run and fail, tasks succeed, fail, cascade, get
    # cancelled; a swarm is created, scaled, re-strategised and destroyed.
    await make_swarm(engine, "s", 2)
    solo = await engine.spawn_agent(AgentSpec(runtime="shell", name="solo"), "test")
    async for _ in engine.exec(solo.id, "echo out; echo err >&2; exit 4", actor="test"):
        pass
    ok, bad = await submit(engine, "s", "echo fine", "exit 3", max_attempts=1)
    (dependent,) = await submit(engine, "s", "echo never", depends_on=[bad])
    (held,) = await submit(engine, "before", "echo held", depends_on=[ok, bad])
    waiting = {ok, bad, dependent, held}
    while waiting:
        done = await next_event(sub, Match(TaskChanged, status=lambda s: s in FINAL))
        waiting.discard(done.task_id)
    # A retried task fails again; a running task is cancelled; an agent killed under a
    # running task gives it back to the queue.
    await engine.retry_task(bad, "test")
    await next_event(sub, Match(TaskChanged, task_id=bad, status="failed"))
    (slow,) = await submit(engine, "s", gate.cmd, max_attempts=1)
    await next_event(sub, Match(TaskChanged, task_id=slow, status="running"))
    await engine.cancel_task(slow, "test")
    await next_event(sub, Match(TaskChanged, task_id=slow, status="cancelled"))
    (held_up,) = await submit(engine, "s", gate.cmd)
    running = await next_event(sub, Match(TaskChanged, task_id=held_up, status="running"))
    assert running.agent_id is not None
    await engine.kill_agent(running.agent_id, "test")
    await next_event(sub, Match(TaskChanged, task_id=held_up, previous="running", status="ready"))
    # ...and the swarm's other agent takes it (then nothing moves until the gate opens).
    await next_event(sub, Match(TaskChanged, task_id=held_up, status="running"))
    await engine.set_strategy("s", "round-robin", "test")
    await engine.scale_swarm("s", 1, "test")
    await next_event(sub, Match(AgentStatusChanged, status=AgentStatus.STOPPED))
    await engine.destroy_swarm("before", "test")
    await next_event(
        sub, Match(SwarmChanged, swarm=lambda s: s.name == "before" and s.status == "destroyed")
    )
    await engine.kill_agent(solo.id, "test")
    await recorder.stop()

    stats = ReadStats()
    folded = Views(old)
    for event in read_recording(recording, stats):
        folded.apply(event)
    assert stats.skipped == 0
    new = await store_snapshot(engine)
    assert folded.seq == new.seq
    assert comparable(folded.snapshot()) == comparable(new)
    # ...and so does the daemon's own live copy, breakers included.
    live = engine.view_snapshot()
    assert comparable(live) == comparable(new)
    assert folded.snapshot().agents == live.agents
    assert folded.router_state().breakers == live.router.breakers
    # The failed tasks' execs were counted against their agents' breakers.
    assert any(
        isinstance(e, AgentHealthChanged) and e.source == "exec outcome" and e.failures
        for e in read_recording(recording)
    )
    # The fold saw real spend and real failures, not an empty stream.
    assert any(isinstance(e, ExecFinished) and e.exit_code == 4 for e in read_recording(recording))
    assert new.tasks_by_status["s"] == {
        "succeeded": 1,
        "failed": 2,
        "cancelled": 1,
        "running": 1,  # the killed agent's task, taken again by the swarm's other agent
    }
