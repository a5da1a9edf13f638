"""The store's anchor (``godel.db.anchor``) on real SQLite files: a store that went back in
time (its WAL lost, emptied, an older or other copy put back) is refused at open with one
line, changing nothing; a normal reopen is not."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from core.audit import AuditHead, verify_chain
from core.errors import StoreError
from core.events import EventBus
from core.store import AuditDraft, Journal, SqliteStore
from core.store.sqlite.backup import verify_file


async def append(s: SqliteStore, n: int, tag: str = "a") -> None:
    journal = Journal(s, EventBus())
    for i in range(n):
        await journal.audit(AuditDraft(actor="alice", action="x", subject=f"{tag}-{i}"))


async def build(db: Path, n: int, tag: str = "a") -> None:
    s = SqliteStore(db)
    await s.open()
    await append(s, n, tag)
    await s.close()


def anchor(db: Path) -> tuple[int, str]:
    data = json.loads(Path(f"{db}.anchor").read_text())
    return data["seq"], data["entry_hash"]


def anchor_mode(db: Path) -> int | None:
    """The anchor file's mode; None if there is none."""
    path = Path(f"{db}.anchor")
    return stat.S_IMODE(path.stat().st_mode) if path.exists() else None


def move_anchor(db: Path, to: Path | None = None) -> None:
    """Move the anchor aside (to ``to``), or delete it."""
    path = Path(f"{db}.anchor")
    if to is None:
        path.unlink()
    else:
        path.rename(to)


def spoil_anchor(db: Path) -> None:
    Path(f"{db}.anchor").write_text("{nope")


def drop_wal(db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def content(db: Path) -> bytes:
    return db.read_bytes()


async def refused(db: Path, audit_seq: int, anchor_seq: int) -> None:
    before = content(db)
    s = SqliteStore(db)
    with pytest.raises(StoreError) as e:
        await s.open()
    line = e.value.message
    assert "\n" not in line
    assert line.startswith(
        f"the store {db} is behind its anchor (audit seq {audit_seq}, anchor seq {anchor_seq})"
    )
    assert "godel restore FILE" in line and f"move {db}.anchor aside" in line
    assert content(db) == before  # nothing was changed


async def test_anchor_follows_commits_and_is_exact_at_close(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    s = SqliteStore(db, inline=False)
    await s.open()
    assert anchor_mode(db) is None  # an empty store has nothing to anchor
    await append(s, 3)
    head = await s.audit_head()
    assert head is not None
    # A batch's commit is anchored on the thread before the commit is reported.
    assert anchor(db) == (head.seq, head.entry_hash) == (3, head.entry_hash)
    assert anchor_mode(db) == 0o600
    await s.close()

    s = SqliteStore(db)  # inline commits: anchored later, and exactly at close
    await s.open()
    await append(s, 2)
    head = await s.audit_head()
    await s.close()
    assert head is not None and anchor(db) == (5, head.entry_hash)


async def test_inline_commits_are_anchored_by_the_thread(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    s = SqliteStore(db)
    await s.open()
    await append(s, 1)
    assert s._anchor_timer is not None  # one write scheduled for the commits meanwhile
    await append(s, 1)
    s._anchor_timer.cancel()
    s._anchor_now()  # what the timer does: hand the write to the thread
    await s._call(lambda: None)  # the thread has run it
    head = await s.audit_head()
    assert head is not None and anchor(db) == (2, head.entry_hash)
    await s.close()


async def test_normal_reopen_is_fine_and_a_missing_anchor_is_written(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db, 4)
    for _ in range(3):
        await build(db, 1)
    assert anchor(db)[0] == 7
    move_anchor(db)  # a store from before anchors
    s = SqliteStore(db)
    await s.open()
    assert anchor(db)[0] == 7
    await s.close()


async def test_lost_wal_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db, 5)  # closed: checkpointed into the file
    s = SqliteStore(db, inline=False)
    await s.open()
    await append(s, 5)  # only in the WAL
    # A kill: the files as they are now, without the WAL.
    lost = tmp_path / "lost"
    lost.mkdir()
    shutil.copy(db, lost / "g.db")
    shutil.copy(f"{db}.anchor", lost / "g.db.anchor")
    await s.close()
    await refused(lost / "g.db", 5, 10)


async def test_wal_lost_before_any_checkpoint_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    s = SqliteStore(db, inline=False)
    await s.open()
    await append(s, 3)  # the schema itself is still only in the WAL
    lost = tmp_path / "lost"
    lost.mkdir()
    shutil.copy(db, lost / "g.db")
    shutil.copy(f"{db}.anchor", lost / "g.db.anchor")
    await s.close()
    await refused(lost / "g.db", 0, 3)


async def test_emptied_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db, 4)
    db.write_bytes(b"")
    drop_wal(db)
    await refused(db, 0, 4)
    report = verify_file(db)
    assert not report.ok and report.first_bad_seq == 1
    assert "rolled back" in report.problem and "anchor records entry 4" in report.problem


async def test_older_copy_put_back_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db, 3)
    old = tmp_path / "old.db"
    shutil.copy(db, old)
    await build(db, 4)
    shutil.copy(old, db)
    drop_wal(db)
    await refused(db, 3, 7)
    report = verify_file(db)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "the log ends at entry 3 but its anchor records entry 7" in report.problem

    # Accepting the loss: the anchor moved aside, the store opens and is anchored anew.
    move_anchor(db, tmp_path / "old.anchor")
    await build(db, 1)
    assert anchor(db)[0] == 4


async def test_another_copy_as_long_is_refused(tmp_path: Path) -> None:
    db, other = tmp_path / "g.db", tmp_path / "other.db"
    await build(db, 5, tag="mine")
    await build(other, 6, tag="theirs")
    shutil.copy(other, db)
    drop_wal(db)
    await refused(db, 6, 5)
    report = verify_file(db)
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "not the one its anchor records" in report.problem


async def test_a_bad_anchor_file_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    await build(db, 2)
    spoil_anchor(db)
    with pytest.raises(StoreError) as e:
        await SqliteStore(db).open()
    assert "\n" not in e.value.message and "anchor" in e.value.message


def test_verify_chain_with_an_anchor_ahead_names_a_rollback() -> None:
    report = verify_chain([], None, AuditHead(seq=3, entry_hash="f" * 64))
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert "rolled back or its tail cut" in report.problem
    assert verify_chain([], None, None).ok
