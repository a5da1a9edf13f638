"""SQLite implementation of the ``Store`` (aiosqlite, WAL, versioned migrations).

One connection per store; writes are serialised by an asyncio lock and run in
``BEGIN IMMEDIATE`` transactions so the audit head and the rows it covers always
commit together. Reads from other processes (``sqlite3`` on the file) are safe in WAL.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from core.audit import GENESIS_HASH, AuditHead, compute_entry_hash, format_ts
from core.errors import StoreError
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    AuditEntry,
    ExecRecord,
    ExecStatus,
    LogLine,
    StatusChange,
    StatusSource,
    Usage,
    utcnow,
)
from core.store.base import AuditDraft, OutputRow
from core.store.sqlite_tasks import TaskStoreMixin

# "GODL": marks the file as ours, so a foreign SQLite file is refused, not migrated.
APPLICATION_ID = 0x474F444C
BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")


def load_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every bundled migration, in order."""
    out = []
    for item in resources.files("core.store.migrations").iterdir():
        name = item.name
        if not name.endswith(".sql"):
            continue
        version = int(name.split("_", 1)[0])
        out.append((version, name, item.read_text(encoding="utf-8")))
    out.sort()
    for i, (version, name, _) in enumerate(out, start=1):
        if version != i:
            raise RuntimeError(f"migration {name} is out of sequence (expected {i:04d}_...)")
    return out


MIGRATIONS = load_migrations()
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


class SqliteStore(TaskStoreMixin):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # Called with each audit entry after its transaction commits (the engine
        # publishes them on the event bus).
        self.audit_listeners: list[Callable[[AuditEntry], None]] = []
        self._pending_audit: list[AuditEntry] = []
        # The last audit (seq, hash), cached: this store is the only writer and appends
        # under the write lock; dropped on rollback and re-read on the next append.
        self._head: tuple[int, str] | None = None

    # lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {self.path}: {e}", path=self.path) from e
        self._db = db
        db.row_factory = sqlite3.Row
        try:
            await self._check_and_migrate(db)
        except BaseException:
            await db.close()
            self._db = None
            raise

    async def _check_and_migrate(self, db: aiosqlite.Connection) -> None:
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            app_id = await self._scalar(db, "PRAGMA application_id")
            version = await self._scalar(db, "PRAGMA user_version")
            tables = await self._scalar(db, "SELECT count(*) FROM sqlite_master")
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"the store {self.path} is not a SQLite database or is corrupt ({e}); "
                "nothing was changed. Move it aside to start afresh, or restore a backup.",
                path=self.path,
                problem=str(e),
            ) from e
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables and version == 0):
            raise StoreError(
                f"{self.path} is a SQLite database that Godel did not create; refusing to use it",
                path=self.path,
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {version}, newer than this "
                f"Godel supports ({SCHEMA_VERSION}); upgrade Godel. Nothing was changed.",
                path=self.path,
                schema_version=version,
                supported=SCHEMA_VERSION,
            )
        if version > 0:
            check = await self._scalar(db, "PRAGMA quick_check")
            if check != "ok":
                raise StoreError(
                    f"the store {self.path} failed its integrity check: {check}",
                    path=self.path,
                    problem=str(check),
                )
        mode = await self._scalar(db, "PRAGMA journal_mode = WAL")
        if self.path != ":memory:" and str(mode).lower() != "wal":
            raise StoreError(f"cannot switch {self.path} to WAL mode (got {mode})")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        for v, name, sql in MIGRATIONS:
            if v <= version:
                continue
            # executescript commits on its own; the version bump is in the same script.
            script = (
                f"BEGIN IMMEDIATE;\n{sql}\n"
                f"PRAGMA application_id = {APPLICATION_ID};\n"
                f"PRAGMA user_version = {v};\nCOMMIT;"
            )
            try:
                await db.executescript(script)
            except sqlite3.Error as e:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise StoreError(f"migration {name} failed on {self.path}: {e}") from e

    @staticmethod
    async def _scalar(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = list(await db.execute_fetchall(sql, params))
        row = rows[0] if rows else None
        return None if row is None else row[0]

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    async def _write(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` in one IMMEDIATE transaction; roll back on any error."""
        async with self._write_lock:
            db = self.db
            await db.execute("BEGIN IMMEDIATE")
            self._pending_audit = []
            try:
                result = await fn(db)
            except BaseException:
                self._pending_audit = []
                self._head = None
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
            committed, self._pending_audit = self._pending_audit, []
        for entry in committed:
            for listener in self.audit_listeners:
                listener(entry)
        return result

    # agents --------------------------------------------------------------------

    @staticmethod
    def _agent(row: sqlite3.Row) -> Agent:
        return Agent(
            id=row["id"],
            runtime=row["runtime"],
            name=row["name"],
            model=row["model"],
            skills=json.loads(row["skills"]),
            workspace=Path(row["workspace"]),
            pid=row["pid"],
            pid_started_at=row["pid_started_at"],
            status=AgentStatus(row["status"]),
            status_source=StatusSource(row["status_source"]),
            status_reason=row["status_reason"],
            status_at=_dt(row["status_at"]),
            created_at=_dt(row["created_at"]),
            spec=AgentSpec.model_validate_json(row["spec"]),
            swarm=row["swarm"],
        )

    async def insert_agent(self, agent: Agent, audit: AuditDraft | None = None) -> None:
        async def fn(db: aiosqlite.Connection) -> None:
            try:
                await db.execute(
                    "INSERT INTO agents (id, runtime, name, model, skills, workspace, pid, "
                    "pid_started_at, status, status_source, status_reason, status_at, "
                    "created_at, spec, swarm) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        agent.id,
                        agent.runtime,
                        agent.name,
                        agent.model,
                        json.dumps(agent.skills),
                        str(agent.workspace),
                        agent.pid,
                        agent.pid_started_at,
                        agent.status.value,
                        agent.status_source.value,
                        agent.status_reason,
                        agent.status_at.isoformat(),
                        agent.created_at.isoformat(),
                        agent.spec.model_dump_json(),
                        agent.swarm,
                    ),
                )
            except sqlite3.IntegrityError as e:
                if "agents_name" in str(e) or "agents.name" in str(e):
                    raise StoreError(
                        f"an agent named {agent.name!r} is already running", name=agent.name
                    ) from e
                raise
            if audit:
                await self._append_audit(db, audit)

        await self._write(fn)

    async def get_agent(self, agent_id: str) -> Agent | None:
        rows = list(
            await self.db.execute_fetchall(
                "SELECT * FROM agents WHERE id = ? OR (name = ? AND status NOT IN "
                "('stopped','lost','failed')) ORDER BY id = ? DESC LIMIT 1",
                (agent_id, agent_id, agent_id),
            )
        )
        return self._agent(rows[0]) if rows else None

    async def list_agents(self, *, include_ended: bool = True) -> list[Agent]:
        sql = "SELECT * FROM agents"
        if not include_ended:
            sql += " WHERE status NOT IN ('stopped','lost','failed')"
        sql += " ORDER BY created_at, id"
        rows = list(await self.db.execute_fetchall(sql))
        return [self._agent(r) for r in rows]

    async def set_agent_status(
        self,
        agent_id: str,
        change: StatusChange,
        *,
        pid: int | None = None,
        pid_started_at: float | None = None,
        audit: AuditDraft | None = None,
    ) -> AgentStatus | None:
        async def fn(db: aiosqlite.Connection) -> AgentStatus | None:
            prev = await self._scalar(db, "SELECT status FROM agents WHERE id = ?", (agent_id,))
            if prev is None:
                return None
            sets = "status = ?, status_source = ?, status_reason = ?, status_at = ?"
            params: list[Any] = [
                change.status.value,
                change.source.value,
                change.reason,
                change.at.isoformat(),
            ]
            if pid is not None:
                sets += ", pid = ?, pid_started_at = ?"
                params += [pid, pid_started_at]
            await db.execute(f"UPDATE agents SET {sets} WHERE id = ?", (*params, agent_id))
            if audit:
                await self._append_audit(db, audit)
            return AgentStatus(prev)

        return await self._write(fn)

    # execs and output ----------------------------------------------------------

    @staticmethod
    def _exec(row: sqlite3.Row) -> ExecRecord:
        return ExecRecord(
            id=row["id"],
            agent_id=row["agent_id"],
            input=row["input"],
            status=ExecStatus(row["status"]),
            exit_code=row["exit_code"],
            reason=row["reason"],
            started_at=_dt(row["started_at"]),
            finished_at=_dt(row["finished_at"]) if row["finished_at"] else None,
            actor=row["actor"],
            model=row["model"],
            usage=Usage(
                input_tokens=row["input_tokens"],
                output_tokens=row["output_tokens"],
                cache_read_tokens=row["cache_read_tokens"],
                cache_write_tokens=row["cache_write_tokens"],
            ),
            cost_usd=None if row["cost_usd"] is None else Decimal(row["cost_usd"]),
        )

    async def _update_status(
        self, db: aiosqlite.Connection, agent_id: str, change: StatusChange
    ) -> AgentStatus | None:
        prev = await self._scalar(db, "SELECT status FROM agents WHERE id = ?", (agent_id,))
        if prev is None:
            return None
        await db.execute(
            "UPDATE agents SET status = ?, status_source = ?, status_reason = ?, status_at = ? "
            "WHERE id = ?",
            (
                change.status.value,
                change.source.value,
                change.reason,
                change.at.isoformat(),
                agent_id,
            ),
        )
        return AgentStatus(prev)

    async def insert_exec(
        self,
        record: ExecRecord,
        audit: AuditDraft | None = None,
        *,
        status: StatusChange | None = None,
    ) -> AgentStatus | None:
        async def fn(db: aiosqlite.Connection) -> AgentStatus | None:
            await db.execute(
                "INSERT INTO execs (id, agent_id, input, status, exit_code, reason, "
                "started_at, finished_at, actor, model) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    record.id,
                    record.agent_id,
                    record.input,
                    record.status.value,
                    record.exit_code,
                    record.reason,
                    record.started_at.isoformat(),
                    record.finished_at.isoformat() if record.finished_at else None,
                    record.actor,
                    record.model,
                ),
            )
            prev = await self._update_status(db, record.agent_id, status) if status else None
            if audit:
                await self._append_audit(db, audit)
            return prev

        return await self._write(fn)

    async def finish_exec(
        self,
        exec_id: str,
        status: ExecStatus,
        exit_code: int | None,
        reason: str,
        finished_at: datetime,
        audit: AuditDraft | None = None,
        *,
        usage: Usage | None = None,
        cost_usd: Decimal | None = None,
        output: Sequence[OutputRow] = (),
        agent_status: tuple[str, StatusChange] | None = None,
    ) -> AgentStatus | None:
        u = usage or Usage()

        async def fn(db: aiosqlite.Connection) -> AgentStatus | None:
            if output:
                await self._insert_output(db, output)
            await db.execute(
                "UPDATE execs SET status = ?, exit_code = ?, reason = ?, finished_at = ?, "
                "input_tokens = ?, output_tokens = ?, cache_read_tokens = ?, "
                "cache_write_tokens = ?, cost_usd = ? WHERE id = ?",
                (
                    status.value,
                    exit_code,
                    reason,
                    finished_at.isoformat(),
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens,
                    None if cost_usd is None else str(cost_usd),
                    exec_id,
                ),
            )
            prev = await self._update_status(db, *agent_status) if agent_status else None
            if audit:
                await self._append_audit(db, audit)
            return prev

        return await self._write(fn)

    async def running_execs(self) -> list[ExecRecord]:
        rows = list(await self.db.execute_fetchall("SELECT * FROM execs WHERE status = 'running'"))
        return [self._exec(r) for r in rows]

    async def list_execs(self, agent_id: str, limit: int = 50) -> list[ExecRecord]:
        rows = list(
            await self.db.execute_fetchall(
                "SELECT * FROM execs WHERE agent_id = ? ORDER BY started_at DESC LIMIT ?",
                (agent_id, limit),
            )
        )
        return [self._exec(r) for r in rows]

    async def append_output(self, rows: Sequence[OutputRow]) -> None:
        if not rows:
            return

        await self._write(lambda db: self._insert_output(db, rows))

    @staticmethod
    async def _insert_output(db: aiosqlite.Connection, rows: Sequence[OutputRow]) -> None:
        await db.executemany(
            "INSERT INTO agent_output (agent_id, exec_id, stream, at, data) VALUES (?,?,?,?,?)",
            [(r.agent_id, r.exec_id, r.stream, r.at.isoformat(), r.data) for r in rows],
        )

    async def read_output(
        self, agent_id: str, *, after_seq: int = 0, limit: int = 10_000
    ) -> list[LogLine]:
        rows = list(
            await self.db.execute_fetchall(
                "SELECT * FROM agent_output WHERE agent_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (agent_id, after_seq, limit),
            )
        )
        return [
            LogLine(
                seq=r["seq"],
                agent_id=r["agent_id"],
                exec_id=r["exec_id"],
                stream=r["stream"],
                at=_dt(r["at"]),
                data=r["data"],
            )
            for r in rows
        ]

    # audit ---------------------------------------------------------------------

    async def _append_audit(self, db: aiosqlite.Connection, draft: AuditDraft) -> AuditEntry:
        """Append inside the caller's transaction (the write lock is held)."""
        if self._head is None:
            rows = list(
                await db.execute_fetchall("SELECT seq, entry_hash FROM audit_head WHERE id = 1")
            )
            self._head = (rows[0]["seq"], rows[0]["entry_hash"]) if rows else (0, GENESIS_HASH)
        seq = self._head[0] + 1
        prev = self._head[1]
        ts = utcnow()
        payload = json.loads(json.dumps(draft.payload, default=str))
        entry_hash = compute_entry_hash(
            seq=seq,
            ts=ts,
            actor=draft.actor,
            action=draft.action,
            subject=draft.subject,
            payload=payload,
            result=draft.result,
            prev_hash=prev,
        )
        await db.execute(
            "INSERT INTO audit_log (seq, ts, actor, action, subject, payload, result, "
            "prev_hash, entry_hash) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                seq,
                format_ts(ts),
                draft.actor,
                draft.action,
                draft.subject,
                json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                draft.result,
                prev,
                entry_hash,
            ),
        )
        # The audit_head_follow trigger moves the head in the same statement.
        entry = AuditEntry(
            seq=seq,
            ts=ts,
            actor=draft.actor,
            action=draft.action,
            subject=draft.subject,
            payload=payload,
            result=draft.result,
            prev_hash=prev,
            entry_hash=entry_hash,
        )
        self._pending_audit.append(entry)
        self._head = (seq, entry_hash)
        return entry

    async def append_audit(self, draft: AuditDraft) -> AuditEntry:
        return await self._write(lambda db: self._append_audit(db, draft))

    @staticmethod
    def _audit(row: sqlite3.Row) -> AuditEntry:
        return AuditEntry(
            seq=row["seq"],
            ts=_dt(row["ts"]),
            actor=row["actor"],
            action=row["action"],
            subject=row["subject"],
            payload=json.loads(row["payload"]),
            result=row["result"],
            prev_hash=row["prev_hash"],
            entry_hash=row["entry_hash"],
        )

    async def list_audit(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> list[AuditEntry]:
        sql = "SELECT * FROM audit_log WHERE seq > ?"
        params: list[Any] = [after_seq]
        if subject is not None:
            sql += " AND subject = ?"
            params.append(subject)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = list(await self.db.execute_fetchall(sql, params))
        return [self._audit(r) for r in rows]

    async def iter_audit(self, batch: int = 1000) -> AsyncIterator[AuditEntry]:
        # Ordered by rowid, not seq: a reordering of rows must show up as a bad seq.
        last_rowid = 0
        while True:
            rows = list(
                await self.db.execute_fetchall(
                    "SELECT rowid AS _rowid, * FROM audit_log "
                    "WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (last_rowid, batch),
                )
            )
            if not rows:
                return
            for r in rows:
                yield self._audit(r)
            last_rowid = rows[-1]["_rowid"]

    async def audit_head(self) -> AuditHead | None:
        rows = list(
            await self.db.execute_fetchall("SELECT seq, entry_hash FROM audit_head WHERE id = 1")
        )
        row = rows[0] if rows else None
        return AuditHead(seq=row["seq"], entry_hash=row["entry_hash"]) if row else None
