"""No task silently stuck, and failure reasons where the user looks, through the real CLI
and daemon: submit warnings, ``--runtime``, ``task get`` (why it waits; reason, stdout
and stderr of its last attempt), ``godel exec show``, and ``agent exec`` naming why an
exec failed (a model endpoint that refuses connections)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import Godel


def spawn(godel: Godel, *args: str) -> str:
    r = godel.run("agent", "spawn", *args, "--json", check=True, timeout=120)
    agent_id: str = json.loads(r.stdout)["id"]
    return agent_id


def submit(godel: Godel, *args: str) -> tuple[str, str]:
    """Submit one task; returns its id and what the CLI said on stderr."""
    r = godel.run("task", "submit", *args, check=True)
    m = re.fullmatch(r"Queued task: (task-[0-9a-f]+) \(\w+\)", r.stdout.strip())
    assert m, r.stdout
    return m.group(1), r.stderr


def wait_final(godel: Godel, task_id: str) -> dict[str, object]:
    """Block until the task is final (``task wait`` follows the daemon's task events)."""
    r = godel.run("task", "wait", task_id, "--json", timeout=60)
    assert r.returncode in (0, 1), r.stderr
    (task,) = json.loads(r.stdout)
    assert isinstance(task, dict)
    return task


def test_a_task_no_agent_can_take_is_queued_with_a_warning_and_says_why(godel: Godel) -> None:
    godel.run("swarm", "create", "api", "--runtime", "noop", "--count", "2", check=True)
    task_id, warned = submit(godel, "true")
    assert warned == (
        f"warning: {task_id}: no agent in the default pool can take this task (no agents; "
        "swarms: api (noop, 2 agents); submit with --swarm NAME or spawn an agent)\n"
    )
    shown = godel.run("task", "get", task_id, check=True).stdout
    assert "Status:      ready\n" in shown
    assert "Waiting:     no agent in the default pool can take this task (no agents;" in shown
    data = json.loads(godel.run("task", "get", task_id, "--json", check=True).stdout)
    assert data["stranded"] is True and data["waiting"].startswith("no agent in the default")
    # The same shape from task.submit, task.list and task.get (list leaves waiting out).
    listed = json.loads(godel.run("task", "list", "--json", check=True).stdout)
    assert set(listed[0]) == set(data)
    r = godel.run("task", "submit", "true", "--json", check=True)
    (submitted,) = json.loads(r.stdout)
    assert set(submitted) == set(data) and submitted["stranded"] is True


def test_runtime_keeps_a_command_off_an_llm_agent(godel: Godel) -> None:
    noop = spawn(godel, "--runtime", "noop")
    task_id, warned = submit(godel, "--runtime", "shell", "echo from-shell")
    assert warned.startswith(f"warning: {task_id}: no agent in the default pool can take ")
    assert "(it needs runtime shell; agents there: 1 noop;" in warned
    shown = godel.run("task", "get", task_id, check=True).stdout
    assert "Runtime:     shell\n" in shown and "Waiting:     no agent" in shown

    r = godel.run("task", "submit", "--runtime", "bash", "true")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("godel: unknown runtime 'bash' (known: ")
    assert len(r.stderr.strip().splitlines()) == 1
    godel.run("swarm", "create", "pis", "--runtime", "noop", "--count", "0", check=True)
    r = godel.run("task", "submit", "--swarm", "pis", "--runtime", "shell", "true")
    assert r.returncode == 1 and r.stderr == (
        "godel: swarm pis runs noop agents, and this task needs runtime shell: submit it "
        "to a shell swarm or without --swarm\n"
    )

    shell = spawn(godel, "--runtime", "shell")
    task = wait_final(godel, task_id)
    assert task["status"] == "succeeded" and task["lease_agent"] == shell != noop


def test_task_get_and_exec_show_print_the_reason_stdout_and_stderr(godel: Godel) -> None:
    agent_id = spawn(godel, "--runtime", "shell")
    task_id, warned = submit(godel, "--max-attempts", "1", "echo to-out; echo to-err >&2; exit 3")
    assert warned == ""
    task = wait_final(godel, task_id)
    assert task["status"] == "failed"
    exec_id = task["exec_id"]
    assert isinstance(exec_id, str)

    shown = godel.run("task", "get", task_id, check=True).stdout
    assert "Last result: failed, exit 3, " in shown and f"(exec {exec_id})" in shown
    assert "Stdout:\n  to-out\n" in shown and "Stderr:\n  to-err" in shown

    text = godel.run("exec", "show", exec_id, check=True).stdout
    assert f"Exec:       {exec_id}\n" in text and f"Agent:      {agent_id}\n" in text
    assert "Status:     failed\n" in text and "Exit code:  3\n" in text
    assert "Stdout:\n  to-out\n" in text and "Stderr:\n  to-err\n" in text
    data = json.loads(godel.run("exec", "show", exec_id, "--json", check=True).stdout)
    assert data["exec"]["id"] == exec_id and data["truncated"] is False
    assert {(x["stream"], x["data"]) for x in data["output"]} == {
        ("stdout", "to-out\n"),
        ("stderr", "to-err\n"),
    }
    agent = godel.run("agent", "get", agent_id, check=True).stdout
    assert exec_id in agent

    r = godel.run("exec", "show", "exec-000000000000")
    assert r.returncode == 1 and r.stderr == "godel: exec 'exec-000000000000' not found\n"

    # Read-only: with the daemon stopped, it says so and does not start one.
    godel.run("daemon", "stop", check=True)
    r = godel.run("exec", "show", exec_id)
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1
    assert godel.run("daemon", "status").returncode == 3


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A local port that refuses connections: bound (so nobody else takes it), never
    listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_agent_exec_names_why_an_llm_exec_failed(godel: Godel, refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/v1"
    cfg = godel.cwd / ".godel"
    cfg.mkdir()
    (cfg / "config.toml").write_text(
        "[providers.down]\n"
        'kind = "openai"\n'
        f'base_url = "{url}"\n'
        'api_key_env = "DOWN_API_KEY"\n'
        "[models.down]\n"
        'provider = "down"\n'
        'input_per_mtok = "1"\n'
        'output_per_mtok = "1"\n'
        "[runtimes.native]\n"
        "max_retries = 0\n"
    )
    godel.env["DOWN_API_KEY"] = "not-a-real-key"
    agent_id = spawn(godel, "--runtime", "native", "--model", "down")
    r = godel.run("agent", "exec", agent_id, "hello")
    assert r.returncode == 1
    failure = [ln for ln in r.stderr.splitlines() if ln.startswith("godel: exec ")]
    assert len(failure) == 1, r.stderr
    m = re.fullmatch(r"godel: exec (exec-[0-9a-f]+) failed: (.+)", failure[0])
    assert m, failure
    assert url in m.group(2) and "ConnectError" in m.group(2), m.group(2)

    # The same reason in the exec's record.
    shown = json.loads(godel.run("exec", "show", m.group(1), "--json", check=True).stdout)
    assert shown["exec"]["status"] == "failed" and shown["exec"]["reason"] == m.group(2)
