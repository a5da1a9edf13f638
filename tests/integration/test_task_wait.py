"""``godel task wait`` and ``task submit --wait`` through the real CLI and daemon: exit
codes (0, 1, 124), the final tasks in ``--json``, one-line errors, progress on a
terminal, and no daemon started by a wait."""

from __future__ import annotations

import json
import os
import pty
import subprocess

from tests.conftest import Godel


def submit(godel: Godel, *args: str) -> list[str]:
    r = godel.run("task", "submit", "--json", *args, check=True)
    return [t["id"] for t in json.loads(r.stdout)]


def test_wait_exits_with_the_tasks_outcome(godel: Godel) -> None:
    godel.run("swarm", "create", "w", "--count", "2", check=True)
    ok, bad = submit(godel, "--swarm", "w", "--max-attempts", "1", "echo fine", "exit 3")

    r = godel.run("task", "wait", ok)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Task {ok} succeeded (")

    r = godel.run("task", "wait", ok, bad)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("2 tasks final: 1 succeeded, 1 failed (")
    assert lines[1] == f"  {bad} failed: failed after 1 attempt: exit code 3"
    assert r.stderr == ""  # no terminal: no progress line

    r = godel.run("task", "wait", bad, ok, "--json")
    assert r.returncode == 1
    final = json.loads(r.stdout)
    assert [(t["id"], t["status"]) for t in final] == [(bad, "failed"), (ok, "succeeded")]

    r = godel.run("task", "submit", "--swarm", "w", "--wait", "echo a", "echo b")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert [x.split()[0:2] for x in out[:2]] == [["Queued", "task:"]] * 2
    assert out[2].startswith("All 2 tasks succeeded (")

    r = godel.run("task", "submit", "--swarm", "w", "--wait", "--json", "exit 1")
    assert r.returncode == 1
    (task,) = json.loads(r.stdout)
    assert task["status"] == "failed" and task["attempts"] == 3
    assert task["error"] == "failed after 3 attempts: exit code 1"


def test_wait_errors_are_one_line(godel: Godel) -> None:
    godel.run("swarm", "create", "idle", "--count", "0", "--max", "1", check=True)
    (stuck,) = submit(godel, "--swarm", "idle", "true")  # no agent: it stays ready

    r = godel.run("task", "wait", stuck, "task-nope")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (
        "godel: task 'task-nope' not found; nothing was waited for (see `godel task list`)\n"
    )

    r = godel.run("task", "wait", stuck, "--timeout", "0.3")
    assert r.returncode == 124 and r.stdout == ""
    assert r.stderr == (
        "godel: timed out after 0.3s: 1 of 1 tasks not final yet (1 ready); they stay "
        "queued, wait again with `godel task wait`\n"
    )
    r = godel.run("task", "wait", stuck, "--timeout", "0.3", "--json")
    assert r.returncode == 124
    assert [t["status"] for t in json.loads(r.stdout)] == ["ready"]

    r = godel.run("task", "wait", stuck, "--timeout", "0")
    assert r.returncode == 2 and "--timeout" in r.stderr  # click's usage error


def test_progress_is_one_updating_line_on_a_terminal(godel: Godel) -> None:
    godel.run("swarm", "create", "idle", "--count", "0", "--max", "1", check=True)
    (stuck,) = submit(godel, "--swarm", "idle", "true")
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            godel.cmd("task", "wait", stuck, "--timeout", "1.5"),
            stdout=subprocess.PIPE,
            stderr=slave,
            cwd=godel.cwd,
            env=godel.env,
            timeout=60,
        )
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 124
    text = seen.decode()
    assert "\rwaiting: 0/1 final (1 ready), " in text
    assert "\n" not in text.split("godel: timed out")[0]  # redrawn in place: one line
    assert "\r\x1b[K" in text  # cleared before the final message


def test_a_wait_never_starts_a_daemon(godel: Godel) -> None:
    r = godel.run("task", "wait", "task-abc")
    assert r.returncode == 3
    assert len(r.stderr.splitlines()) == 1 and "daemon" in r.stderr
    assert godel.daemon_pid() is None


def test_a_wait_on_a_task_no_agent_could_take_says_why(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    (stranded,) = submit(godel, "true")  # the default pool has no agent at all
    r = godel.run("task", "wait", stranded, "--timeout", "0.3")
    assert r.returncode == 124
    first, last = r.stderr.splitlines()
    assert first.startswith(f"godel: {stranded} cannot run now: no agent in the default pool")
    assert last.startswith("godel: timed out after 0.3s")
