"""The audit chain on a real SQLite file, tampered with directly as an attacker would."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.audit import GENESIS_HASH, canonical_json, verify_chain
from core.events import EventBus
from core.store import AuditDraft, Journal, SqliteStore

N = 8


async def build(db: Path, n: int = N) -> None:
    s = SqliteStore(db)
    await s.open()
    journal = Journal(s, EventBus())
    for i in range(1, n + 1):
        await journal.audit(
            AuditDraft(
                actor="alice(uid=1000)",
                action="agent.exec",
                subject=f"shell-{i:06d}",
                payload={"i": i, "input": "echo héllo"},
            )
        )
    await s.close()


async def verify(db: Path) -> tuple[bool, int | None, str]:
    s = SqliteStore(db)
    await s.open()
    entries = [e async for e in s.iter_audit()]
    report = verify_chain(entries, await s.audit_head())
    await s.close()
    return report.ok, report.first_bad_seq, report.problem


def tamper(db: Path, *sql: str) -> None:
    """Edit the file directly: drop the append-only triggers first, as an attacker would.
    The anchor goes too: these tests are about what the chain alone catches (a cut chain
    behind its anchor is refused at open: tests/unit/test_store_anchor.py)."""
    Path(f"{db}.anchor").unlink(missing_ok=True)
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("DROP TRIGGER audit_no_delete")
    for stmt in sql:
        con.execute(stmt)
    con.commit()
    con.close()


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


async def test_intact_chain_verifies(tmp_path: Path) -> None:
    await build(tmp_path / "g.db")
    assert await verify(tmp_path / "g.db") == (True, None, "")


async def test_the_chain_continues_across_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db, 3)
    await build(db, 4)  # a new store object reads the chain head from the file
    assert await verify(db) == (True, None, "")
    con = sqlite3.connect(db)
    assert [r[0] for r in con.execute("SELECT seq FROM audit_log ORDER BY rowid")] == [*range(1, 8)]
    con.close()


async def test_first_entry_links_to_genesis(tmp_path: Path) -> None:
    await build(tmp_path / "g.db", 1)
    con = sqlite3.connect(tmp_path / "g.db")
    assert con.execute("SELECT prev_hash FROM audit_log").fetchone()[0] == GENESIS_HASH
    con.close()


async def test_edit_is_named(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db)
    tamper(db, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 5")
    ok, seq, problem = await verify(db)
    assert (ok, seq) == (False, 5)
    assert "edited" in problem


async def test_payload_edit_is_named(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db)
    tamper(db, """UPDATE audit_log SET payload = '{"i":3,"input":"rm -rf /"}' WHERE seq = 3""")
    assert (await verify(db))[:2] == (False, 3)


async def test_deletion_is_named(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db)
    tamper(db, "DELETE FROM audit_log WHERE seq = 4")
    ok, seq, problem = await verify(db)
    assert (ok, seq) == (False, 4)
    assert "entry 4 is missing" in problem


async def test_deletion_with_renumbering_is_named(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db)
    tamper(
        db,
        "DELETE FROM audit_log WHERE seq = 4",
        "UPDATE audit_log SET seq = seq - 1 WHERE seq > 4",
        "UPDATE audit_head SET seq = seq - 1",
    )
    ok, seq, _ = await verify(db)
    assert (ok, seq) == (False, 4)


async def test_insertion_is_named(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db)
    # Make room after entry 2 and insert a forged entry that links to entry 2 correctly.
    con = sqlite3.connect(db)
    h2 = con.execute("SELECT entry_hash FROM audit_log WHERE seq = 2").fetchone()[0]
    con.close()
    tamper(
        db,
        "UPDATE audit_log SET seq = seq + 100 WHERE seq > 2",
        "UPDATE audit_log SET seq = seq - 99 WHERE seq > 100",
        "INSERT INTO audit_log (seq, ts, actor, action, subject, payload, result, prev_hash, "
        f"entry_hash) VALUES (3, '2026-01-01T00:00:00.000000+00:00', 'mallory', 'x', 'y', "
        f"'{{}}', 'ok', '{h2}', 'forged')",
    )
    ok, seq, _ = await verify(db)
    assert (ok, seq) == (False, 3)


async def test_reorder_is_named(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db)
    tamper(
        db,
        "UPDATE audit_log SET seq = 1000 WHERE seq = 6",
        "UPDATE audit_log SET seq = 6 WHERE seq = 7",
        "UPDATE audit_log SET seq = 7 WHERE seq = 1000",
    )
    ok, seq, _ = await verify(db)
    assert (ok, seq) == (False, 6)


async def test_cut_tail_is_named(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db)
    tamper(db, f"DELETE FROM audit_log WHERE seq > {N - 2}")
    ok, seq, problem = await verify(db)
    assert (ok, seq) == (False, N - 1)
    assert "tail was deleted" in problem


async def test_missing_head_is_named(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db)
    tamper(db, "DELETE FROM audit_head")
    ok, _, problem = await verify(db)
    assert not ok and "head record is missing" in problem


def test_seal_hashes_exactly_as_verify_does() -> None:
    """``seal`` splices the payload's JSON into the hashed body for speed; it must give
    the same hash ``compute_entry_hash`` (which ``verify_chain`` uses) computes."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from core.audit import compute_entry_hash, seal

    ts = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
    payloads: list[dict[str, object]] = [
        {},
        {"b": 1, "a": [1, 2.5, None, True], "é": "ünïcode \\n \u2028", "n": {"z": {}, "y": []}},
        {"cost": Decimal("0.0006"), "t": (1, 2), "big": 10**30, "f": 1e-9},
    ]
    for i, payload in enumerate(payloads, start=1):
        draft = AuditDraft(actor='a"b', action="x.y", subject="s\u00e9", payload=payload)
        entry = seal(draft, seq=i, prev_hash="0" * 64, ts=ts)
        assert entry.entry_hash == compute_entry_hash(
            seq=i,
            ts=ts,
            actor=draft.actor,
            action=draft.action,
            subject=draft.subject,
            payload=dict(entry.payload),
            result=draft.result,
            prev_hash="0" * 64,
        )
