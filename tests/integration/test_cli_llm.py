"""LLM agents through the real CLI and daemon: spawn, exec, steer, models, missing keys."""

from __future__ import annotations

import json
import os
import re

import psutil
import pytest

from core.api import blocking
from core.paths import GodelPaths
from tests.conftest import Godel, daemon_runs, gone, wait_for


def spawn(godel: Godel, runtime: str, *extra: str) -> str:
    r = godel.run("agent", "spawn", "--runtime", runtime, *extra, timeout=120)
    assert r.returncode == 0, r.stderr
    label = "Pi" if runtime == "pi" else runtime
    m = re.match(rf"^Spawned {label} agent: ({runtime}-[0-9a-f]{{6}})$", r.stdout.strip())
    assert m, r.stdout
    return m.group(1)


def test_native_exec_shows_tool_call_output_answer_tokens_and_cost(godel: Godel) -> None:
    agent_id = spawn(godel, "native", "--model", "scripted")
    r = godel.run("agent", "exec", agent_id, "run: echo hello")
    assert r.returncode == 0, r.stderr
    assert '→ bash {"command": "echo hello"}' in r.stderr
    assert "← bash: hello" in r.stderr
    assert "hello" in r.stdout  # the model's answer quotes the output
    m = re.search(r"tokens: ([\d,]+) in / ([\d,]+) out · cost \$(\d+\.\d{6})", r.stderr)
    assert m, r.stderr
    agent = json.loads(godel.run("agent", "get", agent_id, "--json", check=True).stdout)
    assert agent["model"] == "scripted" and agent["execs"] == 1
    assert agent["tokens"]["input"] > 0
    assert agent["cost_usd"] is not None and float(agent["cost_usd"]) > 0
    x = blocking.call(GodelPaths.resolve(godel.home), "exec.list", {"agent": agent_id})[0]
    assert x["status"] == "succeeded" and x["usage"]["input_tokens"] > 0
    assert x["cost_usd"] == agent["cost_usd"]
    # The listing shows the tokens and the cost the exec reported.
    row = next(
        line
        for line in godel.run("agent", "list", check=True).stdout.splitlines()
        if line.startswith(agent_id)
    )
    assert f"{agent['tokens']['total']:,}" in row.split()
    assert row.split()[-1] == f"${float(agent['cost_usd']):.6f}".rstrip("0").rstrip(".")
    logs = godel.run("agent", "logs", agent_id, check=True).stdout
    assert "→ bash" in logs and "← bash: hello" in logs


def test_default_model_is_scripted(godel: Godel) -> None:
    agent_id = spawn(godel, "native")
    data = json.loads(godel.run("agent", "get", agent_id, "--json", check=True).stdout)
    assert data["model"] == "scripted"


def test_missing_api_key_fails_before_anything_is_spawned(godel: Godel) -> None:
    godel.env.pop("ANTHROPIC_API_KEY", None)
    r = godel.run("agent", "spawn", "--runtime", "native", "--model", "claude-sonnet-4-5")
    assert r.returncode == 1
    assert "ANTHROPIC_API_KEY" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert json.loads(godel.run("agent", "list", "--json", check=True).stdout) == []


def test_shell_rejects_a_model_and_unknown_models_are_named(godel: Godel) -> None:
    r = godel.run("agent", "spawn", "--runtime", "shell", "--model", "scripted")
    assert r.returncode == 1 and "does not use a model" in r.stderr
    r = godel.run("agent", "spawn", "--runtime", "native", "--model", "gpt-99")
    assert r.returncode == 1 and "unknown model 'gpt-99'" in r.stderr


def test_model_list(godel: Godel) -> None:
    godel.run("daemon", "start", check=True)
    models = {
        m["name"]: m for m in json.loads(godel.run("model", "list", "--json", check=True).stdout)
    }
    assert models["scripted"]["scripted"] is True
    sonnet = models["claude-sonnet-4-5"]
    assert sonnet["api_key_env"] == "ANTHROPIC_API_KEY"
    assert sonnet["prices"]["input_mtok"] == "3" and sonnet["prices"]["output_mtok"] == "15"
    assert sonnet["prices"]["source"].startswith("snapshot genai-prices")
    text = godel.run("model", "list", check=True).stdout
    assert "claude-sonnet-4-5" in text


def test_steer_and_abort_from_other_processes(godel: Godel) -> None:
    agent_id = spawn(godel, "native")
    p = godel.popen("agent", "exec", agent_id, "run: sleep 30")
    assert wait_for(
        lambda: json.loads(godel.run("agent", "get", agent_id, "--json").stdout)["status"] == "busy"
    )
    # Busy is recorded as the exec starts; steering needs the agent's turn under way,
    # which its tool's process proves.
    assert wait_for(lambda: daemon_runs(godel, "sleep 30"))
    r = godel.run("agent", "steer", agent_id, "hurry up")
    assert r.returncode == 0 and r.stdout.strip() == "Steered."
    r = godel.run("agent", "abort", agent_id)
    assert r.stdout.strip() == "Aborted."
    p.wait(timeout=30)
    assert p.returncode == 130
    audit = json.loads(godel.run("audit", "list", "--json", "--subject", agent_id).stdout)
    actions = [e["action"] for e in audit]
    assert "agent.steer" in actions and "agent.abort" in actions


@pytest.mark.parametrize("model", ["scripted", "scripted-anthropic"])
def test_native_policy_violation_is_audited(godel: Godel, model: str) -> None:
    agent_id = spawn(godel, "native", "--model", model)
    r = godel.run("agent", "exec", agent_id, "write ../../escape.txt: x")
    assert "refused (workspace_confinement)" in r.stderr
    audit = json.loads(godel.run("audit", "list", "--json", "--subject", agent_id).stdout)
    v = [e for e in audit if e["action"] == "policy.violation"]
    assert len(v) == 1 and v[0]["result"] == "refused"
    assert v[0]["payload"]["rule"] == "workspace_confinement"


def _pi_or_skip() -> None:
    from tests.integration.test_conformance import pi_available

    if not pi_available():
        if os.environ.get("CI"):
            pytest.fail("the pi binary is not installed (run `make setup`)")
        pytest.skip("the pi binary is not installed (run `make setup`)")


def test_pi_agent_through_the_cli(godel: Godel) -> None:
    _pi_or_skip()
    agent_id = spawn(godel, "pi", "--model", "scripted")
    r = godel.run("agent", "exec", agent_id, "run: echo hello")
    assert r.returncode == 0, r.stderr
    assert '→ bash {"command": "echo hello"}' in r.stderr
    assert "hello" in r.stdout
    assert re.search(r"tokens: [\d,]+ in / [\d,]+ out · cost \$\d+\.\d{6}", r.stderr), r.stderr
    health = json.loads(godel.run("agent", "health", agent_id, "--json", check=True).stdout)
    assert health["state"] == "healthy"


def test_no_pi_or_tool_process_survives_kill_or_daemon_stop(godel: Godel) -> None:
    _pi_or_skip()
    killed = spawn(godel, "pi")
    stopped = spawn(godel, "pi")
    pids = {
        a: json.loads(godel.run("agent", "get", a, "--json").stdout)["pid"]
        for a in (killed, stopped)
    }
    runners = [godel.popen("agent", "exec", a, "run: sleep 77") for a in (killed, stopped)]

    def sleeps() -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter(["cmdline"]):
            if p.info["cmdline"] == ["sleep", "77"]:
                out.append(p)
        return out

    assert wait_for(lambda: len(sleeps()) >= 2, timeout=30)
    godel.run("agent", "kill", killed, check=True)
    assert wait_for(lambda: gone(pids[killed]), timeout=15)
    assert wait_for(lambda: len(sleeps()) == 1, timeout=15)
    godel.run("daemon", "stop", check=True)
    assert wait_for(lambda: gone(pids[stopped]), timeout=15)
    assert wait_for(lambda: not sleeps(), timeout=15)
    for p in runners:
        p.wait(timeout=30)
