"""Smoke tests: swarms, tasks, routing and metrics through the real CLI, daemon and agents.

The behaviour itself (order, retries, dead agents, cancel, backpressure, breakers, the
ejection cap, restarts, the autoscaler) is tested in process on a fake clock in
``tests/engine``; these prove the faces reach it end to end.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import psutil

from core.federation.metrics import parse_exposition
from tests.conftest import Godel, gone, wait_for


def jrun(godel: Godel, *args: str) -> Any:
    r = godel.run(*args, "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def tasks(godel: Godel, swarm: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in jrun(godel, "task", "list", "--swarm", swarm, "--limit", "5000")}


def submit(godel: Godel, swarm: str, *inputs: str, **opts: str) -> list[str]:
    extra = [x for k, v in opts.items() for x in (f"--{k.replace('_', '-')}", v)]
    return [t["id"] for t in jrun(godel, "task", "submit", "--swarm", swarm, *extra, *inputs)]


def all_final(godel: Godel, swarm: str, n: int) -> bool:
    ts = tasks(godel, swarm)
    final = {"succeeded", "failed", "cancelled"}
    return len(ts) == n and all(t["status"] in final for t in ts.values())


def test_swarms_and_tasks_through_the_cli(godel: Godel) -> None:
    created = jrun(godel, "swarm", "create", "work", "--count", "2")
    assert len(created["agents"]) == 2
    pids = [a["pid"] for a in jrun(godel, "agent", "list", "--swarm", "work")]
    assert len(pids) == 2
    assert all(psutil.pid_exists(p) for p in pids)

    ok = submit(godel, "work", "echo a", "echo b")
    (bad,) = submit(godel, "work", "exit 3", max_attempts="1")
    (child,) = submit(godel, "work", "echo never", depends_on=bad)
    waited = godel.run("task", "wait", *ok, bad, child, timeout=60)
    assert waited.returncode == 1  # some failed
    ts = tasks(godel, "work")
    assert [ts[t]["result"]["output"] for t in ok] == ["a\n", "b\n"]
    assert ts[bad]["status"] == "failed"
    assert ts[bad]["error"] == "failed after 1 attempt: exit code 3"
    assert ts[child]["error"] == f"dependency {bad} failed for good"
    r = godel.run("task", "retry", bad, check=True)
    assert r.stdout.startswith(f"Requeued task: {bad}")

    (listed,) = jrun(godel, "swarm", "list")
    assert listed["name"] == "work" and listed["agents_by_status"] == {"idle": 2}
    assert listed == jrun(godel, "swarm", "status", "work")  # one shape per object
    r = godel.run("swarm", "scale", "work", "9")
    assert r.returncode == 1 and "between 0 and 2" in r.stderr

    # Backpressure reaches the user as an error naming the capacity.
    jrun(godel, "swarm", "create", "tiny", "--count", "0", "--capacity", "20")
    submit(godel, "tiny", *[f"echo {i}" for i in range(19)])
    r = godel.run("task", "submit", "--swarm", "tiny", "echo one-too-many")
    assert r.returncode == 1
    assert "queue full" in r.stderr and "capacity of 20" in r.stderr

    spawned = jrun(godel, "swarm", "spawn", "--count", "1")
    assert spawned["swarm"]["name"].startswith("swarm-") and len(spawned["agents"]) == 1

    out = jrun(godel, "swarm", "destroy", "work")
    assert sorted(out["stopped"]) == sorted(a["id"] for a in created["agents"])
    assert all(gone(p) for p in pids)
    r = godel.run("swarm", "status", "work")
    assert r.returncode == 1 and "swarm 'work' not found" in r.stderr


def test_route_explain_strategy_and_metrics_through_the_cli(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "rt", "--count", "2", "--skills", "python")
    (stuck,) = submit(godel, "rt", "echo gpu", skills="gpu")
    (done,) = submit(godel, "rt", "echo ok", skills="python")
    assert wait_for(lambda: tasks(godel, "rt")[done]["status"] == "succeeded", timeout=20)

    explained = jrun(godel, "route", "explain", stuck)
    assert explained["now"]["chosen"] is None
    assert explained["now"]["reason"] == "no agent has skills gpu"
    text = godel.run("route", "explain", done, check=True).stdout
    assert "AGENT" in text and "SCORE" in text and "Past decisions:" in text

    r = godel.run("swarm", "strategy", "rt", "teleport")
    assert r.returncode == 1 and "unknown routing strategy 'teleport'" in r.stderr
    godel.run("swarm", "strategy", "rt", "round-robin", check=True)
    assert "round-robin" in jrun(godel, "route", "strategies")

    values = parse_exposition(godel.run("metrics", check=True).stdout)
    assert values['godel_tasks_total{runtime="shell",status="succeeded",swarm="rt"}'] == 1
    assert values['godel_agents{status="idle",swarm="rt"}'] == 2
    assert values['godel_queue_depth{priority="normal",swarm="rt"}'] == 1  # the stuck one


def test_a_dead_swarm_agent_is_replaced(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "heal", "--count", "2")
    first = jrun(godel, "agent", "list", "--swarm", "heal")
    os.kill(first[0]["pid"], signal.SIGKILL)

    def live_ids() -> set[str]:
        agents = jrun(godel, "agent", "list", "--swarm", "heal")
        return {a["id"] for a in agents if a["status"] in ("idle", "busy")}

    # Polled through the CLI (the restart backoff is about a second of real time).
    assert wait_for(lambda: len(live_ids()) == 2 and first[0]["id"] not in live_ids(), timeout=20)
    audit = jrun(godel, "audit", "list", "--subject", "heal")
    restarts = [e for e in audit if e["action"] == "swarm.restart"]
    assert restarts and restarts[0]["result"] == "ok"
    assert restarts[0]["payload"]["dead_agent"] == first[0]["id"]
