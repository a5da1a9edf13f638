"""One SQLite transaction as the op handlers see it: statements and the audit chain."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.audit import GENESIS_HASH, AuditDraft, format_ts, seal_json
from core.models import AuditEntry, utcnow


@dataclass
class ChainHead:
    """The last audit (seq, hash), cached: this store is the only writer and appends on
    its one thread. None means "read it from the database" (after a rollback)."""

    value: tuple[int, str] | None = None


@dataclass
class Tx:
    conn: sqlite3.Connection
    head: ChainHead
    entries: list[AuditEntry] = field(default_factory=list)

    def run(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def audit(self, draft: AuditDraft) -> AuditEntry:
        """Append to the hash chain inside this transaction."""
        if self.head.value is None:
            row = self.one("SELECT seq, entry_hash FROM audit_head WHERE id = 1")
            self.head.value = (row["seq"], row["entry_hash"]) if row else (0, GENESIS_HASH)
        seq, prev = self.head.value
        entry, payload_json = seal_json(draft, seq=seq + 1, prev_hash=prev, ts=utcnow())
        # The audit_head_follow trigger moves the head in the same statement.
        self.run(
            "INSERT INTO audit_log (seq, ts, actor, action, subject, payload, result, "
            "prev_hash, entry_hash) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                entry.seq,
                format_ts(entry.ts),
                entry.actor,
                entry.action,
                entry.subject,
                payload_json,
                entry.result,
                entry.prev_hash,
                entry.entry_hash,
            ),
        )
        self.head.value = (entry.seq, entry.entry_hash)
        self.entries.append(entry)
        return entry
