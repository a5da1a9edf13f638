"""SQLite implementation of the ``Store``: WAL, migrations, and every transaction as one
synchronous unit.

Why not a statement-per-await wrapper: moving each statement to a database thread and
back cost ~60 µs, 27 times per task. Here a transaction is one synchronous function:

- **inline**, on the event loop, when it is small (an exec's start or end, a claim, a
  completion: ~0.1-0.2 ms of SQLite work, less than the two thread wake-ups a hop costs
  on a busy VM) and no batch is in flight;
- else as **one call to the database thread** (big ops: a 1,000-task submit, output
  in bulk, a rescue round), together with whatever queues behind it (group commit: one
  ``BEGIN IMMEDIATE`` ... ``COMMIT``, each op in its own savepoint so a failing op rolls
  back alone).

Nothing an inline transaction does can wait long: the write connection never waits for
a lock (``busy_timeout = 0``; a locked database sends the op to the thread, which
waits), and never checkpoints (``wal_autocheckpoint = 0``; the thread checkpoints the
WAL every ``CHECKPOINT_EVERY`` commits, on a connection of its own, while the writes
that come meanwhile wait behind it on the thread). Reads run on the
thread on that second connection (WAL: readers never block the writer).

Nobody hears of a commit before ``COMMIT`` returned, so durability is that of one
transaction per op (WAL, ``synchronous = NORMAL``: a process crash loses nothing
committed; a power loss may lose the last transactions). Reads from other processes
(``sqlite3`` on the file) are safe in WAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from core.audit import AuditDraft, AuditHead
from core.errors import StoreError
from core.models import (
    Agent,
    AuditEntry,
    Budget,
    BudgetPeriodRecord,
    ExecRecord,
    LogLine,
    Swarm,
    Task,
    TaskStatus,
)
from core.store import ops
from core.store.base import Changes, Committed, OnCommit, Taker
from core.store.sqlite import agents, backup, budgets, changes, swarms, tasks, views
from core.store.sqlite.anchor import anchor_path, read_anchor, write_anchor
from core.store.sqlite.schema import (
    BUSY_TIMEOUT_MS,
    check_and_migrate,
)
from core.store.sqlite.thread import DbThread
from core.store.sqlite.tx import ChainHead, Tx
from core.views import ViewSnapshot

log = logging.getLogger("godel.store")

CHECKPOINT_EVERY = 128  # commits (~1,000 WAL pages, SQLite's own default)
INLINE_ROWS = 64  # an op bigger than this goes to the thread
INLINE_CHARS = 64 * 1024
ANCHOR_EVERY = 0.1  # s: how far the anchor may lag inline commits (see anchor.py)

# Ops small enough to run inline on the loop (see the module docstring).
_INLINE = {
    ops.NoChange,
    ops.InsertAgent,
    ops.SetAgentStatus,
    ops.StartExec,
    ops.FinishExec,
    ops.AppendOutput,
    ops.InsertSwarm,
    ops.UpdateSwarm,
    ops.SubmitTasks,
    ops.ClaimTasks,
    ops.Heartbeat,
    ops.CompleteTask,
    ops.CancelTask,
    ops.RetryTask,
    ops.SetBudget,
    ops.ClearBudget,
    ops.RollBudgets,
    ops.ReserveBudget,
    ops.SettleBudget,
}


def small(op: ops.Op[Any]) -> bool:
    """Is ``op`` small enough to commit inline?"""
    if type(op) not in _INLINE:
        return False
    if isinstance(op, ops.FinishExec | ops.AppendOutput):
        rows = op.output if isinstance(op, ops.FinishExec) else op.rows
        return len(rows) <= INLINE_ROWS and sum(len(r.data) for r in rows) <= INLINE_CHARS
    if isinstance(op, ops.SubmitTasks):
        return len(op.specs) <= INLINE_ROWS
    if isinstance(op, ops.ClaimTasks):
        return len(op.claims) <= INLINE_ROWS
    return True


class _Locked(Exception):
    """Another process holds the write lock: the inline attempt gives way to the thread."""


T = TypeVar("T")


Handler = Callable[[Tx, Any], Any]

# One handler per op: what a second backend implements.
HANDLERS: dict[type[ops.Op[Any]], Handler] = {
    ops.NoChange: agents.no_change,
    ops.InsertAgent: agents.insert_agent,
    ops.SetAgentStatus: agents.set_agent_status,
    ops.StartExec: agents.start_exec,
    ops.FinishExec: agents.finish_exec,
    ops.AppendOutput: agents.append_output,
    ops.InsertSwarm: swarms.insert_swarm,
    ops.UpdateSwarm: swarms.update_swarm,
    ops.SubmitTasks: tasks.submit_tasks,
    ops.ClaimTasks: tasks.claim_tasks,
    ops.Heartbeat: tasks.heartbeat,
    ops.CompleteTask: tasks.complete_task,
    ops.RescueExpired: tasks.rescue_expired,
    ops.RequeueAgent: tasks.requeue_agent,
    ops.CancelTask: tasks.cancel_task,
    ops.CancelSwarmTasks: tasks.cancel_swarm_tasks,
    ops.RetryTask: tasks.retry_task,
    ops.FailWaitingTasks: tasks.fail_waiting_tasks,
    ops.SetBudget: budgets.set_budget,
    ops.ClearBudget: budgets.clear_budget,
    ops.RollBudgets: budgets.roll_budgets,
    ops.ReserveBudget: budgets.reserve_budget,
    ops.SettleBudget: budgets.settle_budget,
    ops.ExpireReservations: budgets.expire_reservations,
}


@dataclass
class _Pending:
    op: ops.Op[Any]
    audit: tuple[AuditDraft, ...]
    future: asyncio.Future[Committed[Any]]
    on_commit: OnCommit[Any] | None = None


@dataclass
class _Outcome:
    value: Any = None
    entries: list[AuditEntry] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)
    error: BaseException | None = None


class SqliteStore:
    def __init__(self, path: Path | str, *, inline: bool = True) -> None:
        """``inline=False`` sends every commit to the database thread (the loop never
        runs SQLite itself), at the cost of two thread wake-ups per transaction."""
        self.path = str(path)
        self._inline = inline
        self._conn: sqlite3.Connection | None = None  # writes (inline, or on the thread)
        self._reader: sqlite3.Connection | None = None  # reads and checkpoints, on the thread
        self._thread: DbThread | None = None
        self._since_checkpoint = 0
        self._checkpointing = False
        self._inline_this_turn = False
        self._head = ChainHead()
        self._capture = changes.Capture()  # task and swarm changes, reported by triggers
        self._queue: list[_Pending] = []  # commits waiting for the batch in flight
        self._writing = False
        self._idle: asyncio.Event | None = None  # set while no batch is in flight
        self._anchor = None if self.path == ":memory:" else anchor_path(self.path)
        self._anchored: tuple[int, str] | None = None  # last head written (thread only)
        self._anchor_timer: asyncio.TimerHandle | None = None

    # lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        self._thread = DbThread()
        self._idle = asyncio.Event()
        self._idle.set()
        try:
            await self._call(self._open)
        except BaseException:
            await asyncio.to_thread(self._thread.stop)
            self._thread = None
            raise

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {self.path}: {e}", path=self.path) from e
        conn.row_factory = sqlite3.Row
        try:
            check_and_migrate(conn, self.path)
            self._capture.install(conn)
            # The writer never waits (see the module docstring); the thread retries.
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            reader = conn
            if self.path != ":memory:":
                reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                reader.row_factory = sqlite3.Row
                reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                reader.execute("PRAGMA query_only = 1")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._reader = reader
        self._sync_anchor(conn)  # first run of a store that has none: anchor it now

    async def close(self) -> None:
        if self._thread is None:
            return
        if self._idle is not None:
            await self._idle.wait()  # every commit handed over has landed
        if self._anchor_timer is not None:
            self._anchor_timer.cancel()  # close writes the exact anchor
            self._anchor_timer = None
        await self._call(self._close_connections)
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.stop)

    def _close_connections(self) -> None:
        if self._reader is not None and self._reader is not self._conn:
            with contextlib.suppress(sqlite3.Error):
                self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._sync_anchor(self._reader, sync=True)
            self._reader.close()
        self._reader = None
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the database thread: one hop."""
        if self._thread is None:
            raise StoreError("the store is not open")
        return await self._thread.call(fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._reader is None:
            raise StoreError("the store is not open")
        return await self._call(fn, self._reader, *args)

    # the one write path ---------------------------------------------------------------

    async def commit(
        self,
        op: ops.Op[T],
        audit: Sequence[AuditDraft] = (),
        on_commit: OnCommit[T] | None = None,
    ) -> Committed[T]:
        if type(op) not in HANDLERS:
            raise TypeError(f"the SQLite store has no handler for {type(op).__name__}")
        if self._conn is None or self._thread is None:
            raise StoreError("the store is not open")
        drafts = tuple(audit)
        # While a checkpoint runs, writes queue for the thread (which runs them after it):
        # a checkpoint that races with writers never finishes, and the WAL never resets.
        # A second commit in the same loop turn means load: it goes to the thread, where
        # it shares a transaction with the others and runs beside the loop.
        if (
            self._inline
            and not self._writing
            and not self._checkpointing
            and not self._inline_this_turn
            and self._reader is not self._conn
            and small(op)
        ):
            self._inline_this_turn = True
            asyncio.get_running_loop().call_soon(self._next_turn)
            try:
                [out] = self._apply_batch([(op, drafts)], wait=False)
            except _Locked:
                pass  # another process writes: queue it for the thread, which waits
            except sqlite3.Error as e:  # the transaction itself failed (disk full...)
                raise _store_error(e, self.path) from e
            else:
                self._counted(1)
                self._anchor_later()
                if out.error is not None:
                    raise out.error
                done: Committed[T] = Committed(out.value, out.entries, out.changes)
                self._after(op, done, on_commit)
                return done
        future: asyncio.Future[Committed[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(op, drafts, future, on_commit))
        if not self._writing:
            self._send()
        # A caller that gives up (is cancelled) still gets its op committed: it was queued.
        return cast(Committed[T], await future)

    def _next_turn(self) -> None:
        self._inline_this_turn = False

    @staticmethod
    def _after(op: ops.Op[Any], done: Committed[Any], on_commit: OnCommit[Any] | None) -> None:
        if on_commit is not None:
            try:
                on_commit(done)
            except Exception:
                log.exception("after committing %s: on_commit failed", type(op).__name__)

    def _counted(self, commits: int) -> None:
        """Checkpoint the WAL on the thread every ``CHECKPOINT_EVERY`` commits."""
        self._since_checkpoint += commits
        if (
            self._since_checkpoint >= CHECKPOINT_EVERY
            and not self._checkpointing
            and self._thread is not None
            and self._reader is not None
        ):
            self._since_checkpoint = 0
            self._checkpointing = True
            self._thread.submit(self._checkpoint, (self._reader,), self._checkpointed)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._sync_anchor(conn)

    # the anchor (see anchor.py) --------------------------------------------------------

    def _anchor_later(self) -> None:
        """After an inline commit, on the loop: have the thread write the anchor within
        ``ANCHOR_EVERY`` (one write for all the commits meanwhile; the loop writes no file)."""
        if self._anchor is not None and self._anchor_timer is None:
            loop = asyncio.get_running_loop()
            self._anchor_timer = loop.call_later(ANCHOR_EVERY, self._anchor_now)

    def _anchor_now(self) -> None:
        self._anchor_timer = None
        if self._thread is not None and self._reader is not None:
            self._thread.submit(self._sync_anchor, (self._reader,), _ignore)

    def _sync_anchor(self, conn: sqlite3.Connection, *, sync: bool = False) -> None:
        """On the database thread: write the committed audit head to the anchor if it
        moved. A failure to write it is logged, never fails a commit."""
        if self._anchor is None:
            return
        try:
            head = agents.audit_head(conn)
            if head is None or (not sync and (head.seq, head.entry_hash) == self._anchored):
                return
            write_anchor(self._anchor, head, sync=sync)
            self._anchored = (head.seq, head.entry_hash)
        except (OSError, sqlite3.Error) as e:
            log.warning("could not write the store's anchor %s: %s", self._anchor, e)

    def _checkpointed(self, result: Any, error: BaseException | None) -> None:
        self._checkpointing = False
        if error is not None:
            log.warning("WAL checkpoint of %s failed: %s", self.path, error)

    def _send(self) -> None:
        """Hand every queued commit to the database thread as one batch."""
        assert self._thread is not None and self._idle is not None
        batch, self._queue = self._queue, []
        self._writing = True
        self._idle.clear()
        self._thread.submit(
            self._apply_batch,
            ([(p.op, p.audit) for p in batch],),
            lambda outcomes, error: self._landed(batch, outcomes, error),
        )

    def _landed(
        self, batch: list[_Pending], outcomes: list[_Outcome] | None, error: BaseException | None
    ) -> None:
        """On the loop, after a batch: settle each commit, then send what queued meanwhile."""
        self._writing = False
        for i, p in enumerate(batch):
            if error is not None or outcomes is None:  # COMMIT failed: none of it landed
                if not p.future.done():
                    p.future.set_exception(_store_error(error, self.path))
            elif (out := outcomes[i]).error is not None:
                if not p.future.done():
                    p.future.set_exception(out.error)
            else:
                done = Committed(out.value, out.entries, out.changes)
                self._after(p.op, done, p.on_commit)
                if not p.future.done():
                    p.future.set_result(done)
        if outcomes is not None:
            self._counted(len(batch))
        if self._queue and self._thread is not None:
            self._send()
        elif self._idle is not None:
            self._idle.set()

    def _begin(self, conn: sqlite3.Connection, wait: bool) -> None:
        """``BEGIN IMMEDIATE``; if another process holds the write lock, give way at once
        (inline) or wait up to the busy timeout (on the thread)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.001
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if not wait:
                    raise _Locked(str(e)) from e
                if time.monotonic() >= deadline:
                    raise
                time.sleep(pause)  # on the database thread, never the loop
                pause = min(pause * 2, 0.05)

    def _apply_batch(
        self, batch: list[tuple[ops.Op[Any], tuple[AuditDraft, ...]]], *, wait: bool = True
    ) -> list[_Outcome]:
        conn = self.conn
        outcomes: list[_Outcome] = []
        # A lone op needs no savepoint: if it fails, the whole transaction goes.
        savepoints = len(batch) > 1
        self._begin(conn, wait)
        try:
            for op, audit in batch:
                if savepoints:
                    conn.execute("SAVEPOINT op")
                before = self._head.value
                tx = Tx(conn, self._head)
                try:
                    value = HANDLERS[type(op)](tx, op)
                    for draft in audit:
                        tx.audit(draft)
                    changed = self._capture.take(conn)
                except Exception as e:
                    self._capture.discard()
                    conn.execute("ROLLBACK TO op" if savepoints else "ROLLBACK")
                    if savepoints:
                        conn.execute("RELEASE op")
                    self._head.value = before
                    outcomes.append(_Outcome(error=e))
                else:
                    if savepoints:
                        conn.execute("RELEASE op")
                    outcomes.append(_Outcome(value=value, entries=tx.entries, changes=changed))
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException:
            self._capture.discard()
            self._head.value = None  # re-read from the database on the next append
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if wait:  # on the thread: anchor what it just committed
            self._sync_anchor(conn)
        return outcomes

    # reads: agents, execs, output ----------------------------------------------------

    async def view_snapshot(self) -> ViewSnapshot:
        return await self._read(views.view_snapshot)

    async def get_agent(self, agent_id: str) -> Agent | None:
        return await self._read(agents.get_agent, agent_id)

    async def list_agents(self, *, include_ended: bool = True) -> list[Agent]:
        return await self._read(agents.list_agents, include_ended)

    async def running_execs(self) -> list[ExecRecord]:
        return await self._read(agents.running_execs)

    async def list_execs(self, agent_id: str, limit: int = 50) -> list[ExecRecord]:
        return await self._read(agents.list_execs, agent_id, limit)

    async def read_output(
        self,
        agent_id: str,
        *,
        after_seq: int = 0,
        limit: int = 10_000,
        max_bytes: int | None = None,
    ) -> list[LogLine]:
        return await self._read(agents.read_output, agent_id, after_seq, limit, max_bytes)

    async def get_exec(self, exec_id: str) -> ExecRecord | None:
        return await self._read(agents.get_exec, exec_id)

    async def read_exec_output(
        self, exec_id: str, *, limit: int = 10_000, max_bytes: int = 8 * 1024 * 1024
    ) -> tuple[list[LogLine], bool]:
        return await self._read(agents.read_exec_output, exec_id, limit, max_bytes)

    # reads: swarms and the queue -------------------------------------------------------

    async def get_swarm(self, name: str) -> Swarm | None:
        return await self._read(swarms.get_swarm, name)

    async def list_swarms(self, *, include_destroyed: bool = False) -> list[Swarm]:
        return await self._read(swarms.list_swarms, include_destroyed)

    async def get_task(self, task_id: str) -> Task | None:
        return await self._read(tasks.get_task, task_id)

    async def list_tasks(
        self,
        *,
        swarm: str | None = None,
        status: TaskStatus | None = None,
        limit: int = 1000,
        any_swarm: bool = True,
    ) -> list[Task]:
        return await self._read(tasks.list_tasks, swarm, status, limit, any_swarm)

    async def count_tasks(self, swarm: str | None = None, any_swarm: bool = True) -> dict[str, int]:
        return await self._read(tasks.count_tasks, swarm, any_swarm)

    async def ready_by_priority(self, swarm: str | None) -> dict[str, int]:
        return await self._read(tasks.ready_by_priority, swarm)

    async def ready_tasks(
        self,
        swarm: str | None,
        limit: int,
        now: float,
        *,
        takers: Collection[Taker] | None = None,
        exclude: Collection[str] = (),
    ) -> list[Task]:
        return await self._read(tasks.ready_tasks, swarm, limit, now, takers, tuple(exclude))

    async def in_flight(self, agent_ids: Sequence[str] | None = None) -> dict[str, int]:
        return await self._read(tasks.in_flight, agent_ids)

    # reads: budgets -------------------------------------------------------------------

    async def list_budgets(self) -> list[Budget]:
        return await self._read(budgets.list_budgets)

    async def budget_history(self, limit: int = 100) -> list[BudgetPeriodRecord]:
        return await self._read(budgets.budget_history, limit)

    # reads: audit -----------------------------------------------------------------------

    async def list_audit(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> list[AuditEntry]:
        return await self._read(agents.list_audit, after_seq, limit, subject)

    async def iter_audit(self, batch: int = 1000) -> AsyncIterator[AuditEntry]:
        last = 0
        while True:
            entries, last = await self._read(agents.audit_batch, last, batch)
            if not entries:
                return
            for entry in entries:
                yield entry

    async def audit_head(self) -> AuditHead | None:
        return await self._read(agents.audit_head)

    async def audit_anchor(self) -> AuditHead | None:
        if self._anchor is None:
            return None
        return await self._call(read_anchor, self._anchor)

    # backup ----------------------------------------------------------------------------

    async def backup(self, dest: str, *, force: bool = False) -> dict[str, Any]:
        # On the database thread's reader: the loop never waits for the copy.
        return await self._read(_backup, Path(dest), force)


def _backup(conn: sqlite3.Connection, dest: Path, force: bool) -> dict[str, Any]:
    return backup.write_backup(conn, dest, force=force)


def _ignore(result: Any, error: BaseException | None) -> None:
    """``_sync_anchor`` logs its own failures."""


def _store_error(e: BaseException | None, path: str) -> BaseException:
    if e is None:
        return StoreError(f"could not write to the store {path}", path=path)
    if isinstance(e, sqlite3.Error):
        return StoreError(f"could not write to the store {path}: {e}", path=path)
    return e
