"""The SQLite store (the default backend): one file, WAL, one database thread."""

from core.store.sqlite.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, SqliteStore

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]
