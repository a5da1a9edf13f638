"""Durable records: the ``Store`` protocol and its implementations (SQLite by default)."""

from core.store.base import AuditDraft, Store
from core.store.sqlite import SqliteStore

__all__ = ["AuditDraft", "SqliteStore", "Store"]
