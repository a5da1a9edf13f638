"""Agents, execs, output and the audit log in SQLite: op handlers and reads.

Everything here is synchronous and runs on the store's database thread; a handler runs
inside the transaction ``SqliteStore.commit`` opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from core.audit import AuditHead
from core.errors import StoreError
from core.models import (
    Agent,
    AgentStatus,
    AuditEntry,
    ExecRecord,
    LogLine,
    StatusChange,
)
from core.store import ops
from core.store.sqlite import rows
from core.store.sqlite.tx import Tx

ENDED = "('stopped','lost','failed')"

# --- handlers ----------------------------------------------------------------------------


def no_change(tx: Tx, op: ops.NoChange) -> None:
    return None


def insert_agent(tx: Tx, op: ops.InsertAgent) -> None:
    try:
        tx.run(
            "INSERT INTO agents (id, runtime, name, model, skills, workspace, pid, "
            "pid_started_at, status, status_source, status_reason, status_at, "
            "created_at, spec, swarm) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows.agent_values(op.agent),
        )
    except sqlite3.IntegrityError as e:
        if "agents_name" in str(e) or "agents.name" in str(e):
            raise StoreError(
                f"an agent named {op.agent.name!r} is already running", name=op.agent.name
            ) from e
        raise


def _set_status(
    tx: Tx,
    agent_id: str,
    change: StatusChange,
    pid: int | None = None,
    pid_started_at: float | None = None,
) -> AgentStatus | None:
    prev = tx.one("SELECT status FROM agents WHERE id = ?", (agent_id,))
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
    tx.run(f"UPDATE agents SET {sets} WHERE id = ?", (*params, agent_id))
    return AgentStatus(prev["status"])


def set_agent_status(tx: Tx, op: ops.SetAgentStatus) -> AgentStatus | None:
    return _set_status(tx, op.agent_id, op.change, op.pid, op.pid_started_at)


def start_exec(tx: Tx, op: ops.StartExec) -> AgentStatus | None:
    r = op.record
    tx.run(
        "INSERT INTO execs (id, agent_id, input, status, exit_code, reason, "
        "started_at, finished_at, actor, model) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            r.id,
            r.agent_id,
            r.input,
            r.status.value,
            r.exit_code,
            r.reason,
            r.started_at.isoformat(),
            r.finished_at.isoformat() if r.finished_at else None,
            r.actor,
            r.model,
        ),
    )
    return _set_status(tx, r.agent_id, op.status) if op.status else None


def finish_exec(tx: Tx, op: ops.FinishExec) -> AgentStatus | None:
    if op.output:
        _insert_output(tx, op.output)
    u = op.usage
    tx.run(
        "UPDATE execs SET status = ?, exit_code = ?, reason = ?, finished_at = ?, "
        "input_tokens = ?, output_tokens = ?, cache_read_tokens = ?, "
        "cache_write_tokens = ?, cost_usd = ? WHERE id = ?",
        (
            op.status.value,
            op.exit_code,
            op.reason,
            op.finished_at.isoformat(),
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            None if op.cost_usd is None else str(op.cost_usd),
            op.exec_id,
        ),
    )
    return _set_status(tx, *op.agent_status) if op.agent_status else None


def append_output(tx: Tx, op: ops.AppendOutput) -> None:
    _insert_output(tx, op.rows)


def _insert_output(tx: Tx, out: Sequence[ops.OutputRow]) -> None:
    tx.many(
        "INSERT INTO agent_output (agent_id, exec_id, stream, at, data) VALUES (?,?,?,?,?)",
        [(r.agent_id, r.exec_id, r.stream, r.at.isoformat(), r.data) for r in out],
    )


# --- reads -------------------------------------------------------------------------------


def get_agent(conn: sqlite3.Connection, agent_id: str) -> Agent | None:
    row = conn.execute(
        f"SELECT * FROM agents WHERE id = ? OR (name = ? AND status NOT IN {ENDED}) "
        "ORDER BY id = ? DESC LIMIT 1",
        (agent_id, agent_id, agent_id),
    ).fetchone()
    return rows.agent(row) if row else None


def list_agents(conn: sqlite3.Connection, include_ended: bool) -> list[Agent]:
    sql = "SELECT * FROM agents"
    if not include_ended:
        sql += f" WHERE status NOT IN {ENDED}"
    return [rows.agent(r) for r in conn.execute(sql + " ORDER BY created_at, id")]


def running_execs(conn: sqlite3.Connection) -> list[ExecRecord]:
    cur = conn.execute("SELECT * FROM execs WHERE status = 'running'")
    return [rows.exec_record(r) for r in cur]


def list_execs(conn: sqlite3.Connection, agent_id: str, limit: int) -> list[ExecRecord]:
    cur = conn.execute(
        "SELECT * FROM execs WHERE agent_id = ? ORDER BY started_at DESC LIMIT ?",
        (agent_id, limit),
    )
    return [rows.exec_record(r) for r in cur]


def get_exec(conn: sqlite3.Connection, exec_id: str) -> ExecRecord | None:
    row = conn.execute("SELECT * FROM execs WHERE id = ?", (exec_id,)).fetchone()
    return rows.exec_record(row) if row else None


def read_exec_output(
    conn: sqlite3.Connection, exec_id: str, limit: int, max_bytes: int
) -> tuple[list[LogLine], bool]:
    cur = conn.execute(
        "SELECT * FROM agent_output WHERE exec_id = ? ORDER BY seq LIMIT ?", (exec_id, limit + 1)
    )
    out: list[LogLine] = []
    size = 0
    for r in cur:
        size += len(r["data"])
        if len(out) == limit or (out and size > max_bytes):
            return out, True
        out.append(rows.log_line(r))
    return out, False


def read_output(
    conn: sqlite3.Connection, agent_id: str, after_seq: int, limit: int, max_bytes: int | None
) -> list[LogLine]:
    cur = conn.execute(
        "SELECT * FROM agent_output WHERE agent_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (agent_id, after_seq, limit),
    )
    out: list[LogLine] = []
    size = 0
    for r in cur:  # rows are stepped one by one: what is past the page is never read
        out.append(rows.log_line(r))
        size += len(r["data"])
        if max_bytes is not None and size >= max_bytes:
            break
    return out


def list_audit(
    conn: sqlite3.Connection, after_seq: int, limit: int | None, subject: str | None
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
    return [rows.audit_entry(r) for r in conn.execute(sql, params)]


def audit_batch(
    conn: sqlite3.Connection, after_rowid: int, batch: int
) -> tuple[list[AuditEntry], int]:
    """Entries in rowid order (not seq: a reordering of rows must show up as a bad seq)."""
    found = conn.execute(
        "SELECT rowid AS _rowid, * FROM audit_log WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after_rowid, batch),
    ).fetchall()
    last = found[-1]["_rowid"] if found else after_rowid
    return [rows.audit_entry(r) for r in found], last


def audit_head(conn: sqlite3.Connection) -> AuditHead | None:
    row = conn.execute("SELECT seq, entry_hash FROM audit_head WHERE id = 1").fetchone()
    return AuditHead(seq=row["seq"], entry_hash=row["entry_hash"]) if row else None
