"""The ``godel`` CLI across processes against a real daemon and real shell agents."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat

import psutil

from tests.conftest import Godel, gone, wait_for

SPAWNED = re.compile(r"^Spawned shell agent: (shell-[0-9a-f]{6})$")


def spawn(godel: Godel, *extra: str) -> str:
    out = godel.run("agent", "spawn", "--runtime", "shell", *extra, check=True).stdout.strip()
    m = SPAWNED.match(out)
    assert m, out
    return m.group(1)


def agents(godel: Godel) -> dict[str, dict[str, object]]:
    """Every agent, ended ones too."""
    data = json.loads(godel.run("agent", "list", "--all", "--json", check=True).stdout)
    return {a["id"]: a for a in data}


def test_spawn_exec_list_kill_in_separate_processes(godel: Godel) -> None:
    agent_id = spawn(godel, "--name", "builder", "--skills", "python,tests")

    r = godel.run("agent", "exec", agent_id, "echo hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello\n", "")

    r = godel.run("agent", "exec", agent_id, "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")

    r = godel.run("agent", "exec", "builder", "pwd")  # by name; runs in its workspace
    workspace = r.stdout.strip()
    assert workspace.endswith(agent_id)

    listed = agents(godel)[agent_id]
    assert listed["status"] == "idle" and listed["status_source"] == "runtime_event"
    assert listed["skills"] == ["python", "tests"] and listed["name"] == "builder"
    pid = int(listed["pid"])  # type: ignore[arg-type]
    assert psutil.pid_exists(pid)

    # A long command in a 4th process; kill from a 5th: both the shell and the command end.
    sleeper = godel.popen("agent", "exec", agent_id, "sleep 30")
    assert wait_for(lambda: agents(godel)[agent_id]["status"] == "busy")
    children = psutil.Process(pid).children(recursive=True)
    assert children
    r = godel.run("agent", "kill", agent_id)
    assert r.returncode == 0 and r.stdout.strip() == f"Killed agent: {agent_id}"
    assert wait_for(lambda: gone(pid))
    assert all(gone(c.pid) for c in children)
    sleeper.wait(timeout=20)
    assert sleeper.returncode != 0

    after = agents(godel)[agent_id]
    assert after["status"] == "stopped" and after["status_source"] == "user"
    r = godel.run("agent", "exec", agent_id, "echo again")
    assert r.returncode == 1
    assert r.stderr.startswith(f"godel: cannot exec on agent {agent_id}: it is stopped")
    assert len(r.stderr.strip().splitlines()) == 1

    detail = godel.run("agent", "get", agent_id, check=True).stdout
    assert "Status:     stopped (source: user" in detail and "sleep 30" in detail


def test_unknown_agent_and_unknown_runtime_are_one_line_errors(godel: Godel) -> None:
    for args in (
        ("agent", "exec", "shell-000000", "true"),
        ("agent", "kill", "shell-000000"),
        ("agent", "get", "shell-000000"),
        ("agent", "logs", "shell-000000"),
    ):
        r = godel.run(*args)
        assert r.returncode == 1, args
        assert r.stderr.startswith("godel: agent 'shell-000000' not found"), args
        assert r.stderr.count("\n") == 1, args
    r = godel.run("agent", "spawn", "--runtime", "nope")
    assert r.returncode == 1
    assert r.stderr.startswith("godel: unknown runtime 'nope' (known: ")


def test_dead_agent_is_failed_with_its_exit_and_refuses_work(godel: Godel) -> None:
    agent_id = spawn(godel)
    pid = int(agents(godel)[agent_id]["pid"])  # type: ignore[arg-type]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: agents(godel)[agent_id]["status"] == "failed")
    a = agents(godel)[agent_id]
    assert a["status_source"] == "process_exit"
    assert f"process {pid} exited with code -9" in str(a["status_reason"])
    r = godel.run("agent", "exec", agent_id, "echo hi")
    assert r.returncode == 1 and "it is failed: process" in r.stderr


def test_exec_timeout_and_streaming(godel: Godel) -> None:
    agent_id = spawn(godel)
    r = godel.run("agent", "exec", agent_id, "sleep 20", "--timeout", "0.5")
    assert r.returncode == 124
    assert "timed_out" in r.stderr
    # Output reaches the caller while the command still runs.
    p = godel.popen("agent", "exec", agent_id, "echo first; sleep 5; echo second")
    assert p.stdout is not None
    assert p.stdout.readline() == "first\n"
    assert p.poll() is None  # the first line came while the command still ran
    assert p.stdout.readline() == "second\n"
    assert p.wait(timeout=30) == 0


def test_exec_json_lines(godel: Godel) -> None:
    agent_id = spawn(godel)
    r = godel.run("agent", "exec", agent_id, "echo hi", "--json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0] == {
        "kind": "output",
        "exec_id": lines[-1]["exec_id"],
        "stream": "stdout",
        "data": "hi\n",
    }
    assert lines[-1]["kind"] == "result" and lines[-1]["exit_code"] == 0


def test_logs_and_follow(godel: Godel) -> None:
    agent_id = spawn(godel)
    godel.run("agent", "exec", agent_id, "echo one; echo two >&2", check=True)
    r = godel.run("agent", "logs", agent_id, check=True)
    assert r.stdout == "one\n" and r.stderr == "two\n"

    follower = godel.popen("agent", "logs", agent_id, "--follow")
    assert follower.stdout is not None
    # The follower subscribes before it reads the stored lines: once it printed one,
    # nothing written later can be missed.
    assert follower.stdout.readline() == "one\n"
    godel.run("agent", "exec", agent_id, "echo three", check=True)
    godel.run("agent", "kill", agent_id, check=True)
    rest, _ = follower.communicate(timeout=20)
    assert follower.returncode == 0  # ends by itself when the agent ends
    assert rest == "three\n"


def test_runtime_list(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    data = json.loads(godel.run("runtime", "list", "--json", check=True).stdout)
    shell = next(r for r in data if r["name"] == "shell")
    assert {"exec", "kill", "timeout", "abort"} <= set(shell["capabilities"])
    text = godel.run("runtime", "list", check=True).stdout
    assert text.splitlines()[0].split() == ["NAME", "CAPABILITIES", "SOURCE", "DESCRIPTION"]


def test_daemon_status_start_stop_and_socket_mode(godel: Godel) -> None:
    r = godel.run("daemon", "status")
    assert r.returncode == 3 and "No daemon running" in r.stdout
    r = godel.run("daemon", "start", check=True)
    assert r.stdout.startswith("Daemon started (pid ")
    r = godel.run("daemon", "start", check=True)
    assert r.stdout.startswith("Daemon already running")
    status = json.loads(godel.run("daemon", "status", "--json", check=True).stdout)
    assert status["running"] is True and status["home"] == str(godel.home)
    sock = status["socket"]
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    pid = status["pid"]
    r = godel.run("daemon", "stop", check=True)
    assert r.stdout.strip() == f"Daemon stopped (pid {pid})"
    assert gone(pid)
    assert not os.path.exists(sock)


def test_daemon_that_cannot_start_is_a_one_line_error(godel: Godel) -> None:
    godel.home.mkdir(parents=True)
    (godel.home / "godel.db").write_bytes(b"garbage" * 1000)
    r = godel.run("agent", "spawn", "--runtime", "shell")  # a command that starts the daemon
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert "the daemon could not start" in r.stderr
    assert "not a SQLite database or is corrupt" in r.stderr
    assert (godel.home / "godel.db").read_bytes() == b"garbage" * 1000


def test_bad_config_stops_the_daemon_with_file_and_key(godel: Godel) -> None:
    cfg = godel.cwd / ".godel"
    cfg.mkdir()
    (cfg / "config.toml").write_text('[queue]\nlease_s = "ten"\n')
    r = godel.run("config", "validate")
    assert r.returncode == 1
    assert "config.toml: queue.lease_s:" in r.stderr and "'ten'" in r.stderr
    r = godel.run("agent", "spawn", "--runtime", "shell")
    assert r.returncode == 1 and "queue.lease_s" in r.stderr


def test_unusable_workspace_root_refused_by_validate_and_daemon_start(godel: Godel) -> None:
    cfg = godel.cwd / ".godel"
    cfg.mkdir()
    (cfg / "config.toml").write_text('[defaults]\nworkspace_root = "/proc/nope"\n')
    expected = f"{cfg / 'config.toml'}: defaults.workspace_root: cannot create workspaces in "
    for command in (("config", "validate"), ("daemon", "start")):
        r = godel.run(*command)
        assert r.returncode == 1, command
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert expected in r.stderr and "/proc/nope" in r.stderr
    assert godel.daemon_pid() is None


def test_raw_json_rpc_errors_over_the_socket(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    status = json.loads(godel.run("daemon", "status", "--json", check=True).stdout)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(status["socket"])
        f = s.makefile("rwb")

        def ask(raw: bytes) -> dict[str, object]:
            f.write(raw + b"\n")
            f.flush()
            return json.loads(f.readline())  # type: ignore[no-any-return]

        assert ask(b"{not json")["error"]["code"] == -32700  # type: ignore[index]
        assert ask(b'{"jsonrpc":"1.0","id":1,"method":"agent.list"}')["error"]["code"] == -32600  # type: ignore[index]
        r = ask(b'{"jsonrpc":"2.0","id":2,"method":"agent.fly"}')
        assert r["error"] == {
            "code": -32601,
            "message": "Method not found: agent.fly",
            "data": {"method": "agent.fly"},
        }
        r = ask(b'{"jsonrpc":"2.0","id":3,"method":"agent.exec","params":{"id":"x"}}')
        assert r["error"]["code"] == -32602 and "input" in r["error"]["message"]  # type: ignore[index]
        r = ask(b'{"jsonrpc":"2.0","id":4,"method":"agent.get","params":{"id":"shell-000000"}}')
        assert r["error"]["code"] == -32001  # type: ignore[index]
        assert r["error"]["data"] == {"kind": "agent_not_found", "agent_id": "shell-000000"}  # type: ignore[index]
        r = ask(b'{"jsonrpc":"2.0","id":5,"method":"agent.list"}')  # still usable
        assert r["result"] == []


READS = [
    ("agent", "list"),
    ("agent", "list", "--all", "--json"),
    ("agent", "get", "shell-000000"),
    ("agent", "logs", "shell-000000", "--follow"),
    ("agent", "health", "shell-000000"),
    ("runtime", "list"),
    ("model", "list"),
    ("audit", "list"),
    ("audit", "verify"),
    ("metrics",),
    ("task", "list"),
    ("swarm", "list"),
    ("config", "show", "--daemon"),
]


def test_read_only_commands_never_start_a_daemon(godel: Godel) -> None:
    for args in (("--version",), ("--help",), ("agent", "--help")):
        assert godel.run(*args, check=True).stdout
    not_running = (
        f"godel: no daemon is running for {godel.home}; start one with `godel daemon start`\n"
    )
    for args in READS:
        r = godel.run(*args)
        assert (r.returncode, r.stdout, r.stderr) == (3, "", not_running), args
    assert not godel.home.exists()  # no daemon, socket, database or log was made

    # Nor after a daemon ran: a read after `daemon stop` leaves it stopped.
    agent_id = spawn(godel)
    pid = godel.daemon_pid()
    assert pid is not None
    godel.run("daemon", "stop", check=True)
    assert gone(pid)
    r = godel.run("agent", "get", agent_id)
    assert (r.returncode, r.stderr) == (3, not_running)
    assert godel.daemon_pid() is None and godel.run("daemon", "status").returncode == 3


def test_agent_list_columns_filters_and_ended_agents(godel: Godel) -> None:
    loose = spawn(godel, "--name", "loose")
    godel.run("swarm", "create", "web", "--count", "2", check=True)
    godel.run("agent", "exec", loose, "echo hi", check=True)
    ended = spawn(godel)
    godel.run("agent", "kill", ended, check=True)

    text = godel.run("agent", "list", check=True).stdout.splitlines()
    assert text[0].split() == ["ID", "NAME", "SWARM", "RUNTIME", "STATUS", "TASK", "TOKENS", "COST"]
    rows = {line.split()[0]: line for line in text[1:]}
    assert len(rows) == 3 and ended not in rows  # ended agents are hidden by default
    cells = rows[loose].split()
    # A shell agent has no model: 0 tokens, and its cost is unknown ("-"), never $0.
    assert cells[1:4] == ["loose", "-", "shell"] and cells[-3:] == ["-", "0", "-"]
    assert re.fullmatch(r"idle \(runtime_event, \d+[smhd]\)", " ".join(cells[4:7]))

    listed = json.loads(godel.run("agent", "list", "--json", check=True).stdout)
    a = next(x for x in listed if x["id"] == loose)
    assert a["swarm"] is None and a["execs"] == 1 and a["cost_usd"] is None
    assert a["tokens"]["total"] == 0 and a["current_task"] is None
    one = json.loads(godel.run("agent", "get", loose, "--json", check=True).stdout)
    assert one.keys() == a.keys() and one["id"] == loose  # one shape for list and get

    web = json.loads(godel.run("agent", "list", "--swarm", "web", "--json", check=True).stdout)
    assert len(web) == 2 and {x["swarm"] for x in web} == {"web"}
    everyone = json.loads(godel.run("agent", "list", "--all", "--json", check=True).stdout)
    assert {x["id"] for x in everyone} == {*rows, ended}
    stopped = godel.run("agent", "list", "--status", "stopped", check=True).stdout
    assert ended in stopped and loose not in stopped and "stopped (user, " in stopped
    r = godel.run("agent", "list", "--swarm", "nowhere", check=True)
    assert r.stdout.startswith("No agents in swarm nowhere")
    r = godel.run("agent", "list", "--status", "sleepy")
    assert r.returncode == 2 and "'sleepy' is not one of" in r.stderr


def test_restart_replaces_the_agent(godel: Godel) -> None:
    old = spawn(godel)
    r = godel.run("agent", "restart", old, "--json", check=True)
    new = json.loads(r.stdout)["id"]
    assert new != old
    listed = agents(godel)
    assert listed[new]["status"] == "idle"
    assert godel.run("agent", "restart", "nope-123456").returncode == 1
