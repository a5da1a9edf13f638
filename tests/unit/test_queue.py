"""The durable task queue on a real SQLite file: order, leases, retries, dependencies.

Time comes in the ops as ``now`` (unix seconds); the tests use a fixed ``NOW`` and move
it by hand, so leases expire and backoff passes without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.audit import AuditDraft
from core.errors import InvalidInput, QueueFull, TaskNotFound
from core.events import EventBus
from core.models import ExecResult, ExecStatus, Lease, TaskPriority, TaskSpec, TaskStatus
from core.store import Journal, SqliteStore
from core.store.ops import (
    CancelSwarmTasks,
    CancelTask,
    Claim,
    ClaimTasks,
    CompleteTask,
    Heartbeat,
    RequeueAgent,
    RescueExpired,
    RetryTask,
    SubmitTasks,
    Submitted,
)

NOW = 1_800_000_000.0
LEASE_S = 60.0
BIG = 1_000_000  # a whole-queue capacity no test comes near


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def journal(store: SqliteStore) -> Journal:
    return Journal(store, EventBus())


def ok(exec_id: str = "exec-1") -> ExecResult:
    return ExecResult(exec_id=exec_id, status=ExecStatus.SUCCEEDED, exit_code=0, output="done")


def bad(reason: str = "exit 1") -> ExecResult:
    return ExecResult(exec_id="exec-x", status=ExecStatus.FAILED, exit_code=1, reason=reason)


async def submit_all(
    journal: Journal, *specs: TaskSpec, cap: int | None = None, overall: int = BIG
) -> Submitted:
    return await journal.commit(
        SubmitTasks(specs, swarm_capacity=cap, overall_capacity=overall, actor="t")
    )


async def submit(journal: Journal, *specs: TaskSpec, cap: int | None = None) -> list[str]:
    return [t.id for t in (await submit_all(journal, *specs, cap=cap)).tasks]


async def claim(
    journal: Journal, *pairs: tuple[str, str], now: float = NOW, lease_s: float = LEASE_S
) -> list[Lease]:
    claims = tuple(Claim(task_id, agent) for task_id, agent in pairs)
    return await journal.commit(ClaimTasks(claims, lease_s=lease_s, now=now))


async def claim_one(
    store: SqliteStore, journal: Journal, agent: str = "shell-000001", now: float = NOW
) -> tuple[str, str]:
    ready = await store.ready_tasks(None, 1, now)
    assert ready, "nothing ready"
    [lease] = await claim(journal, (ready[0].id, agent), now=now)
    return lease.task.id, lease.token


async def complete(
    journal: Journal,
    task_id: str,
    token: str,
    result: ExecResult,
    *,
    ok: bool,
    retryable: bool = True,
    now: float = NOW,
) -> TaskStatus | None:
    return await journal.commit(
        CompleteTask(task_id, token, result, ok=ok, now=now, retryable=retryable)
    )


async def status_of(store: SqliteStore, task_id: str) -> TaskStatus:
    task = await store.get_task(task_id)
    assert task is not None, task_id
    return task.status


async def test_claim_order_is_priority_then_age(store: SqliteStore, journal: Journal) -> None:
    low, normal, critical, high, normal2 = await submit(
        journal,
        TaskSpec(input="a", priority=TaskPriority.LOW),
        TaskSpec(input="b"),
        TaskSpec(input="c", priority=TaskPriority.CRITICAL),
        TaskSpec(input="d", priority=TaskPriority.HIGH),
        TaskSpec(input="e"),
    )
    (normal3,) = await submit(journal, TaskSpec(input="f"))  # a later commit: still FIFO
    ready = await store.ready_tasks(None, 10, NOW)
    assert [t.id for t in ready] == [critical, high, normal, normal2, normal3, low]
    assert [t.id for t in await store.ready_tasks(None, 2, NOW)] == [critical, high]
    assert await store.ready_by_priority(None) == {"critical": 1, "high": 1, "normal": 3, "low": 1}


async def test_ready_tasks_leave_out_what_the_pool_cannot_take(
    store: SqliteStore, journal: Journal
) -> None:
    shell, any_rt, llm, gpu, py = await submit(
        journal,
        TaskSpec(input="a", runtime="shell"),
        TaskSpec(input="b"),
        TaskSpec(input="c", runtime="pi"),
        TaskSpec(input="d", skills=["gpu", "py"]),
        TaskSpec(input="e", skills=["py"]),
    )
    assert (await store.get_task(shell)).runtime == "shell"  # type: ignore[union-attr]
    found = await store.ready_tasks(None, 10, NOW, takers={("pi", frozenset({"py"}))})
    assert [t.id for t in found] == [any_rt, llm, py]
    found = await store.ready_tasks(None, 10, NOW, takers={("shell", frozenset())})
    assert [t.id for t in found] == [shell, any_rt]
    # Skills are one agent's, not the pool's union: gpu+py needs an agent with both.
    split = {("pi", frozenset({"gpu"})), ("pi", frozenset({"py"}))}
    found = await store.ready_tasks(None, 10, NOW, takers=split)
    assert [t.id for t in found] == [any_rt, llm, py]
    both = {("pi", frozenset({"gpu", "py", "x"}))}
    found = await store.ready_tasks(None, 10, NOW, takers=both)
    assert [t.id for t in found] == [any_rt, llm, gpu, py]
    everything = await store.ready_tasks(None, 10, NOW)
    assert [t.id for t in everything] == [shell, any_rt, llm, gpu, py]


async def test_submit_is_audited(store: SqliteStore, journal: Journal) -> None:
    (t,) = await submit(journal, TaskSpec(input="x", skills=["py"]))
    [entry] = await store.list_audit()
    assert (entry.actor, entry.action, entry.subject, entry.result) == (
        "t",
        "task.submit",
        t,
        "ready",
    )
    assert entry.payload["input"] == "x" and entry.payload["skills"] == ["py"]


async def test_success_releases_dependents_and_failure_cascades(
    store: SqliteStore, journal: Journal
) -> None:
    a, b = await submit(journal, TaskSpec(input="a"), TaskSpec(input="b"))
    (c,) = await submit(journal, TaskSpec(input="c", depends_on=[a, b]))
    (d,) = await submit(journal, TaskSpec(input="d", depends_on=[c]))
    (e,) = await submit(journal, TaskSpec(input="e", depends_on=[d]))  # transitively
    assert await status_of(store, c) is TaskStatus.QUEUED
    [la] = await claim(journal, (a, "x"))
    assert await complete(journal, a, la.token, ok(), ok=True) is TaskStatus.SUCCEEDED
    assert await status_of(store, c) is TaskStatus.QUEUED
    [lb] = await claim(journal, (b, "x"))
    await complete(journal, b, lb.token, ok(), ok=True)
    task_c = await store.get_task(c)
    assert task_c is not None and task_c.status is TaskStatus.READY
    assert set(task_c.depends_on) == {a, b}
    [lc] = await claim(journal, (c, "x"))
    assert await complete(journal, c, lc.token, bad(), ok=False, retryable=False) is (
        TaskStatus.FAILED
    )
    task_d = await store.get_task(d)
    assert task_d is not None and task_d.status is TaskStatus.FAILED
    assert task_d.error == f"dependency {c} failed for good"
    task_e = await store.get_task(e)
    assert task_e is not None and task_e.status is TaskStatus.FAILED
    assert task_e.error == f"dependency {d} failed for good"
    # The cascade is on the audit log, in the same transaction as the death.
    finished = [
        (x.subject, x.result) for x in await store.list_audit() if x.action == "task.finish"
    ]
    assert set(finished[-3:]) == {(c, "failed"), (d, "failed"), (e, "failed")}
    # A new task on a dependency that already failed fails at once.
    (f,) = await submit(journal, TaskSpec(input="f", depends_on=[c]))
    assert await status_of(store, f) is TaskStatus.FAILED


async def test_dependencies_within_one_submit(store: SqliteStore, journal: Journal) -> None:
    (a,) = await submit(journal, TaskSpec(input="a"))
    b, c = await submit(
        journal, TaskSpec(input="b", depends_on=[a]), TaskSpec(input="c", depends_on=[a, a])
    )
    assert (await store.get_task(c)).deps_pending == 1  # type: ignore[union-attr]
    [la] = await claim(journal, (a, "x"))
    await complete(journal, a, la.token, ok(), ok=True)
    assert {await status_of(store, b), await status_of(store, c)} == {TaskStatus.READY}


async def test_unknown_dependency_is_an_error(store: SqliteStore, journal: Journal) -> None:
    with pytest.raises(TaskNotFound, match="task-nope"):
        await submit(journal, TaskSpec(input="ok"), TaskSpec(input="x", depends_on=["task-nope"]))
    # The whole submit was refused: not even the first task, nor its audit entry, stayed.
    assert await store.count_tasks() == {}
    assert await store.list_audit() == []


async def test_retries_back_off_then_fail_naming_the_attempts(
    store: SqliteStore, journal: Journal
) -> None:
    (t,) = await submit(journal, TaskSpec(input="x", max_attempts=2))
    task_id, token = await claim_one(store, journal)
    assert await complete(journal, task_id, token, bad("first"), ok=False) is TaskStatus.READY
    task = await store.get_task(t)
    assert task is not None and task.attempts == 1 and task.not_before > NOW
    assert task.error == "first" and task.lease_expires is None
    assert await store.ready_tasks(None, 10, NOW) == []  # backing off
    later = await store.ready_tasks(None, 10, NOW + 10)
    assert [x.id for x in later] == [t]
    [lease] = await claim(journal, (t, "shell-000002"), now=NOW + 10)
    assert await complete(journal, t, lease.token, bad("second"), ok=False, now=NOW + 11) is (
        TaskStatus.FAILED
    )
    task = await store.get_task(t)
    assert task is not None and task.status is TaskStatus.FAILED
    assert task.error == "failed after 2 attempts: second"
    assert task.attempts == 2
    assert await store.ready_tasks(None, 10, NOW + 10_000) == []
    actions = [(e.action, e.result) for e in await store.list_audit(subject=t)]
    assert actions == [
        ("task.submit", "ready"),
        ("task.retry", "ready"),
        ("task.finish", "failed"),
    ]


async def test_a_late_result_from_an_old_lease_is_ignored(
    store: SqliteStore, journal: Journal
) -> None:
    (t,) = await submit(journal, TaskSpec(input="x"))
    _, old_token = await claim_one(store, journal)
    assert await journal.commit(RescueExpired(now=NOW + LEASE_S - 1)) == []  # not yet
    assert await journal.commit(RescueExpired(now=NOW + 2 * LEASE_S)) == [t]  # ran out
    rescued = await store.get_task(t)
    assert rescued is not None and rescued.status is TaskStatus.READY
    assert "lease expired on agent shell-000001" in rescued.error
    later = NOW + 1000  # past the retry backoff
    [lease] = await claim(journal, (t, "shell-000002"), now=later)
    assert await complete(journal, t, old_token, ok("late"), ok=True, now=later) is None
    assert await complete(journal, t, lease.token, ok("real"), ok=True, now=later) is (
        TaskStatus.SUCCEEDED
    )
    task = await store.get_task(t)
    assert task is not None and task.result is not None and task.result.exec_id == "real"


async def test_heartbeat_extends_only_the_holders_lease(
    store: SqliteStore, journal: Journal
) -> None:
    (t,) = await submit(journal, TaskSpec(input="x"))
    _, token = await claim_one(store, journal)
    assert await journal.commit(Heartbeat(t, token, lease_s=600, now=NOW))
    assert not await journal.commit(Heartbeat(t, "someone-else", lease_s=600, now=NOW))
    assert await journal.commit(RescueExpired(now=NOW + 2 * LEASE_S)) == []
    assert await journal.commit(RescueExpired(now=NOW + 601)) == [t]
    assert not await journal.commit(Heartbeat(t, token, lease_s=600, now=NOW + 601))


async def test_in_flight_comes_from_leases(store: SqliteStore, journal: Journal) -> None:
    ids = await submit(journal, *(TaskSpec(input=str(i)) for i in range(3)))
    leases = await claim(journal, (ids[0], "a1"), (ids[1], "a1"), (ids[2], "a2"))
    assert await store.in_flight(["a1", "a2", "a3"]) == {"a1": 2, "a2": 1, "a3": 0}
    assert await store.in_flight() == {"a1": 2, "a2": 1}
    await complete(journal, ids[0], leases[0].token, ok(), ok=True)
    assert await store.in_flight(["a1"]) == {"a1": 1}
    # Claiming a task that is no longer ready does nothing.
    assert await claim(journal, (ids[0], "a3")) == []


async def test_only_winning_claims_keep_their_routing_audit(
    store: SqliteStore, journal: Journal
) -> None:
    (t,) = await submit(journal, TaskSpec(input="x"))
    route = AuditDraft(actor="router", action="task.route", subject=t)
    claims = (Claim(t, "a1", route), Claim(t, "a2", route))  # the second loses
    [lease] = await journal.commit(ClaimTasks(claims, lease_s=LEASE_S, now=NOW))
    assert lease.agent_id == "a1" and lease.expires == NOW + LEASE_S
    assert [e.action for e in await store.list_audit()] == ["task.submit", "task.route"]


async def test_requeue_of_a_dead_agents_tasks(store: SqliteStore, journal: Journal) -> None:
    (t,) = await submit(journal, TaskSpec(input="x", max_attempts=1))
    await claim_one(store, journal, "shell-dead00")
    assert await journal.commit(RequeueAgent("shell-dead00", "agent died", "t")) == [t]
    task = await store.get_task(t)
    assert task is not None and task.status is TaskStatus.READY and task.attempts == 0
    assert task.not_before == 0 and task.lease_agent is None
    assert await store.in_flight(["shell-dead00"]) == {"shell-dead00": 0}


async def test_cancel_and_manual_retry(store: SqliteStore, journal: Journal) -> None:
    a, b = await submit(journal, TaskSpec(input="a"), TaskSpec(input="b"))
    (c,) = await submit(journal, TaskSpec(input="c", depends_on=[a]))
    assert await journal.commit(CancelTask(a, "t")) == (TaskStatus.READY, None)
    assert await status_of(store, c) is TaskStatus.FAILED
    _, _token = await claim_one(store, journal, "shell-000009")
    prev, agent = await journal.commit(CancelTask(b, "t"))
    assert (prev, agent) == (TaskStatus.RUNNING, "shell-000009")
    assert await store.in_flight(["shell-000009"]) == {"shell-000009": 0}
    with pytest.raises(InvalidInput, match="already cancelled"):
        await journal.commit(CancelTask(b, "t"))
    with pytest.raises(TaskNotFound, match="task-nope"):
        await journal.commit(CancelTask("task-nope", "t"))
    task = await journal.commit(RetryTask(a, "t"))
    assert task.status is TaskStatus.READY and task.attempts == 0
    with pytest.raises(InvalidInput, match="only failed or cancelled"):
        await journal.commit(RetryTask(a, "t"))
    # c failed because a was cancelled; a succeeded since, so c's retry is ready at once.
    [la] = await claim(journal, (a, "x"))
    await complete(journal, a, la.token, ok(), ok=True)
    assert (await journal.commit(RetryTask(c, "t"))).status is TaskStatus.READY


async def test_cancel_a_swarms_tasks(store: SqliteStore, journal: Journal) -> None:
    a, b = await submit(journal, TaskSpec(input="a", swarm="s"), TaskSpec(input="b", swarm="s"))
    (other,) = await submit(journal, TaskSpec(input="o"))
    [lease] = await claim(journal, (a, "shell-000001"))
    cancelled = await journal.commit(CancelSwarmTasks("s", "t"))
    assert sorted(cancelled) == sorted([(a, "shell-000001"), (b, None)])
    assert await store.count_tasks("s") == {"cancelled": 2}
    assert await status_of(store, other) is TaskStatus.READY
    assert await complete(journal, a, lease.token, ok(), ok=True) is None  # too late


async def test_backpressure_refuses_above_95_percent(store: SqliteStore, journal: Journal) -> None:
    done = await submit_all(journal, *(TaskSpec(input=str(i)) for i in range(90)), cap=100)
    assert len(done.tasks) == 90 and done.fill == pytest.approx(0.90)
    await submit(journal, *(TaskSpec(input="x") for _ in range(5)), cap=100)
    audited = len(await store.list_audit())
    with pytest.raises(QueueFull) as e:
        await submit(journal, TaskSpec(input="one too many"), cap=100)
    assert "capacity of 100" in e.value.message and e.value.data["active"] == 95
    assert e.value.data["capacity"] == 100
    counts = await store.count_tasks()
    assert counts == {"ready": 95}  # nothing half-inserted
    assert len(await store.list_audit()) == audited


async def test_backpressure_on_the_whole_queue_names_it(
    store: SqliteStore, journal: Journal
) -> None:
    await submit_all(journal, *(TaskSpec(input=str(i), swarm="s") for i in range(9)), overall=10)
    with pytest.raises(QueueFull, match="the whole queue") as e:
        await submit_all(journal, TaskSpec(input="x"), overall=10)
    assert e.value.data["capacity"] == 10 and e.value.data["active"] == 9
    # Finished tasks do not count against the capacity.
    [lease] = await claim_one_in(store, journal, "s")
    await complete(journal, lease.task.id, lease.token, ok(), ok=True)
    (t,) = (await submit_all(journal, TaskSpec(input="x"), overall=10)).tasks
    assert t.status is TaskStatus.READY


async def claim_one_in(store: SqliteStore, journal: Journal, swarm: str) -> list[Lease]:
    [task] = await store.ready_tasks(swarm, 1, NOW)
    return await claim(journal, (task.id, "shell-000001"))
