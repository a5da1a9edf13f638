"""Nothing stranded by a restart, with the real daemon, CLI and shell agents.

A daemon SIGKILLed mid-batch and started again finishes every task exactly once, and
the tasks it was running go back to the queue at once: their lease is 600 s and the
wait gives up long before that, so none can have waited its lease out. A swarm comes
back to its desired size after a kill and after ``daemon stop``.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Godel, gone, wait_for
from tests.engine.conftest import Gate

SWARM_SIZE = 3


def jrun(godel: Godel, *args: str) -> Any:
    r = godel.run(*args, "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def tasks_by_id(godel: Godel, swarm: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in jrun(godel, "task", "list", "--swarm", swarm, "--limit", "1000")}


def live_members(godel: Godel, swarm: str) -> list[dict[str, Any]]:
    agents = jrun(godel, "agent", "list", "--swarm", swarm)
    return [a for a in agents if a["status"] in ("idle", "busy")]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    yield g
    g.close()


def long_lease(godel: Godel) -> None:
    """The project's config: a lease no test could wait out."""
    (godel.cwd / ".godel").mkdir()
    (godel.cwd / ".godel" / "config.toml").write_text("[queue]\nlease_s = 600\n")


def test_a_daemon_killed_mid_batch_finishes_every_task_exactly_once(
    godel: Godel, gate: Gate, tmp_path: Path
) -> None:
    long_lease(godel)
    out = tmp_path / "done.txt"
    size = str(SWARM_SIZE)
    jrun(godel, "swarm", "create", "batch", "--count", size, "--min", size, "--max", size)
    # Three quick tasks first (claimed first: same priority, FIFO), then six that block
    # on the gate: at the kill, three have succeeded, three run and three are ready.
    quick = [f"echo q{i} >> {out}" for i in range(3)]
    gated = [f"{gate.cmd} && echo g{i} >> {out}" for i in range(6)]
    submitted = jrun(godel, "task", "submit", "--swarm", "batch", *quick, *gated)
    ids = [t["id"] for t in submitted]
    quick_ids, gated_ids = ids[:3], ids[3:]
    shown = jrun(godel, "config", "show", "--daemon")
    assert shown["config"]["queue"]["lease_s"] == 600  # the daemon runs with the long lease

    def mid_batch() -> bool:
        ts = tasks_by_id(godel, "batch")
        running = [t for t in gated_ids if ts[t]["status"] == "running"]
        return all(ts[t]["status"] == "succeeded" for t in quick_ids) and len(running) == 3

    # Polled through the CLI: the state that shows the batch mid-way.
    assert wait_for(mid_batch, timeout=30, interval=0.1)
    before = tasks_by_id(godel, "batch")
    running = [t for t in gated_ids if before[t]["status"] == "running"]
    old_members = live_members(godel, "batch")
    old_pids = [int(a["pid"]) for a in old_members]

    daemon_pid = godel.daemon_pid()
    assert daemon_pid is not None
    os.kill(daemon_pid, signal.SIGKILL)
    assert wait_for(lambda: gone(daemon_pid))
    # The old agents outlive the daemon, still blocked on the gate; recovery ends them
    # before it requeues their tasks, so none of them can append after the restart.
    assert any(psutil.pid_exists(p) and not gone(p) for p in old_pids)

    godel.run("daemon", "start", check=True)
    assert wait_for(lambda: all(gone(p) for p in old_pids), timeout=20)
    gate.open(6)
    r = godel.run("task", "wait", *ids, "--timeout", "120", "--json", timeout=150)
    assert r.returncode == 0, r.stderr
    final = json.loads(r.stdout)
    assert [t["id"] for t in final] == ids
    assert {t["status"] for t in final} == {"succeeded"}

    # Each task's work happened once, and each succeeded once on the audit log.
    labels = out.read_text().split()
    assert sorted(labels) == sorted([f"q{i}" for i in range(3)] + [f"g{i}" for i in range(6)])
    audit = jrun(godel, "audit", "list")
    finished = [e["subject"] for e in audit if e["action"] == "task.finish"]
    assert sorted(finished) == sorted(ids)
    assert all(e["result"] == "succeeded" for e in audit if e["action"] == "task.finish")

    # The tasks running at the kill were requeued by recovery, naming the lost agent;
    # their cut-short attempt was not counted, and no lease expired.
    requeues = {e["subject"]: e for e in audit if e["action"] == "task.requeue"}
    assert set(requeues) == set(running)
    old_ids = {a["id"] for a in old_members}
    for e in requeues.values():
        assert e["actor"] == "daemon" and e["payload"]["agent_id"] in old_ids
        assert "was lost when the daemon restarted" in e["payload"]["reason"]
    assert not [e for e in audit if e["action"] == "task.retry"]  # no failed attempt
    by_id = {t["id"]: t for t in final}
    assert all(by_id[t]["attempts"] == 1 for t in ids)

    # The swarm came back to its size with new agents.
    members = live_members(godel, "batch")
    assert len(members) == SWARM_SIZE and not {a["id"] for a in members} & old_ids
    restores = [e for e in audit if e["action"] == "swarm.restore"]
    assert [e["subject"] for e in restores] == ["batch"]


def test_a_swarm_returns_to_its_desired_size_after_daemon_stop_and_start(
    godel: Godel,
) -> None:
    jrun(godel, "swarm", "create", "steady", "--count", "2", "--min", "2", "--max", "2")
    old = {a["id"] for a in live_members(godel, "steady")}
    assert len(old) == 2
    godel.run("daemon", "stop", check=True)
    godel.run("daemon", "start", check=True)

    def refilled() -> bool:
        members = live_members(godel, "steady")
        return len(members) == 2 and not {a["id"] for a in members} & old

    # Polled through the CLI: the restored agents start in the background.
    assert wait_for(refilled, timeout=30, interval=0.1)
    assert jrun(godel, "swarm", "status", "steady")["desired"] == 2
    (restore,) = [
        e
        for e in jrun(godel, "audit", "list", "--subject", "steady")
        if e["action"] == "swarm.restore"
    ]
    assert restore["result"] == "ok" and restore["payload"]["desired"] == 2
    # The work still reaches them.
    r = godel.run("task", "submit", "--swarm", "steady", "--wait", "echo back", timeout=60)
    assert r.returncode == 0, r.stderr
