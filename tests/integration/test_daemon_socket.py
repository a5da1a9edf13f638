"""The daemon's socket under faults: a deleted or replaced socket comes back; a daemon
whose socket does not answer is still found (by its lock and pid) by ``daemon status``
and ended by ``daemon stop``."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from core.paths import GodelPaths
from tests.conftest import Godel, gone, wait_for
from tests.integration.test_cli_agents import agents, spawn


def is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def test_a_deleted_socket_is_recreated(godel: Godel) -> None:
    agent_id = spawn(godel)
    sock = GodelPaths(home=godel.home).socket
    sock.unlink()
    assert wait_for(lambda: is_socket(sock))
    assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
    assert agent_id in agents(godel)
    assert "re-created it" in (godel.home / "daemon.log").read_text()


def test_a_socket_replaced_by_a_file_is_recreated(godel: Godel) -> None:
    spawn(godel)
    sock = GodelPaths(home=godel.home).socket
    sock.unlink()
    sock.write_text("not a socket")
    assert wait_for(lambda: is_socket(sock))
    assert godel.run("daemon", "status").returncode == 0


def test_status_and_stop_find_a_daemon_whose_socket_does_not_answer(godel: Godel) -> None:
    spawn(godel)
    pid = godel.daemon_pid()
    assert pid is not None
    sock = GodelPaths(home=godel.home).socket
    os.kill(pid, signal.SIGSTOP)  # frozen: it cannot put its socket back yet
    try:
        sock.unlink()
        sock.write_text("not a socket")
        r = godel.run("daemon", "status")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith(f"godel: a daemon (pid {pid}) holds {godel.home} but its socket")
    assert "`godel daemon stop` ends it" in r.stderr
    r = godel.run("daemon", "stop", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"Daemon stopped (pid {pid})"
    assert gone(pid)


def test_stop_ends_a_frozen_daemon(godel: Godel) -> None:
    spawn(godel)
    pid = godel.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # its socket accepts connections, but nothing answers
    try:
        stopper = godel.popen("daemon", "stop")
        assert stopper.stderr is not None
        # Said only once it has sent SIGTERM and waits: the frozen daemon never answered.
        assert f"waiting for the daemon (pid {pid})" in stopper.stderr.readline()
    finally:
        os.kill(pid, signal.SIGCONT)
    out, _err = stopper.communicate(timeout=60)
    assert stopper.returncode == 0
    assert out.strip() == f"Daemon stopped (pid {pid})"
    assert gone(pid)
