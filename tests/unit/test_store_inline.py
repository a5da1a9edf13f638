"""Small transactions run inline on the loop, big ones on the database thread, in order;
an inline commit never waits on a lock or a checkpoint."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.audit import AuditDraft, verify_chain
from core.events import EventBus
from core.models import TaskSpec
from core.store import Journal
from core.store.ops import SubmitTasks
from core.store.sqlite.store import CHECKPOINT_EVERY, INLINE_ROWS
from tests.unit.test_store_commit import CountingStore


def draft(subject: str) -> AuditDraft:
    return AuditDraft(actor="t", action="test.op", subject=subject)


def submit(n: int) -> SubmitTasks:
    specs = tuple(TaskSpec(input=str(i)) for i in range(n))
    return SubmitTasks(specs, swarm_capacity=None, overall_capacity=1_000_000, actor="t")


@pytest.fixture
async def inline(tmp_path: Path) -> AsyncIterator[tuple[CountingStore, Journal]]:
    store = CountingStore(tmp_path / "g.db", inline=True)
    await store.open()
    yield store, Journal(store, EventBus())
    await store.close()


async def test_a_small_op_runs_inline_and_a_big_one_on_the_thread(
    inline: tuple[CountingStore, Journal],
) -> None:
    store, journal = inline
    store.hops.clear()
    store.batch_threads.clear()
    await journal.audit(draft("small"))
    assert store.hops == ["_apply_batch"]
    assert store.batch_threads == {threading.get_ident()}  # on the loop: no hop
    store.hops.clear()
    store.batch_threads.clear()
    done = await journal.commit(submit(INLINE_ROWS + 1))
    assert len(done.tasks) == INLINE_ROWS + 1
    assert store.hops == ["_apply_batch"]
    assert threading.get_ident() not in store.batch_threads  # one call to the thread


async def test_small_ops_wait_behind_a_batch_in_flight_and_keep_their_order(
    inline: tuple[CountingStore, Journal],
) -> None:
    store, journal = inline
    big = asyncio.ensure_future(journal.commit(submit(200), audit=draft("big")))
    await asyncio.sleep(0)  # the big op is on the thread now
    smalls = [journal.audit(draft(f"s-{i}")) for i in range(20)]
    await asyncio.gather(big, *smalls)
    subjects = [e.subject for e in await store.list_audit() if e.action == "test.op"]
    assert subjects == ["big", *[f"s-{i}" for i in range(20)]]
    entries = [e async for e in store.iter_audit()]
    assert verify_chain(entries, await store.audit_head()).ok


async def test_a_locked_database_sends_the_op_to_the_thread_and_the_loop_runs_on(
    inline: tuple[CountingStore, Journal], tmp_path: Path
) -> None:
    store, journal = inline
    other = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    commit = asyncio.ensure_future(journal.audit(draft("waited")))
    ticks = 0
    while ticks < 20:  # the loop is not blocked while the commit waits for the lock
        await asyncio.sleep(0)
        ticks += 1
    assert not commit.done()
    other.execute("ROLLBACK")
    other.close()
    await asyncio.wait_for(commit, 10)
    assert [e.subject for e in await store.list_audit()] == ["waited"]
    assert threading.get_ident() not in store.batch_threads or len(store.batch_threads) > 1


async def test_the_wal_is_checkpointed_as_commits_go(
    inline: tuple[CountingStore, Journal], tmp_path: Path
) -> None:
    store, journal = inline
    for i in range(CHECKPOINT_EVERY * 6):
        await journal.audit(draft(f"n-{i}"))
        await asyncio.sleep(0)  # an engine's loop turns between commits; let it here too
    await store.list_audit(limit=1)  # the thread has run the checkpoints queued before it
    wal = tmp_path / "g.db-wal"
    # An audit-only commit writes ~3 pages. Without checkpoints the WAL would hold all of
    # them (SQLite's automatic checkpoint is off for the writer): ~9 MB here; with them
    # it is reused from the start every CHECKPOINT_EVERY commits.
    assert wal.stat().st_size < 2 * CHECKPOINT_EVERY * 3 * 4200
    entries = [e async for e in store.iter_audit()]
    assert verify_chain(entries, await store.audit_head()).ok
