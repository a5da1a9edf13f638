"""The one write path: ``Store.commit`` (group commit on one database thread) and the
``Journal`` that alone calls it and publishes only after the commit."""

from __future__ import annotations

import ast
import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from core.audit import AuditDraft, verify_chain
from core.errors import StoreError, SwarmError, TaskNotFound
from core.events import (
    AuditAppended,
    Event,
    EventBus,
    QueuePressure,
    Subscription,
    SwarmChanged,
    TaskChanged,
    TaskFinished,
)
from core.models import Swarm, TaskSpec, utcnow
from core.store import Journal, SqliteStore
from core.store.ops import (
    CancelTask,
    InsertSwarm,
    NoChange,
    Op,
    SubmitTasks,
    Submitted,
)

T = TypeVar("T")

CORE = Path(__file__).resolve().parents[2] / "core"
JOURNAL_FILE = CORE / "store" / "journal.py"


class CountingStore(SqliteStore):
    """Records every hop to the database thread: a write batch (``_apply_batch``, however
    the store hands it over) or any other function run through ``_call`` (reads, open,
    close), by name, and the threads the batches ran on."""

    def __init__(self, path: Path | str, *, inline: bool = False) -> None:
        super().__init__(path, inline=inline)
        self.hops: list[str] = []
        self.batch_threads: set[int] = set()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        name = getattr(fn, "__name__", repr(fn))
        if name != "_apply_batch":  # counted where it runs
            self.hops.append(name)
        return await super()._call(fn, *args)

    def _apply_batch(
        self, batch: list[tuple[Op[Any], tuple[AuditDraft, ...]]], *, wait: bool = True
    ) -> Any:
        self.hops.append("_apply_batch")
        self.batch_threads.add(threading.get_ident())
        return super()._apply_batch(batch, wait=wait)


@dataclass
class Env:
    store: CountingStore
    journal: Journal
    bus: EventBus


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = CountingStore(tmp_path / "g.db")
    await store.open()
    bus = EventBus()
    yield Env(store, Journal(store, bus), bus)
    await store.close()


def swarm(name: str) -> Swarm:
    return Swarm(
        name=name,
        runtime="shell",
        model=None,
        skills=[],
        strategy="balanced",
        min_agents=0,
        max_agents=4,
        target_per_agent=1,
        desired=1,
        capacity=100,
        status="active",
        created_at=utcnow(),
    )


def draft(subject: str, action: str = "test.op") -> AuditDraft:
    return AuditDraft(actor="t", action=action, subject=subject)


def submit(*specs: TaskSpec) -> SubmitTasks:
    return SubmitTasks(specs, swarm_capacity=None, overall_capacity=1_000_000, actor="t")


def drain(sub: Subscription) -> list[Event]:
    out: list[Event] = []
    while True:
        try:
            out.append(sub.get_nowait())
        except asyncio.QueueEmpty:
            return out


async def assert_chain_intact(store: SqliteStore) -> int:
    entries = [e async for e in store.iter_audit()]
    report = verify_chain(entries, await store.audit_head())
    assert report.ok, report.summary()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    return len(entries)


# --- group commit --------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    op: Op[Any]
    audit: AuditDraft
    error: type[Exception] | None  # what it must raise, None if it must land
    names: str  # a text its own error must name


def mixed_cases(n: int) -> list[Case]:
    """Good and failing ops, interleaved; every one carries its own audit draft."""
    cases = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            cases.append(Case(NoChange(), draft(f"note-{i}"), None, ""))
        elif kind == 1:
            cases.append(Case(InsertSwarm(swarm(f"s-{i}")), draft(f"s-{i}"), None, ""))
        elif kind == 2:
            op = submit(TaskSpec(input=f"good-{i}"), TaskSpec(input=f"good-{i}-b"))
            cases.append(Case(op, draft(f"submit-{i}"), None, ""))
        elif kind == 3:  # fails before it writes anything
            missing = f"task-missing-{i}"
            cases.append(
                Case(CancelTask(missing, "t"), draft(f"bad-{i}"), TaskNotFound, repr(missing))
            )
        elif kind == 4:  # fails on a name taken before the batch
            cases.append(Case(InsertSwarm(swarm("taken")), draft(f"bad-{i}"), SwarmError, "taken"))
        else:  # inserts and audits a task in its savepoint, then fails on the second
            op = submit(
                TaskSpec(input=f"doomed-{i}"),
                TaskSpec(input=f"doomed-{i}-b", depends_on=[f"task-nope-{i}"]),
            )
            cases.append(Case(op, draft(f"bad-{i}"), TaskNotFound, repr(f"task-nope-{i}")))
    return cases


async def test_group_commit_lands_the_good_ops_and_isolates_the_bad(env: Env) -> None:
    await env.journal.commit(InsertSwarm(swarm("taken")), audit=draft("taken"))
    cases = mixed_cases(200)
    hops_before = len(env.store.hops)
    sub = env.bus.subscribe("test", maxsize=10_000)

    results = await asyncio.gather(
        *(env.journal.commit(c.op, audit=c.audit) for c in cases), return_exceptions=True
    )

    batches = env.store.hops[hops_before:].count("_apply_batch")
    assert 1 <= batches < len(cases), f"{len(cases)} concurrent commits took {batches} batches"
    for case, result in zip(cases, results, strict=True):
        if case.error is None:
            assert not isinstance(result, BaseException), (case.op, result)
        else:
            assert isinstance(result, case.error), (case.op, result)
            assert case.names in str(result), (case.op, result)  # its own error, not another's

    good = [c for c in cases if c.error is None]
    audit = await env.store.list_audit()
    subjects = {e.subject for e in audit}
    assert {c.audit.subject for c in good} <= subjects
    assert not {s for s in subjects if s.startswith("bad-")}, "a failed op left its audit entry"
    submitted = [e for e in audit if e.action == "task.submit"]
    assert all(not str(e.payload["input"]).startswith("doomed-") for e in submitted)
    n_good_submits = sum(isinstance(c.op, SubmitTasks) for c in good)
    assert len(submitted) == 2 * n_good_submits
    # Exactly the good ops' entries: one draft each, plus each good submit's two tasks.
    assert len(audit) == 1 + len(good) + 2 * n_good_submits

    tasks = await env.store.list_tasks(limit=10_000)
    assert len(tasks) == 2 * n_good_submits
    assert not [t for t in tasks if t.input.startswith("doomed-")]
    swarms = {s.name for s in await env.store.list_swarms()}
    assert swarms == {"taken"} | {c.op.swarm.name for c in good if isinstance(c.op, InsertSwarm)}

    assert await assert_chain_intact(env.store) == len(audit)
    # The journal published one audit.appended per new entry, and nothing for failures.
    published = drain(sub)
    assert all(isinstance(e, AuditAppended | TaskChanged | SwarmChanged) for e in published)
    # ...and one change event per task and swarm the good ops wrote, none for the bad.
    changed_tasks = {e.task_id for e in published if isinstance(e, TaskChanged)}
    assert changed_tasks == {t.id for t in tasks}
    changed_swarms = {e.swarm.name for e in published if isinstance(e, SwarmChanged)}
    assert changed_swarms == swarms - {"taken"}
    assert sorted(e.seq_no for e in published if isinstance(e, AuditAppended)) == [
        e.seq for e in audit[1:]
    ]
    # The cached chain head is right after the failures: the next commit chains on.
    await env.journal.audit(draft("after"))
    assert await assert_chain_intact(env.store) == len(audit) + 1


async def test_the_first_op_after_a_reopen_may_fail(tmp_path: Path) -> None:
    """The chain head is read from the file on the first append; a failing op that read
    it must not leave a stale head for the ops batched after it."""
    db = tmp_path / "g.db"
    store = SqliteStore(db)
    await store.open()
    await Journal(store, EventBus()).audit(draft("first"))
    await store.close()

    store = SqliteStore(db)
    await store.open()
    journal = Journal(store, EventBus())
    bad = submit(TaskSpec(input="a"), TaskSpec(input="b", depends_on=["task-nope"]))
    results = await asyncio.gather(
        journal.commit(bad, audit=draft("bad")),
        *(journal.audit(draft(f"good-{i}")) for i in range(5)),
        return_exceptions=True,
    )
    assert isinstance(results[0], TaskNotFound)
    assert list(results[1:]) == [None] * 5
    assert [e.subject for e in await store.list_audit()] == [
        "first",
        *(f"good-{i}" for i in range(5)),
    ]
    assert await assert_chain_intact(store) == 6
    await store.close()


async def test_commits_in_separate_turns_each_land(env: Env) -> None:
    for i in range(5):
        await env.journal.audit(draft(f"n-{i}"))
        with pytest.raises(TaskNotFound):
            await env.journal.commit(CancelTask("task-x", "t"), audit=draft(f"bad-{i}"))
    assert [e.subject for e in await env.store.list_audit()] == [f"n-{i}" for i in range(5)]
    assert await assert_chain_intact(env.store) == 5


# --- one transaction, one hop ---------------------------------------------------------


async def test_a_transaction_is_one_call_to_the_database_thread(env: Env) -> None:
    """However many statements an op runs, it goes to the database thread once."""
    env.store.hops.clear()
    done = await env.journal.commit(
        submit(*(TaskSpec(input=str(i)) for i in range(20))), audit=draft("many")
    )
    assert len(done.tasks) == 20
    assert env.store.hops == ["_apply_batch"]
    # ... on the database thread, never on the event loop's.
    assert env.store.batch_threads and threading.get_ident() not in env.store.batch_threads


async def test_concurrent_commits_share_thread_calls(env: Env) -> None:
    n = 50
    env.store.hops.clear()
    await asyncio.gather(*(env.journal.audit(draft(f"c-{i}")) for i in range(n)))
    # All issued in one loop turn: today they go as one batch; never one call each.
    assert env.store.hops and set(env.store.hops) == {"_apply_batch"}
    assert len(env.store.hops) < n
    assert len(env.store.batch_threads) == 1  # one database thread
    assert await assert_chain_intact(env.store) == n


# --- the journal publishes after the commit, only ------------------------------------


async def test_the_journal_publishes_nothing_for_a_failed_commit(env: Env) -> None:
    sub = env.bus.subscribe("test")
    called: list[object] = []

    def events(value: object) -> list[Event]:
        called.append(value)
        return [TaskFinished(task_id="task-x", status="cancelled")]

    with pytest.raises(TaskNotFound):
        await env.journal.commit(CancelTask("task-x", "t"), audit=draft("x"), events=events)
    await env.journal.commit(InsertSwarm(swarm("a")), audit=draft("a"))  # good
    with pytest.raises(SwarmError):
        await env.journal.commit(
            InsertSwarm(swarm("a")),
            audit=draft("a-again"),
            events=[TaskFinished(task_id="task-y", status="failed")],
        )
    published = drain(sub)
    # Only the good InsertSwarm was announced (its swarm, its audit entry); no failure was.
    assert [type(e) for e in published] == [SwarmChanged, AuditAppended]
    assert called == []


async def test_the_journal_publishes_the_changes_the_callers_events_then_the_entries(
    env: Env,
) -> None:
    await env.journal.audit(draft("earlier"))
    sub = env.bus.subscribe("test")
    seen: list[Submitted] = []

    def events(done: Submitted) -> list[Event]:
        seen.append(done)
        return [
            QueuePressure(scope="the whole queue", fraction=done.fill, capacity=1_000_000),
            TaskFinished(task_id=done.tasks[0].id, status="ready"),
        ]

    value = await env.journal.commit(
        submit(TaskSpec(input="a"), TaskSpec(input="b")),
        audit=[draft("extra-1"), draft("extra-2")],
        events=events,
    )
    assert seen == [value]
    published = drain(sub)
    assert [e.type for e in published] == [
        *["task.changed"] * 2,
        "queue.pressure",
        "task.finished",
        *["audit.appended"] * 4,
    ]
    assert [e.task_id for e in published[:2]] == [t.id for t in value.tasks]  # type: ignore[union-attr]
    assert published[3].task_id == value.tasks[0].id  # type: ignore[union-attr]
    appended = [e for e in published if isinstance(e, AuditAppended)]
    entries = await env.store.list_audit(after_seq=1)
    assert [e.seq_no for e in appended] == [2, 3, 4, 5]
    assert [(e.seq_no, e.action, e.subject, e.actor, e.result) for e in appended] == [
        (x.seq, x.action, x.subject, x.actor, x.result) for x in entries
    ]
    # The op's own entries (one per task) come before the caller's drafts.
    assert [e.subject for e in appended] == [
        value.tasks[0].id,
        value.tasks[1].id,
        "extra-1",
        "extra-2",
    ]
    assert [e.seq for e in published] == sorted(e.seq for e in published)


async def test_an_audit_only_action_is_published(env: Env) -> None:
    sub = env.bus.subscribe("test")
    await env.journal.audit(
        draft("daemon", "daemon.start"), events=[TaskFinished(task_id="t", status="x")]
    )
    assert [e.type for e in drain(sub)] == ["task.finished", "audit.appended"]
    [entry] = await env.store.list_audit()
    assert (entry.action, entry.subject) == ("daemon.start", "daemon")


# --- a store that is not open ----------------------------------------------------------


async def test_a_store_that_was_never_opened_refuses_commits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db")
    bus = EventBus()
    sub = bus.subscribe("test")
    with pytest.raises(StoreError, match="not open"):
        await store.commit(NoChange(), [draft("x")])
    with pytest.raises(StoreError, match="not open"):
        await Journal(store, bus).audit(draft("x"))
    assert drain(sub) == []
    assert not (tmp_path / "g.db").exists()


async def test_a_closed_store_refuses_commits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    journal = Journal(store, EventBus())
    await journal.audit(draft("before"))
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await journal.audit(draft("after"))
    with pytest.raises(StoreError, match="not open"):
        await store.list_audit()
    await store.close()  # closing twice is harmless

    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    assert [e.subject for e in await store.list_audit()] == ["before"]
    await store.close()


async def test_commits_in_flight_when_the_store_closes_still_land(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    journal = Journal(store, EventBus())
    pending = [asyncio.ensure_future(journal.audit(draft(f"p-{i}"))) for i in range(10)]
    # A read suspends this test until the database thread answers: by then the commits
    # above have run up to their queueing, before the close.
    await store.audit_head()
    await store.close()
    assert all(p.done() and p.exception() is None for p in pending)

    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    assert await assert_chain_intact(store) == 10
    await store.close()


async def test_an_op_with_no_handler_is_refused(env: Env) -> None:
    class Unknown(Op[None]):
        pass

    with pytest.raises(TypeError, match="no handler for Unknown"):
        await env.journal.commit(Unknown())
    assert await env.store.list_audit() == []


# --- nothing else writes ----------------------------------------------------------------


def _receiver(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def store_commits(source: str, filename: str) -> list[str]:
    """Every ``X.commit`` (a call or a reference) whose ``X`` is not a journal, and every
    ``getattr(X, "commit")``, as ``file:line: code``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr == "commit":
            name = _receiver(node.value)
            if name is None or not name.lower().endswith("journal"):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "commit"
        ):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 20, f"found only {len(files)} files under {CORE}"
    return files


def test_the_scan_catches_the_ways_code_names_a_store() -> None:
    code = (
        "async def f(self, ctx, store):\n"
        "    await store.commit(op)\n"
        "    await self.store.commit(op, [])\n"
        "    await ctx.store.commit(op)\n"
        "    await self._store.commit(op)\n"
        "    write = self.ctx.store.commit\n"
        "    await getattr(store, 'commit')(op)\n"
        "    await make().commit(op)\n"
        "    await self.journal.commit(op)\n"
        "    await self.ctx.journal.commit(op)\n"
        "    await journal.commit(op)\n"
    )
    lines = sorted(int(hit.split(":")[1]) for hit in store_commits(code, "x.py"))
    assert lines == list(range(2, 9))


def test_only_the_journal_commits_to_a_store() -> None:
    """Nothing in core but the journal writes to the store, hence audit entries."""
    assert any("self.store.commit" in hit for hit in store_commits(JOURNAL_FILE.read_text(), "j"))
    offenders = [
        hit
        for path in core_files()
        if path != JOURNAL_FILE
        for hit in store_commits(path.read_text(encoding="utf-8"), str(path.relative_to(CORE)))
    ]
    assert not offenders, (
        "only core/store/journal.py may call Store.commit (go through the Journal: "
        "journal.commit / journal.audit); found:\n  " + "\n  ".join(offenders)
    )


def test_only_the_store_backend_seals_and_inserts_audit_entries() -> None:
    offenders = []
    for path in core_files():
        rel = path.relative_to(CORE).as_posix()
        text = path.read_text(encoding="utf-8")
        if "INSERT INTO audit_log" in text and rel != "store/sqlite/tx.py":
            offenders.append(f"core/{rel}: INSERT INTO audit_log")
        tree = ast.parse(text, rel)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and _receiver(node.func) == "seal"
                and not rel.startswith("store/")
            ):
                offenders.append(f"core/{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "audit entries are made only by a store backend:\n  " + "\n  ".join(
        offenders
    )
