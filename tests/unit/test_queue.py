"""The durable task queue on a real SQLite file: order, leases, retries, dependencies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import InvalidInput, QueueFull, TaskNotFound
from core.models import ExecResult, ExecStatus, TaskPriority, TaskSpec, TaskStatus
from core.store import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    yield s
    await s.close()


def ok(exec_id: str = "exec-1") -> ExecResult:
    return ExecResult(exec_id=exec_id, status=ExecStatus.SUCCEEDED, exit_code=0, output="done")


def bad(reason: str = "exit 1") -> ExecResult:
    return ExecResult(exec_id="exec-x", status=ExecStatus.FAILED, exit_code=1, reason=reason)


async def submit(store: SqliteStore, *specs: TaskSpec, cap: int | None = None) -> list[str]:
    tasks, _ = await store.submit_tasks(list(specs), swarm_capacity=cap, audit_actor="t")
    return [t.id for t in tasks]


async def claim_one(store: SqliteStore, agent: str = "shell-000001") -> tuple[str, str]:
    ready = await store.ready_tasks(None, 1, time.time())
    assert ready, "nothing ready"
    [lease] = await store.claim([(ready[0].id, agent)], lease_s=60)
    return lease.task.id, lease.token


async def test_claim_order_is_priority_then_age(store: SqliteStore) -> None:
    low, normal, critical, high, normal2 = await submit(
        store,
        TaskSpec(input="a", priority=TaskPriority.LOW),
        TaskSpec(input="b"),
        TaskSpec(input="c", priority=TaskPriority.CRITICAL),
        TaskSpec(input="d", priority=TaskPriority.HIGH),
        TaskSpec(input="e"),
    )
    ready = await store.ready_tasks(None, 10, time.time())
    assert [t.id for t in ready] == [critical, high, normal, normal2, low]


async def test_success_releases_dependents_and_failure_cascades(store: SqliteStore) -> None:
    a, b = await submit(store, TaskSpec(input="a"), TaskSpec(input="b"))
    (c,) = await submit(store, TaskSpec(input="c", depends_on=[a, b]))
    (d,) = await submit(store, TaskSpec(input="d", depends_on=[c]))
    assert (await store.get_task(c)).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    [la] = await store.claim([(a, "x")], 60)
    assert await store.complete(a, la.token, ok(), ok=True) is TaskStatus.SUCCEEDED
    assert (await store.get_task(c)).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    [lb] = await store.claim([(b, "x")], 60)
    await store.complete(b, lb.token, ok(), ok=True)
    task_c = await store.get_task(c)
    assert task_c is not None and task_c.status is TaskStatus.READY
    assert task_c.depends_on == sorted([a, b]) or set(task_c.depends_on) == {a, b}
    [lc] = await store.claim([(c, "x")], 60)
    assert await store.complete(c, lc.token, bad(), ok=False, retryable=False) is TaskStatus.DEAD
    task_d = await store.get_task(d)
    assert task_d is not None and task_d.status is TaskStatus.FAILED
    assert task_d.error == f"dependency {c} failed for good"
    # A new task on a dependency that already failed fails at once.
    (e,) = await submit(store, TaskSpec(input="e", depends_on=[c]))
    assert (await store.get_task(e)).status is TaskStatus.FAILED  # type: ignore[union-attr]


async def test_unknown_dependency_is_an_error(store: SqliteStore) -> None:
    with pytest.raises(TaskNotFound, match="task-nope"):
        await submit(store, TaskSpec(input="x", depends_on=["task-nope"]))


async def test_retries_back_off_then_dead_letter(store: SqliteStore) -> None:
    (t,) = await submit(store, TaskSpec(input="x", max_attempts=2))
    task_id, token = await claim_one(store)
    assert await store.complete(task_id, token, bad("first"), ok=False) is TaskStatus.READY
    task = await store.get_task(t)
    assert task is not None and task.attempts == 1 and task.not_before > time.time()
    assert await store.ready_tasks(None, 10, time.time()) == []  # backing off
    later = await store.ready_tasks(None, 10, time.time() + 10)
    [lease] = await store.claim([(later[0].id, "shell-000002")], 60)
    assert await store.complete(t, lease.token, bad("second"), ok=False) is TaskStatus.DEAD
    task = await store.get_task(t)
    assert task is not None and task.status is TaskStatus.DEAD and task.error == "second"
    assert task.attempts == 2


async def test_a_late_result_from_an_old_lease_is_ignored(store: SqliteStore) -> None:
    (t,) = await submit(store, TaskSpec(input="x"))
    _, old_token = await claim_one(store)
    assert await store.rescue_expired(time.time() + 120) == [t]  # the lease ran out
    [lease] = await store.claim([(t, "shell-000002")], 60)
    assert await store.complete(t, old_token, ok("late"), ok=True) is None
    assert await store.complete(t, lease.token, ok("real"), ok=True) is TaskStatus.SUCCEEDED
    task = await store.get_task(t)
    assert task is not None and task.result is not None and task.result.exec_id == "real"


async def test_heartbeat_extends_only_the_holders_lease(store: SqliteStore) -> None:
    (t,) = await submit(store, TaskSpec(input="x"))
    _, token = await claim_one(store)
    assert await store.heartbeat(t, token, 600)
    assert not await store.heartbeat(t, "someone-else", 600)
    assert await store.rescue_expired(time.time() + 120) == []


async def test_in_flight_comes_from_leases(store: SqliteStore) -> None:
    ids = await submit(store, *(TaskSpec(input=str(i)) for i in range(3)))
    leases = await store.claim([(ids[0], "a1"), (ids[1], "a1"), (ids[2], "a2")], 60)
    assert await store.in_flight(["a1", "a2", "a3"]) == {"a1": 2, "a2": 1, "a3": 0}
    await store.complete(ids[0], leases[0].token, ok(), ok=True)
    assert await store.in_flight(["a1"]) == {"a1": 1}
    # Claiming a task that is no longer ready does nothing.
    assert await store.claim([(ids[0], "a3")], 60) == []


async def test_requeue_of_a_dead_agents_tasks(store: SqliteStore) -> None:
    (t,) = await submit(store, TaskSpec(input="x", max_attempts=1))
    await claim_one(store, "shell-dead00")
    assert await store.requeue_agent("shell-dead00", "agent died", "t") == [t]
    task = await store.get_task(t)
    assert task is not None and task.status is TaskStatus.READY and task.attempts == 0


async def test_cancel_and_manual_retry(store: SqliteStore) -> None:
    a, b = await submit(store, TaskSpec(input="a"), TaskSpec(input="b"))
    (c,) = await submit(store, TaskSpec(input="c", depends_on=[a]))
    assert await store.cancel_task(a, "t") == (TaskStatus.READY, None)
    assert (await store.get_task(c)).status is TaskStatus.FAILED  # type: ignore[union-attr]
    _, _token = await claim_one(store, "shell-000009")
    prev, agent = await store.cancel_task(b, "t")
    assert (prev, agent) == (TaskStatus.RUNNING, "shell-000009")
    with pytest.raises(InvalidInput, match="already cancelled"):
        await store.cancel_task(b, "t")
    task = await store.retry_task(a, "t")
    assert task.status is TaskStatus.READY and task.attempts == 0
    with pytest.raises(InvalidInput, match="only dead, failed or cancelled"):
        await store.retry_task(a, "t")


async def test_backpressure_refuses_above_95_percent(store: SqliteStore) -> None:
    tasks, fill = await store.submit_tasks(
        [TaskSpec(input=str(i)) for i in range(90)], swarm_capacity=100
    )
    assert len(tasks) == 90 and fill == pytest.approx(0.90)
    await submit(store, *(TaskSpec(input="x") for _ in range(5)), cap=100)
    with pytest.raises(QueueFull) as e:
        await submit(store, TaskSpec(input="one too many"), cap=100)
    assert "capacity of 100" in e.value.message and e.value.data["active"] == 95
    counts = await store.count_tasks()
    assert counts == {"ready": 95}  # nothing half-inserted
