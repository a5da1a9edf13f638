"""A provider's usage limit on a real engine, a real native agent and the real scripted
model server over HTTP: an HTTP 429 with a long Retry-After pauses dispatch to that
provider's agents (the task goes back to the queue, its attempt not counted, and says why
it waits), other providers' agents go on working, and the fake clock reaching the reset
resumes the provider by itself."""

from __future__ import annotations

from datetime import UTC, datetime

from core.clock import FakeClock
from core.events import ProviderPaused, ProviderResumed, TaskChanged
from core.models import TaskStatus
from tests.engine.conftest import (
    MakeEngine,
    Match,
    advance,
    audit,
    make_swarm,
    next_event,
    submit,
    subscribe,
)


async def test_a_usage_limit_pauses_its_provider_until_the_reset(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine()
    await make_swarm(engine, "openai", 1, runtime="native", model="scripted")
    await make_swarm(engine, "anthropic", 1, runtime="native", model="scripted-anthropic")
    sub = subscribe(engine, "t", "provider.paused", "provider.resumed", "task.changed")

    (limited,) = await submit(engine, "openai", "usage-limit: go on")
    paused = await next_event(sub, Match(ProviderPaused, provider="scripted"))
    assert paused.retry_after_s == 300  # the scripted server's Retry-After
    reset = clock.time() + 300
    assert paused.until == datetime.fromtimestamp(reset, UTC)
    # Back to the queue, the attempt not counted: not a failure.
    await next_event(
        sub, Match(TaskChanged, task_id=limited, status="ready", previous="running", attempts=0)
    )
    task = await engine.get_task(limited)
    assert task.status is TaskStatus.READY and task.attempts == 0
    hms = datetime.fromtimestamp(reset, UTC).strftime("%H:%M:%S UTC")
    assert task.waiting == (
        f"provider scripted paused by its usage limit until {hms} (in 300s); it resumes by itself"
    )

    # Another task for the paused provider waits too; another provider's agents work on.
    (held,) = await submit(engine, "openai", "hello")
    (other,) = await submit(engine, "anthropic", "hello")
    await next_event(sub, Match(TaskChanged, task_id=other, status="succeeded"))
    assert (await engine.get_task(held)).waiting.startswith("provider scripted paused")
    assert (await engine.get_task(held)).status is TaskStatus.READY

    # The reset: the provider resumes by itself and its tasks are dispatched again (the
    # scripted limit is hit again at once: paused anew, still not counted as a failure).
    await advance(clock, 300)
    await next_event(sub, Match(ProviderResumed, provider="scripted"))
    await next_event(sub, Match(TaskChanged, task_id=limited, status="running"))
    await next_event(sub, Match(ProviderPaused, provider="scripted"))
    await next_event(sub, Match(TaskChanged, task_id=limited, status="ready", attempts=0))

    (pause, again) = await audit(engine, "provider.pause", "scripted")
    assert pause.result == "paused" and pause.payload["retry_after_s"] == 300
    assert "usage limit reached" in pause.payload["message"]
    (resume,) = await audit(engine, "provider.resume", "scripted")
    assert pause.seq < resume.seq < again.seq
    requeues = await audit(engine, "task.requeue", limited)
    assert [
        e.payload["reason"].startswith("provider scripted hit its usage limit") for e in requeues
    ] == [True, True]
