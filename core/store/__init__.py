"""Durable records: the ``Store`` protocol, its ops, the journal, and the SQLite backend."""

from core.store.base import AuditDraft, Committed, OutputRow, Store
from core.store.journal import Journal
from core.store.sqlite import SqliteStore

__all__ = ["AuditDraft", "Committed", "Journal", "OutputRow", "SqliteStore", "Store"]
