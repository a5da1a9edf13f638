"""Stopping many agents: ``godel daemon stop`` waits for a slow stop it started (and
says so); ``godel bench stop`` measures stopping."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from tests.conftest import Godel, daemon_runs, gone, wait_for
from tests.integration.test_cli_agents import spawn

WAITING = "to stop its agents"


def start_slow_agent(godel: Godel) -> tuple[int, subprocess.Popen[str]]:
    """A daemon whose agent runs a command that ignores SIGTERM: stopping it takes the
    kill's grace period (3 s), longer than the CLI waits before it says it is waiting.
    Returns the daemon's pid and the ``agent exec`` client (it ends with the daemon)."""
    agent_id = spawn(godel)
    client = godel.popen("agent", "exec", agent_id, "trap '' TERM; sleep 60")
    assert wait_for(lambda: daemon_runs(godel, "sleep 60"))
    pid = godel.daemon_pid()
    assert pid is not None
    return pid, client


def test_stop_waits_for_a_slow_daemon_and_says_so(godel: Godel) -> None:
    pid, client = start_slow_agent(godel)
    r = godel.run("daemon", "stop", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"Daemon stopped (pid {pid})"
    assert r.stderr.strip() == f"waiting for the daemon (pid {pid}) {WAITING}…"
    assert gone(pid)
    assert not daemon_runs(godel, "sleep 60")
    client.communicate(timeout=30)


def test_ctrl_c_stops_the_wait_not_the_stop(godel: Godel) -> None:
    pid, client = start_slow_agent(godel)
    stopper = godel.popen("daemon", "stop")
    assert stopper.stderr is not None
    assert WAITING in stopper.stderr.readline()  # it is waiting now
    # Freeze the daemon mid-stop, so the Ctrl-C surely comes while the CLI still waits.
    os.kill(pid, signal.SIGSTOP)
    try:
        stopper.send_signal(signal.SIGINT)
        out, err = stopper.communicate(timeout=30)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert stopper.returncode == 130
    assert out == ""
    assert f"the daemon (pid {pid}) keeps stopping in the background" in err
    assert wait_for(lambda: gone(pid), timeout=30)  # and it did stop
    client.communicate(timeout=30)


def test_bench_stop_produces_figures(godel: Godel) -> None:
    r = godel.run("bench", "stop", "--count", "5", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["count"] == 5 and b["failures"] == 0 and b["left_running"] == 0
    assert b["tree_mib_per_agent"] > 0 and b["destroy_s"] > 0 and b["stop_s"] > 0
    assert b["threads_with_agents"] >= b["threads_before"] > 0
