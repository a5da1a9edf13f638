"""The SQLite store (the default backend): one file, WAL, transactions as single units."""

from core.store.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from core.store.sqlite.store import SqliteStore

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]
