"""The SQLite store on real files: round trips, migrations, and refusing bad files."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import StoreError, SwarmError
from core.events import EventBus
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    ExecRecord,
    ExecStatus,
    StatusChange,
    StatusSource,
    Swarm,
    utcnow,
)
from core.store import AuditDraft, Journal, SqliteStore
from core.store.base import OutputRow
from core.store.ops import (
    AppendOutput,
    FinishExec,
    InsertAgent,
    InsertSwarm,
    SetAgentStatus,
    StartExec,
    UpdateSwarm,
)
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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await open_store(tmp_path / "g.db")
    yield s
    await s.close()


@pytest.fixture
def journal(store: SqliteStore) -> Journal:
    return Journal(store, EventBus())


def status(
    s: AgentStatus, source: StatusSource = StatusSource.USER, reason: str = ""
) -> StatusChange:
    return StatusChange(status=s, source=source, reason=reason)


async def test_fresh_store_is_migrated_wal_and_marked(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "g.db")
    await s.close()
    con = sqlite3.connect(tmp_path / "g.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


async def test_agent_round_trip_and_status_change(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "g.db")
    journal = Journal(s, EventBus())
    await journal.commit(InsertAgent(make_agent(name="builder")))
    prev = await journal.commit(
        SetAgentStatus(
            "shell-abc123",
            status(AgentStatus.IDLE, StatusSource.SPAWN, "ready"),
            pid=4242,
            pid_started_at=1.5,
        ),
        audit=AuditDraft(actor="t", action="agent.spawn", subject="shell-abc123"),
    )
    assert prev == AgentStatus.STARTING
    await s.close()

    s = await open_store(tmp_path / "g.db")  # survives a reopen
    journal = Journal(s, EventBus())
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
    assert await journal.commit(SetAgentStatus("nope", status(AgentStatus.IDLE))) is None
    await s.close()


async def test_names_are_unique_among_live_agents_only(
    store: SqliteStore, journal: Journal
) -> None:
    await journal.commit(InsertAgent(make_agent("shell-000001", name="x")))
    with pytest.raises(StoreError, match="already running"):
        await journal.commit(InsertAgent(make_agent("shell-000002", name="x")))
    await journal.commit(SetAgentStatus("shell-000001", status(AgentStatus.STOPPED)))
    await journal.commit(InsertAgent(make_agent("shell-000003", name="x")))
    got = await store.get_agent("x")
    assert got is not None and got.id == "shell-000003"


async def test_execs_and_output(store: SqliteStore, journal: Journal) -> None:
    await journal.commit(InsertAgent(make_agent()))
    now = utcnow()
    record = ExecRecord(
        id="exec-1",
        agent_id="shell-abc123",
        input="echo hi",
        status=ExecStatus.RUNNING,
        started_at=now,
    )
    prev = await journal.commit(
        StartExec(record, status(AgentStatus.BUSY, StatusSource.RUNTIME_EVENT))
    )
    assert prev is AgentStatus.STARTING
    assert [r.id for r in await store.running_execs()] == ["exec-1"]
    await journal.commit(
        AppendOutput(
            (
                OutputRow("shell-abc123", "exec-1", "stdout", now, "hi\n"),
                OutputRow("shell-abc123", "exec-1", "stderr", now, "warn\n"),
            )
        )
    )
    await journal.commit(
        FinishExec(
            "exec-1",
            ExecStatus.SUCCEEDED,
            0,
            "",
            utcnow(),
            output=(OutputRow("shell-abc123", "exec-1", "system", now, "done\n"),),
            agent_status=("shell-abc123", status(AgentStatus.IDLE, StatusSource.RUNTIME_EVENT)),
        )
    )
    assert await store.running_execs() == []
    [done] = await store.list_execs("shell-abc123")
    assert (done.status, done.exit_code) == (ExecStatus.SUCCEEDED, 0)
    agent = await store.get_agent("shell-abc123")
    assert agent is not None and agent.status is AgentStatus.IDLE
    lines = await store.read_output("shell-abc123")
    assert [(ln.stream, ln.data) for ln in lines] == [
        ("stdout", "hi\n"),
        ("stderr", "warn\n"),
        ("system", "done\n"),
    ]
    assert await store.read_output("shell-abc123", after_seq=lines[0].seq) == lines[1:]


def make_swarm(name: str, runtime: str = "shell") -> Swarm:
    return Swarm(
        name=name,
        runtime=runtime,
        model=None,
        skills=["python"],
        strategy="balanced",
        min_agents=0,
        max_agents=4,
        target_per_agent=1,
        desired=2,
        capacity=100,
        status="active",
        created_at=utcnow(),
    )


async def test_swarms_round_trip_update_and_replace(store: SqliteStore, journal: Journal) -> None:
    await journal.commit(InsertSwarm(make_swarm("w")))
    with pytest.raises(SwarmError, match="already exists"):
        await journal.commit(InsertSwarm(make_swarm("w", runtime="other")))
    updated = await journal.commit(UpdateSwarm("w", {"desired": 3, "strategy": "fifo"}))
    assert (updated.desired, updated.strategy) == (3, "fifo")
    assert await store.get_swarm("w") == updated
    with pytest.raises(SwarmError, match="not found"):
        await journal.commit(UpdateSwarm("nope", {"desired": 1}))
    with pytest.raises(ValueError, match="cannot update swarm fields"):
        UpdateSwarm("w", {"runtime": "x"})
    await journal.commit(UpdateSwarm("w", {"status": "destroyed"}))
    assert await store.list_swarms() == []
    assert [x.name for x in await store.list_swarms(include_destroyed=True)] == ["w"]
    # A destroyed swarm's name can be taken again.
    await journal.commit(InsertSwarm(make_swarm("w", runtime="other")))
    again = await store.get_swarm("w")
    assert again is not None and (again.runtime, again.status) == ("other", "active")


async def test_a_failed_transaction_leaves_no_audit_entry(
    store: SqliteStore, journal: Journal
) -> None:
    await journal.commit(InsertAgent(make_agent()))
    with pytest.raises(sqlite3.IntegrityError):
        await journal.commit(
            InsertAgent(make_agent()), audit=AuditDraft(actor="t", action="dup", subject="x")
        )
    assert await store.list_audit() == []
    assert await store.audit_head() is None


async def test_a_failed_op_does_not_change_its_records(
    store: SqliteStore, journal: Journal
) -> None:
    """An exec whose agent does not exist fails on the foreign key: nothing of it stays."""
    await journal.commit(InsertAgent(make_agent()))
    record = ExecRecord(
        id="exec-1",
        agent_id="shell-ghost0",
        input="x",
        status=ExecStatus.RUNNING,
        started_at=utcnow(),
    )
    with pytest.raises(sqlite3.IntegrityError):
        await journal.commit(
            StartExec(record), audit=AuditDraft(actor="t", action="agent.exec", subject="x")
        )
    assert await store.running_execs() == []
    assert await store.list_audit() == []


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
    con.close()


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
    con.close()


async def test_a_refused_store_cannot_be_committed_to(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    db.write_bytes(b"junk" * 1000)
    s = SqliteStore(db)
    with pytest.raises(StoreError):
        await s.open()
    with pytest.raises(StoreError, match="not open"):
        await Journal(s, EventBus()).audit(AuditDraft(actor="t", action="a", subject="s"))


async def test_audit_rows_cannot_be_updated_or_deleted_through_sql(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    s = await open_store(db)
    await Journal(s, EventBus()).audit(AuditDraft(actor="t", action="a", subject="s"))
    await s.close()
    con = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM audit_log")
    con.close()
