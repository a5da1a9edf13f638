"""The anchor: the audit head (seq and entry hash) kept in a small file beside the database,
``godel.db.anchor``, so a store that went back in time is refused rather than used.

Every record lives only in the WAL until a checkpoint copies it into the database file:
a lost ``-wal``, an emptied ``godel.db`` or an older copy put back would otherwise open
as a smaller, self-consistent store (its chain verifies) and Godel would go on from
there. The store writes the anchor on its database thread after each batch, at most
every ~100 ms after inline commits, at every checkpoint and (exactly, synced) at close;
at open the store's audit head must reach the anchor's seq with the same hash there.

Written as tmp + rename (0600): a reader sees the old anchor or the new, never half.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

from core.audit import AuditHead
from core.errors import StoreError


def anchor_path(db: str | Path) -> Path:
    return Path(f"{db}.anchor")


def read_anchor(path: Path) -> AuditHead | None:
    """The anchor at ``path``, None if there is none; one-line StoreError if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(f"cannot read the store's anchor {path}: {e.strerror}") from e
    try:
        data = json.loads(text)
        return AuditHead(seq=int(data["seq"]), entry_hash=str(data["entry_hash"]))
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(
            f"the store's anchor {path} is not valid ({e}); nothing was changed. "
            f"Move it aside to start without that check"
        ) from e


def write_anchor(path: Path, head: AuditHead, *, sync: bool = False) -> None:
    """Replace the anchor atomically; ``sync`` also makes it durable (at close, restore)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = json.dumps({"seq": head.seq, "entry_hash": head.entry_hash}) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover file
        os.write(fd, data.encode("utf-8"))
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def db_head(conn: sqlite3.Connection, version: int) -> AuditHead | None:
    """The store's committed audit head (None for an empty or unmigrated store)."""
    if version < 1:
        return None
    row = conn.execute("SELECT seq, entry_hash FROM audit_head WHERE id = 1").fetchone()
    return AuditHead(seq=row[0], entry_hash=row[1]) if row else None


def check_anchor(conn: sqlite3.Connection, db: str, version: int) -> None:
    """Refuse (one line, nothing changed) a store whose audit head is behind its anchor,
    or that holds another entry at the anchor's seq."""
    path = anchor_path(db)
    anchor = read_anchor(path)
    if anchor is None or anchor.seq < 1:
        return
    head = db_head(conn, version)
    seq = head.seq if head else 0
    behind = seq < anchor.seq
    if not behind:
        row = conn.execute(
            "SELECT entry_hash FROM audit_log WHERE seq = ?", (anchor.seq,)
        ).fetchone()
        behind = row is None or row[0] != anchor.entry_hash
    if behind:
        raise StoreError(
            f"the store {db} is behind its anchor (audit seq {seq}, anchor seq "
            f"{anchor.seq}): its WAL was lost or an older copy was put back; nothing was "
            f"changed. Restore a backup (`godel restore FILE`) or, to accept the loss, "
            f"move {path} aside",
            path=db,
            audit_seq=seq,
            anchor_seq=anchor.seq,
        )
