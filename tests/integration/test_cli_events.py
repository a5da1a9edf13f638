"""``godel events``: the live stream over the socket, resuming, durable seqs, recordings."""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
from typing import Any

from tests.conftest import Godel


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Follower:
    """``godel events --follow --json`` in its own process, read on a thread."""

    def __init__(self, godel: Godel, *args: str) -> None:
        self.proc = godel.popen("events", "--follow", "--json", *args)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def until(self, predicate: Any, what: str, timeout: float = 20) -> list[dict[str, Any]]:
        """Every event up to and including the first that matches (the timeout is only a
        safety net: the test waits for the event itself)."""
        seen = []
        while True:
            try:
                event = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {what} in the stream; saw {seen}") from None
            seen.append(event)
            if predicate(event):
                return seen

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)


def test_follow_shows_what_another_shell_causes(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    follower = Follower(godel, "--last", "1")
    # The last kept event arrives first: the subscription is live from then on.
    follower.until(lambda e: True, "the last kept event")
    agent = json.loads(
        godel.run("agent", "spawn", "--runtime", "shell", "--json", check=True).stdout
    )
    godel.run("agent", "exec", agent["id"], "echo from-the-other-shell", check=True)
    task = json.loads(godel.run("task", "submit", "echo as-a-task", "--json", check=True).stdout)
    task_id = (task[0] if isinstance(task, list) else task["tasks"][0])["id"]
    seen = follower.until(
        lambda e: e["type"] == "task.finished" and e["task_id"] == task_id, "task.finished"
    )
    types = [e["type"] for e in seen]
    for expected in (
        "agent.created",
        "agent.spawned",
        "exec.started",
        "agent.output",
        "exec.finished",
        "task.changed",
        "task.routed",
    ):
        assert expected in types, (expected, types)
    outputs = [e["data"] for e in seen if e["type"] == "agent.output"]
    assert "from-the-other-shell\n" in outputs and "as-a-task\n" in outputs
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert follower.stop() == 130


def test_filters_and_text_lines(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    agent = json.loads(
        godel.run("agent", "spawn", "--runtime", "shell", "--json", check=True).stdout
    )
    godel.run("agent", "exec", agent["id"], "exit 7")
    r = godel.run("events", "--type", "exec.*", "--agent", agent["id"], check=True)
    lines = r.stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["exec.started", "exec.finished"]
    assert "exit_code=7" in lines[1] and "status=failed" in lines[1]
    ahead = godel.run("events", "--since", "999999999")
    assert ahead.returncode == 1 and ahead.stderr.count("\n") == 1
    assert "seq 999999999 is ahead of this daemon's last event" in ahead.stderr
    bad = godel.run("events", "--type", "exec.finsihed")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "unknown event type(s) exec.finsihed" in bad.stderr


def test_seqs_never_restart_and_a_client_resumes_across_restarts(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    godel.run("agent", "spawn", "--runtime", "shell", check=True)
    first = json_lines(godel.run("events", "--json", "--last", "1000", check=True).stdout)
    cursor = first[-1]["seq"]
    godel.run("daemon", "stop", check=True)
    godel.run("daemon", "start", check=True)
    after_stop = json_lines(
        godel.run("events", "--json", "--since", str(cursor), check=True).stdout
    )
    # What happened while the client was away, the stop included, nothing twice.
    types = [e["type"] for e in after_stop]
    assert "daemon.stopping" in types and "daemon.started" in types
    assert all(e["seq"] > cursor for e in after_stop)
    assert [e["seq"] for e in after_stop] == list(range(cursor + 1, cursor + 1 + len(after_stop)))

    # SIGKILL: the next daemon's seqs are still higher than anything handed out before.
    high = after_stop[-1]["seq"]
    pid = godel.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    godel.run("daemon", "start", check=True)
    again = json_lines(godel.run("events", "--json", "--since", str(high), check=True).stdout)
    started = [e for e in again if e["type"] == "daemon.started"]
    assert started and started[-1]["seq"] > high


def test_reading_a_recording_with_a_torn_tail(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    godel.run("agent", "spawn", "--runtime", "shell", check=True)
    godel.run("daemon", "stop", check=True)
    recording = godel.home / "events.jsonl"
    with recording.open("a") as f:
        f.write('{"type": "from.a.newer.godel", "seq": 999998}\n{"type": "agent.out')
    r = godel.run("events", "--file", str(recording), "--json", check=True)
    events = json_lines(r.stdout)
    assert events and events[0]["type"] == "daemon.started"
    assert r.stderr.strip().endswith(
        "skipped 1 event(s) of unknown type (from.a.newer.godel); "
        "a torn last line (the writer stopped mid-line)"
    )


def test_a_daemon_stop_ends_a_follow_cleanly(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    follower = Follower(godel, "--last", "1")
    follower.until(lambda e: True, "the last kept event")
    godel.run("daemon", "stop", check=True)
    follower.until(lambda e: e["type"] == "daemon.stopping", "daemon.stopping")
    assert follower.proc.wait(timeout=20) == 0
    assert follower.proc.stderr is not None
    assert follower.proc.stderr.read() == "godel: the daemon stopped; the stream ended\n"


def test_a_frozen_daemon_is_named_and_the_call_goes_on_when_it_thaws(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    pid = godel.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        waiting = godel.popen("agent", "list")
        assert waiting.stderr is not None
        notice = waiting.stderr.readline()  # after 5 s of silence, not before
        assert notice.startswith(f"godel: the daemon (pid {pid}) has not answered for 5s")
    finally:
        os.kill(pid, signal.SIGCONT)
    out, _ = waiting.communicate(timeout=30)
    assert waiting.returncode == 0 and out.startswith("No running agents")


def test_a_recording_is_filtered_like_the_live_stream(godel: Godel) -> None:
    godel.run("swarm", "create", "crew", "--count", "1", check=True)
    (member,) = json.loads(godel.run("agent", "list", "--swarm", "crew", "--json").stdout)
    loner = json.loads(
        godel.run("agent", "spawn", "--runtime", "shell", "--name", "loner", "--json").stdout
    )
    godel.run("agent", "exec", member["id"], "echo in-crew", check=True)
    godel.run("agent", "exec", "loner", "echo alone", check=True)
    godel.run("daemon", "stop", check=True)
    recording = str(godel.home / "events.jsonl")

    def read(*args: str) -> list[dict[str, Any]]:
        r = godel.run("events", "--file", recording, "--since", "0", "--json", *args)
        assert r.returncode == 0, r.stderr
        return json_lines(r.stdout)

    crew = read("--swarm", "crew", "--type", "agent.output")
    assert [e["data"] for e in crew] == ["in-crew\n"]  # via the agent's swarm
    by_name = read("--agent", "loner", "--type", "agent.output")
    assert [(e["agent_id"], e["data"]) for e in by_name] == [(loner["id"], "alone\n")]
    everything = read()
    r = godel.run("events", "--file", recording, "--json", "--last", "3", check=True)
    assert json_lines(r.stdout) == everything[-3:]  # the file's last 3, as --last says
    r = godel.run("events", "--file", recording, "--follow")
    assert r.returncode == 2 and "with --file, leave it out" in r.stderr
