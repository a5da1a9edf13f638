"""Backups of the SQLite store (SQLite's online backup API) and the checks a restore runs.

A backup is a consistent snapshot: ``Connection.backup`` with every page in one step
copies the database as one read transaction sees it, while writers go on (WAL). The copy
is written to a private temporary file beside the target, synced, and renamed into place,
so a failed or interrupted backup never leaves a half-written file under the target name.
The copy is a single file (rollback journal mode); the daemon turns it back to WAL when it
opens it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from core.audit import VerifyReport, verify_chain
from core.errors import StoreError
from core.models import AuditEntry
from core.store.sqlite import agents
from core.store.sqlite.anchor import anchor_path, read_anchor
from core.store.sqlite.schema import APPLICATION_ID, BUSY_TIMEOUT_MS, SCHEMA_VERSION


def open_read_only(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only (never creating it); one-line StoreError if it cannot be."""
    if not path.is_file():
        raise StoreError(f"no such file: {path}", path=str(path))
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open {path}: {e}", path=str(path)) from e
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """What a store holds: schema version, audit entries (count, last seq and hash),
    tasks and agents. All read in one transaction, so the counts agree."""
    conn.execute("BEGIN")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        entries = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        head = agents.audit_head(conn)
        tasks = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
        n_agents = conn.execute("SELECT count(*) FROM agents").fetchone()[0]
    finally:
        conn.execute("COMMIT")
    return {
        "schema_version": version,
        "audit_entries": entries,
        "last_seq": head.seq if head else 0,
        "last_hash": head.entry_hash if head else "",
        "tasks": tasks,
        "agents": n_agents,
    }


def write_backup(src: sqlite3.Connection, dest: Path, *, force: bool = False) -> dict[str, Any]:
    """Copy the database of ``src`` to ``dest`` (0600); returns the copy's summary with its
    path and size. Refuses an existing ``dest`` unless ``force``."""
    dest = Path(dest)
    if dest.is_dir():
        raise StoreError(f"{dest} is a directory; name a file to back up to", path=str(dest))
    if dest.exists() and not force:
        raise StoreError(f"{dest} already exists; pass --force to overwrite it", path=str(dest))
    if not dest.parent.is_dir():
        raise StoreError(f"no such directory: {dest.parent}", path=str(dest))
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover file
        os.close(fd)
        out = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            out.execute("PRAGMA synchronous = FULL")
            src.backup(out)  # every page in one step: one consistent snapshot
            out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            out.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        with contextlib.suppress(OSError):  # make the rename durable where we can
            dfd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except (OSError, sqlite3.Error) as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise StoreError(f"cannot back up to {dest}: {why}", path=str(dest)) from e
    copy = open_read_only(dest)
    try:
        result = summary(copy)
    finally:
        copy.close()
    return {"path": str(dest), "size": dest.stat().st_size, **result}


def backup_file(db: Path, dest: Path, *, force: bool = False) -> dict[str, Any]:
    """Back up the store file ``db`` with no daemon running (opened read-only)."""
    if not db.is_file():
        raise StoreError(f"no store at {db}: nothing to back up", path=str(db))
    conn = open_read_only(db)
    try:
        check_store(conn, db)
        return write_backup(conn, dest, force=force)
    finally:
        conn.close()


def check_store(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not a Godel store, is corrupt, or has a newer schema."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StoreError(
            f"{path} is not a SQLite database or is corrupt ({e})", path=str(path)
        ) from e
    if app_id != APPLICATION_ID or version < 1:
        raise StoreError(f"{path} is not a Godel store", path=str(path))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this Godel supports "
            f"({SCHEMA_VERSION}); upgrade Godel to restore it",
            path=str(path),
        )
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        check = str(e)
    if check != "ok":
        raise StoreError(f"{path} is corrupt: {check}", path=str(path))


def _entries(conn: sqlite3.Connection) -> Iterator[AuditEntry]:
    last = 0
    while True:
        batch, last = agents.audit_batch(conn, last, 1000)
        if not batch:
            return
        yield from batch


def inspect_backup(path: Path) -> dict[str, Any]:
    """What restoring ``path`` would bring back; one-line StoreError unless it is a Godel
    store whose audit chain verifies."""
    conn = open_read_only(path)
    try:
        check_store(conn, path)
        try:
            found = summary(conn)
            report = verify_chain(_entries(conn), agents.audit_head(conn))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path} is corrupt: {e}", path=str(path)) from e
    finally:
        conn.close()
    if not report.ok:
        raise StoreError(
            f"{path}: audit chain broken at entry {report.first_bad_seq} "
            f"({report.problem}); not restoring it",
            path=str(path),
        )
    return {"path": str(path), "size": path.stat().st_size, **found}


def verify_file(db: Path) -> VerifyReport:
    """``godel audit verify --offline``: verify the store file ``db`` (read-only) against
    its chain, head and anchor, with no daemon; works on a store the daemon refuses."""
    if not db.is_file():
        raise StoreError(f"no store at {db}: nothing to verify", path=str(db))
    anchor = read_anchor(anchor_path(db))  # first: it never runs ahead of the database
    conn = open_read_only(db)
    try:
        app_id, version, tables = conn.execute(
            "SELECT (SELECT application_id FROM pragma_application_id), "
            "(SELECT user_version FROM pragma_user_version), "
            "(SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        if app_id == 0 and version == 0 and tables == 0:  # emptied, or its WAL lost
            return verify_chain([], None, anchor)
        check_store(conn, db)
        conn.execute("BEGIN")  # one snapshot: the chain and head agree
        try:
            return verify_chain(_entries(conn), agents.audit_head(conn), anchor)
        finally:
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{db} is not a SQLite database or is corrupt ({e})") from e
    finally:
        conn.close()
