"""SIGKILL the daemon mid-work; the audit trail via the CLI, and tampering found by verify."""

from __future__ import annotations

import json
import os
import signal
import sqlite3

import psutil

from core.api import blocking
from core.paths import GodelPaths
from tests.conftest import Godel, gone, wait_for
from tests.integration.test_cli_agents import agents, spawn


def test_sigkill_daemon_while_commands_run_loses_nothing(godel: Godel) -> None:
    a1 = spawn(godel)
    a2 = spawn(godel)
    godel.run("agent", "exec", a1, "echo before-crash", check=True)
    runner = godel.popen("agent", "exec", a2, "sleep 60")
    assert wait_for(lambda: agents(godel)[a2]["status"] == "busy")
    shell_pids = [int(agents(godel)[a]["pid"]) for a in (a1, a2)]  # type: ignore[arg-type]
    sleeps = psutil.Process(shell_pids[1]).children(recursive=True)
    audit_before = json.loads(godel.run("audit", "list", "--json", check=True).stdout)

    daemon_pid = godel.daemon_pid()
    assert daemon_pid is not None
    os.kill(daemon_pid, signal.SIGKILL)
    assert wait_for(lambda: gone(daemon_pid))
    runner.wait(timeout=20)
    assert runner.returncode == 1  # the CLI reports the lost daemon, it does not hang

    # A read does not start a daemon (it says none runs); a new one, started on
    # purpose, reconciles what the old one left.
    assert godel.run("agent", "list").returncode == 3
    godel.run("daemon", "start", check=True)
    after = agents(godel)
    assert godel.daemon_pid() not in (None, daemon_pid)
    assert set(after) == {a1, a2}
    for a in (a1, a2):
        assert after[a]["status"] == "lost"
        assert after[a]["status_source"] == "daemon"
        assert after[a]["status_reason"]
    # No surviving process: the shells and the sleep under one of them are gone.
    assert wait_for(lambda: all(gone(p) for p in shell_pids))
    assert wait_for(lambda: all(gone(c.pid) for c in sleeps))

    last = blocking.call(GodelPaths.resolve(godel.home), "exec.list", {"agent": a2})[0]
    assert last["status"] == "interrupted"
    assert "daemon stopped unexpectedly" in last["reason"]
    assert "interrupted" in godel.run("agent", "get", a2, check=True).stdout
    r = godel.run("agent", "logs", a1, check=True)
    assert r.stdout == "before-crash\n"

    audit_after = json.loads(godel.run("audit", "list", "--json", check=True).stdout)
    assert audit_after[: len(audit_before)] == audit_before  # nothing lost or changed
    actions = [e["action"] for e in audit_after[len(audit_before) :]]
    assert actions.count("agent.recover") == 2 and "exec.recover" in actions
    r = godel.run("audit", "verify", check=True)
    assert r.stdout.startswith("audit chain intact")


def test_audit_trail_records_who_did_what(godel: Godel) -> None:
    agent_id = spawn(godel)
    godel.run("agent", "exec", agent_id, "true", check=True)
    godel.run("agent", "kill", agent_id, check=True)
    entries = json.loads(godel.run("audit", "list", "--json", "--subject", agent_id).stdout)
    assert [e["action"] for e in entries] == [
        "agent.spawn",
        "agent.exec",
        "agent.exec.finish",
        "agent.kill",
    ]
    uid = os.getuid()
    for e in entries:
        assert f"(uid={uid}) pid=" in e["actor"]
    assert entries[1]["payload"]["input"] == "true"
    assert entries[2]["result"] == "succeeded"
    text = godel.run("audit", "list", check=True).stdout.splitlines()
    assert text[0].split() == ["SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "RESULT"]
    assert any("daemon.start" in line for line in text)


def test_verify_names_the_first_bad_entry_and_export_round_trips(godel: Godel) -> None:
    agent_id = spawn(godel)
    for i in range(3):
        godel.run("agent", "exec", agent_id, f"echo {i}", check=True)
    out = godel.cwd / "audit.jsonl"
    r = godel.run("audit", "export", "-o", str(out), check=True)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) >= 8 and [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert f"Exported {len(lines)} entries" in r.stderr

    # Edit an entry in the database file while the daemon runs.
    con = sqlite3.connect(godel.home / "godel.db")
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 4")
    con.commit()
    con.close()
    r = godel.run("audit", "verify")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "audit chain broken at entry 4: its contents do not match its hash (the entry was edited)"
    )
    report = json.loads(godel.run("audit", "verify", "--json").stdout)
    assert report["first_bad_seq"] == 4 and report["ok"] is False


def test_config_change_is_audited_and_events_are_recorded(godel: Godel) -> None:
    agent_id = spawn(godel)
    cfg = godel.cwd / ".godel"
    cfg.mkdir()
    (cfg / "config.toml").write_text("[defaults]\nexec_timeout = 30\n")
    r = godel.run("config", "reload", check=True)
    assert r.stdout.startswith("Config reloaded")
    shown = json.loads(godel.run("config", "show", "--daemon", "--json", check=True).stdout)
    assert shown["config"]["defaults"]["exec_timeout"] == 30
    changes = [
        e
        for e in json.loads(godel.run("audit", "list", "--json").stdout)
        if e["action"] == "config.change"
    ]
    assert len(changes) == 1
    assert changes[0]["payload"]["sources"] == [str(cfg / "config.toml")]
    godel.run("config", "reload", check=True)  # unchanged: not audited again
    changes = [
        e
        for e in json.loads(godel.run("audit", "list", "--json").stdout)
        if e["action"] == "config.change"
    ]
    assert len(changes) == 1

    godel.run("daemon", "stop", check=True)  # the recorder drains on stop
    from core.events import read_recording

    events = list(read_recording(godel.home / "events.jsonl"))
    types = [e.type for e in events]
    assert types[0] == "daemon.started" and "daemon.stopping" in types
    spawned = [e for e in events if e.type == "agent.spawned"]
    assert [e.agent_id for e in spawned] == [agent_id]  # type: ignore[union-attr]
    assert "config.changed" in types and "audit.appended" in types


def test_store_that_lost_its_wal_is_refused_not_started_empty(godel: Godel) -> None:
    agent_id = spawn(godel)
    godel.run("agent", "exec", agent_id, "echo kept", check=True)
    db = godel.home / "godel.db"
    anchor = godel.home / "godel.db.anchor"
    entries = json.loads(godel.run("audit", "list", "--json", check=True).stdout)

    def anchored() -> bool:  # the anchor follows inline commits within ~100 ms
        try:
            return bool(json.loads(anchor.read_text())["seq"] >= entries[-1]["seq"])
        except (OSError, ValueError):
            return False

    assert wait_for(anchored)
    daemon_pid = godel.daemon_pid()
    assert daemon_pid is not None
    os.kill(daemon_pid, signal.SIGKILL)
    assert wait_for(lambda: gone(daemon_pid))
    os.unlink(f"{db}-wal")  # every record since the last checkpoint
    seq = json.loads(anchor.read_text())["seq"]

    r = godel.run("daemon", "start")
    assert r.returncode != 0
    assert godel.daemon_pid() is None
    assert f"is behind its anchor (audit seq 0, anchor seq {seq})" in r.stderr
    assert r.stderr.count("\n") == 1 and "godel restore FILE" in r.stderr

    r = godel.run("audit", "verify", "--offline")
    assert r.returncode == 1
    assert r.stderr.startswith("audit chain broken at entry 1: the store was rolled back")
    assert f"its anchor records entry {seq}" in r.stderr


ESCAPE = (
    "( setsid sleep 300 >/dev/null 2>&1 & echo $! > esc1 ); "
    "setsid sh -c 'sleep 301 >/dev/null 2>&1 & echo $! > esc2' & wait; "
    "cat esc1 esc2"
)


def test_what_escaped_a_crashed_daemons_agents_ends_at_the_next_start(godel: Godel) -> None:
    a1 = spawn(godel)
    pids = [int(p) for p in godel.run("agent", "exec", a1, ESCAPE, check=True).stdout.split()]
    daemon_pid = godel.daemon_pid()
    assert daemon_pid is not None and len(pids) == 2
    try:
        os.kill(daemon_pid, signal.SIGKILL)
        assert wait_for(lambda: gone(daemon_pid))
        assert not any(gone(p) for p in pids)  # out of the agent's tree and group: alive
        godel.run("daemon", "start", check=True)
        assert wait_for(lambda: all(gone(p) for p in pids))
        r = godel.run("daemon", "status", check=True)
        assert "Containment: " in r.stdout
    finally:
        for p in pids:
            if not gone(p):
                os.kill(p, signal.SIGKILL)
