"""``godel backup`` and ``godel restore`` against the real daemon and real store files."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

from tests.conftest import Godel
from tests.integration.test_cli_agents import spawn


def audit_head(godel: Godel) -> tuple[int, str]:
    entries = json.loads(godel.run("audit", "list", "--json", check=True).stdout)
    return entries[-1]["seq"], entries[-1]["entry_hash"]


def test_backup_while_running_then_restore_over_a_lost_store(godel: Godel, tmp_path: Path) -> None:
    agent = spawn(godel)
    godel.run("agent", "exec", agent, "echo kept", check=True)
    godel.run("task", "submit", "echo queued", check=True)
    copy = tmp_path / "copy.db"

    r = godel.run("backup", str(copy), "--json", check=True)
    done = json.loads(r.stdout)
    assert done["path"] == str(copy)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert done["size"] == copy.stat().st_size
    assert done["agents"] == 1 and done["tasks"] == 1
    # The backup is audited; the copy ends just before that entry.
    seq, _ = audit_head(godel)
    last = json.loads(godel.run("audit", "list", "--json", check=True).stdout)[-1]
    assert last["action"] == "store.backup" and last["payload"]["path"] == str(copy)
    assert done["last_seq"] == seq - 1 and done["last_hash"] == last["prev_hash"]

    # Refused while the daemon runs; the store is untouched.
    r = godel.run("restore", str(copy), "--yes")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "stop it first" in r.stderr

    godel.run("daemon", "stop", check=True)
    db = godel.home / "godel.db"
    db.write_bytes(b"")  # the store is lost
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    r = godel.run("restore", str(copy), "--yes", check=True)
    assert f"last seq {done['last_seq']}, hash {done['last_hash']}" in r.stdout
    assert "unreadable" in r.stdout  # what it replaces: the emptied file
    aside = [p for p in godel.home.iterdir() if ".before-restore-" in p.name]
    assert sorted(p.suffix == ".anchor" for p in aside) == [False, True]  # with its anchor
    assert [p.stat().st_size for p in aside if p.suffix != ".anchor"] == [0]  # never deleted
    anchor = json.loads((godel.home / "godel.db.anchor").read_text())
    assert (anchor["seq"], anchor["entry_hash"]) == (done["last_seq"], done["last_hash"])
    assert stat.S_IMODE(db.stat().st_mode) == 0o600

    godel.run("daemon", "start", check=True)
    r = godel.run("audit", "verify", check=True)
    assert r.stdout.startswith("audit chain intact")
    # The chain is the backup's up to its last entry (the restart may append to it).
    entries = json.loads(godel.run("audit", "list", "--json", check=True).stdout)
    kept = [e for e in entries if e["seq"] <= done["last_seq"]]
    assert len(kept) == done["audit_entries"]
    assert kept[-1]["seq"] == done["last_seq"] and kept[-1]["entry_hash"] == done["last_hash"]
    assert "store.backup" not in [e["action"] for e in entries]
    assert godel.run("agent", "logs", agent, check=True).stdout.startswith("kept\n")


def test_backup_refuses_to_overwrite_unless_forced(godel: Godel, tmp_path: Path) -> None:
    spawn(godel)
    copy = tmp_path / "copy.db"
    copy.write_text("mine")
    r = godel.run("backup", str(copy))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "--force" in r.stderr
    assert copy.read_text() == "mine"
    r = godel.run("backup", str(copy), "--force", check=True)
    assert str(copy) in r.stdout and "audit entries" in r.stdout


def test_offline_backup_and_bad_restores(godel: Godel, tmp_path: Path) -> None:
    spawn(godel)
    godel.run("daemon", "stop", check=True)
    seq_before = _head_seq(godel.home / "godel.db")
    copy = tmp_path / "offline.db"
    r = godel.run("backup", str(copy), check=True)
    assert "offline" in r.stdout and f"last seq {seq_before}," in r.stdout
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert _head_seq(godel.home / "godel.db") == seq_before  # nothing written offline

    # One line for each bad input; the store is never touched.
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    newer = tmp_path / "newer.db"
    newer.write_bytes(copy.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 9999")
    conn.close()
    cases = {
        tmp_path / "missing.db": "no such file",
        foreign: "not a Godel store",
        junk: "not a SQLite database or is corrupt",
        newer: "newer than this Godel supports",
    }
    for path, words in cases.items():
        r = godel.run("restore", str(path), "--yes")
        assert r.returncode == 1, (path, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert not [p for p in godel.home.iterdir() if ".before-restore-" in p.name]

    # Without --yes it asks; answering no changes nothing.
    r = godel.run("restore", str(copy), input="n\n")
    assert r.returncode == 1 and "Restore it?" in r.stdout
    assert not [p for p in godel.home.iterdir() if ".before-restore-" in p.name]


def _head_seq(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT seq FROM audit_head").fetchone()[0])
    finally:
        conn.close()
