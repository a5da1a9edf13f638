"""The SQLite file's identity and schema: refusals of foreign, corrupt or newer files,
and the numbered migrations in ``core/store/migrations/``."""

from __future__ import annotations

import sqlite3
from importlib import resources
from typing import Any

from core.errors import StoreError
from core.store.sqlite.anchor import check_anchor

# "GODL": marks the file as ours, so a foreign SQLite file is refused, not migrated.
APPLICATION_ID = 0x474F444C
BUSY_TIMEOUT_MS = 5000


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


def _scalar(conn: sqlite3.Connection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


def check_and_migrate(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a file that is not ours, corrupt or too new (changing nothing); else bring
    its schema up to date, each migration in one transaction."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        app_id = _scalar(conn, "PRAGMA application_id")
        version = _scalar(conn, "PRAGMA user_version")
        tables = _scalar(conn, "SELECT count(*) FROM sqlite_master")
    except sqlite3.DatabaseError as e:
        raise StoreError(
            f"the store {path} is not a SQLite database or is corrupt ({e}); "
            "nothing was changed. Move it aside to start afresh, or restore a backup.",
            path=path,
            problem=str(e),
        ) from e
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables and version == 0):
        raise StoreError(
            f"{path} is a SQLite database that Godel did not create; refusing to use it",
            path=path,
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {path} has schema version {version}, newer than this "
            f"Godel supports ({SCHEMA_VERSION}); upgrade Godel. Nothing was changed.",
            path=path,
            schema_version=version,
            supported=SCHEMA_VERSION,
        )
    if version > 0:
        check = _scalar(conn, "PRAGMA quick_check")
        if check != "ok":
            raise StoreError(
                f"the store {path} failed its integrity check: {check}",
                path=path,
                problem=str(check),
            )
    if path != ":memory:":
        # Before anything is written (WAL switch, migrations): a store that went back in
        # time is refused as found.
        check_anchor(conn, path, version)
    mode = _scalar(conn, "PRAGMA journal_mode = WAL")
    if path != ":memory:" and str(mode).lower() != "wal":
        raise StoreError(f"cannot switch {path} to WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
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
            conn.executescript(script)
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"migration {name} failed on {path}: {e}") from e
