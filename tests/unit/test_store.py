"""The SQLite store on real files: round trips, migrations, and refusing bad files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.errors import StoreError
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    ExecRecord,
    ExecStatus,
    StatusChange,
    StatusSource,
    utcnow,
)
from core.store import AuditDraft, SqliteStore
from core.store.base import OutputRow
from core.store.sqlite import APPLICATION_ID, SCHEMA_VERSION


def make_agent(agent_id: str = "shell-abc123", name: str | None = None) -> Agent:
    now = utcnow()
    return Agent(
        id=agent_id,
        runtime="shell",
        name=name,
        skills=["python"],
        workspace=Path("/tmp/ws"),
        status=AgentStatus.STARTING,
        status_source=StatusSource.SPAWN,
        status_at=now,
        created_at=now,
        spec=AgentSpec(runtime="shell", name=name, skills=["python"]),
    )


async def open_store(path: Path) -> SqliteStore:
    s = SqliteStore(path)
    await s.open()
    return s


async def test_fresh_store_is_migrated_wal_and_marked(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "g.db")
    await s.close()
    con = sqlite3.connect(tmp_path / "g.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_agent_round_trip_and_status_change(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "g.db")
    await s.insert_agent(make_agent(name="builder"))
    prev = await s.set_agent_status(
        "shell-abc123",
        StatusChange(status=AgentStatus.IDLE, source=StatusSource.SPAWN, reason="ready"),
        pid=4242,
        pid_started_at=1.5,
        audit=AuditDraft(actor="t", action="agent.spawn", subject="shell-abc123"),
    )
    assert prev == AgentStatus.STARTING
    await s.close()

    s = await open_store(tmp_path / "g.db")  # survives a reopen
    a = await s.get_agent("shell-abc123")
    assert a is not None
    assert (a.status, a.status_source, a.status_reason, a.pid) == (
        AgentStatus.IDLE,
        StatusSource.SPAWN,
        "ready",
        4242,
    )
    assert (await s.get_agent("builder")) == a  # by name while it lives
    assert [e.action for e in await s.list_audit()] == ["agent.spawn"]
    assert (
        await s.set_agent_status(
            "nope", StatusChange(status=AgentStatus.IDLE, source=StatusSource.USER)
        )
        is None
    )
    await s.close()


async def test_names_are_unique_among_live_agents_only(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "g.db")
    await s.insert_agent(make_agent("shell-000001", name="x"))
    with pytest.raises(StoreError, match="already running"):
        await s.insert_agent(make_agent("shell-000002", name="x"))
    await s.set_agent_status(
        "shell-000001", StatusChange(status=AgentStatus.STOPPED, source=StatusSource.USER)
    )
    await s.insert_agent(make_agent("shell-000003", name="x"))
    got = await s.get_agent("x")
    assert got is not None and got.id == "shell-000003"
    await s.close()


async def test_execs_and_output(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "g.db")
    await s.insert_agent(make_agent())
    now = utcnow()
    await s.insert_exec(
        ExecRecord(
            id="exec-1",
            agent_id="shell-abc123",
            input="echo hi",
            status=ExecStatus.RUNNING,
            started_at=now,
        )
    )
    assert [r.id for r in await s.running_execs()] == ["exec-1"]
    await s.append_output(
        [
            OutputRow("shell-abc123", "exec-1", "stdout", now, "hi\n"),
            OutputRow("shell-abc123", "exec-1", "stderr", now, "warn\n"),
        ]
    )
    await s.finish_exec("exec-1", ExecStatus.SUCCEEDED, 0, "", utcnow())
    assert await s.running_execs() == []
    lines = await s.read_output("shell-abc123")
    assert [(ln.stream, ln.data) for ln in lines] == [("stdout", "hi\n"), ("stderr", "warn\n")]
    assert await s.read_output("shell-abc123", after_seq=lines[0].seq) == lines[1:]
    await s.close()


async def test_a_failed_transaction_leaves_no_audit_entry(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "g.db")
    await s.insert_agent(make_agent())
    with pytest.raises(sqlite3.IntegrityError):
        await s.insert_agent(make_agent(), audit=AuditDraft(actor="t", action="dup", subject="x"))
    assert await s.list_audit() == []
    assert await s.audit_head() is None
    await s.close()


async def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    junk = b"this is not a database" * 100
    db.write_bytes(junk)
    with pytest.raises(StoreError, match="not a SQLite database or is corrupt"):
        await open_store(db)
    assert db.read_bytes() == junk


async def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    s = await open_store(db)
    await s.close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 5}, newer"):
        await open_store(db)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE precious (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="did not create"):
        await open_store(db)
    con = sqlite3.connect(db)
    assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("precious",)]


async def test_audit_rows_cannot_be_updated_or_deleted_through_sql(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    s = await open_store(db)
    await s.append_audit(AuditDraft(actor="t", action="a", subject="s"))
    await s.close()
    con = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM audit_log")
