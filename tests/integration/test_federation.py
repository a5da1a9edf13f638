"""The queue, dispatcher and swarms through the real CLI, daemon and shell agents."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import psutil

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
    final = {"succeeded", "failed", "dead", "cancelled"}
    return len(ts) == n and all(t["status"] in final for t in ts.values())


def test_a_batch_of_500_tasks_completes_with_the_right_results(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "batch", "--count", "5")
    inputs = [f"echo result-{i}" for i in range(500)]
    ids = submit(godel, "batch", *inputs)
    assert len(ids) == 500
    assert wait_for(lambda: all_final(godel, "batch", 500), timeout=120, interval=0.5)
    ts = tasks(godel, "batch")
    for task_id, text in zip(ids, inputs, strict=True):
        t = ts[task_id]
        assert t["status"] == "succeeded", t
        assert t["result"]["output"] == text.removeprefix("echo ") + "\n"
    used = {t["lease_agent"] for t in ts.values()}
    assert len(used) == 5  # the work was spread over the swarm
    status = jrun(godel, "swarm", "status", "batch")
    assert status["tasks"] == {"succeeded": 500}


def test_a_task_whose_agent_dies_finishes_on_another_agent(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "pair", "--count", "2")
    (task_id,) = submit(godel, "pair", "sleep 10; echo finished")  # long enough to kill mid-way
    assert wait_for(lambda: tasks(godel, "pair")[task_id]["status"] == "running", timeout=20)
    first = tasks(godel, "pair")[task_id]["lease_agent"]
    agent = jrun(godel, "agent", "get", first)["agent"]
    os.kill(agent["pid"], signal.SIGKILL)  # the agent's process dies mid-task
    assert wait_for(lambda: tasks(godel, "pair")[task_id]["status"] == "succeeded", timeout=60)
    t = tasks(godel, "pair")[task_id]
    assert t["lease_agent"] != first
    assert t["result"]["output"] == "finished\n"
    assert t["attempts"] == 1  # the dead agent's attempt is not held against the task
    audit = jrun(godel, "audit", "list", "--subject", task_id)
    assert [e["action"] for e in audit].count("task.requeue") == 1
    assert jrun(godel, "agent", "get", first)["agent"]["status"] == "failed"


def test_priorities_then_fifo_and_dependencies(godel: Godel) -> None:
    # No agent yet: everything is queued before anything runs, so the order is the queue's.
    # (The autoscaler would start one on its own: it is off here.)
    cfg = godel.cwd / ".godel"
    cfg.mkdir()
    (cfg / "config.toml").write_text("[autoscaler]\nenabled = false\n")
    jrun(godel, "swarm", "create", "solo", "--count", "0", "--max", "1")
    low = submit(godel, "solo", "echo low", priority="low")[0]
    n1, n2 = submit(godel, "solo", "echo n1", "echo n2")
    crit = submit(godel, "solo", "echo crit", priority="critical")[0]
    dep = submit(godel, "solo", "echo after-low", depends_on=low, priority="critical")[0]
    assert tasks(godel, "solo")[dep]["status"] == "queued"
    jrun(godel, "swarm", "scale", "solo", "1")
    assert wait_for(lambda: all_final(godel, "solo", 5), timeout=60)
    ts = tasks(godel, "solo")
    order = sorted([crit, n1, n2, low, dep], key=lambda i: ts[i]["finished_at"])
    assert order == [crit, n1, n2, low, dep]


def test_retries_then_dead_letter_and_failed_dependents(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "flaky", "--count", "1")
    (bad,) = submit(godel, "flaky", "exit 3", max_attempts="2")
    (child,) = submit(godel, "flaky", "echo never", depends_on=bad)
    assert wait_for(lambda: all_final(godel, "flaky", 2), timeout=30)
    ts = tasks(godel, "flaky")
    assert ts[bad]["status"] == "dead" and ts[bad]["attempts"] == 2
    assert ts[bad]["error"] == "failed: exit code 3"
    assert ts[child]["status"] == "failed"
    assert ts[child]["error"] == f"dependency {bad} failed for good"
    r = godel.run("task", "retry", bad, check=True)
    assert r.stdout.startswith(f"Requeued task: {bad}")


def test_backpressure_refuses_with_the_capacity_named(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "tiny", "--count", "0", "--capacity", "20")
    submit(godel, "tiny", *[f"echo {i}" for i in range(19)])
    r = godel.run("task", "submit", "--swarm", "tiny", "echo one-too-many")
    assert r.returncode == 1
    assert "queue full" in r.stderr and "capacity of 20" in r.stderr and "retry" in r.stderr
    godel.run("daemon", "stop", check=True)
    from core.events import read_recording

    pressure = [
        e for e in read_recording(godel.home / "events.jsonl") if e.type == "queue.pressure"
    ]
    assert pressure and pressure[0].capacity == 20  # type: ignore[union-attr]


def test_cancel_a_running_task(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "c", "--count", "1")
    (t,) = submit(godel, "c", "sleep 30")
    assert wait_for(lambda: tasks(godel, "c")[t]["status"] == "running", timeout=20)
    agent = jrun(godel, "agent", "get", tasks(godel, "c")[t]["lease_agent"])["agent"]
    sleeps = psutil.Process(agent["pid"]).children(recursive=True)
    assert godel.run("task", "cancel", t, check=True).stdout.strip() == f"Cancelled task: {t}"
    assert tasks(godel, "c")[t]["status"] == "cancelled"
    assert wait_for(lambda: all(gone(p.pid) for p in sleeps), timeout=15)
    (t2,) = submit(godel, "c", "echo still-works")
    assert wait_for(lambda: tasks(godel, "c")[t2]["status"] == "succeeded", timeout=20)


def test_swarm_scale_and_destroy_spawn_and_stop_real_agents(godel: Godel) -> None:
    created = jrun(godel, "swarm", "create", "elastic", "--count", "2", "--max", "5")
    assert len(created["agents"]) == 2
    jrun(godel, "swarm", "scale", "elastic", "4")

    def pids() -> list[int]:
        return [a["pid"] for a in jrun(godel, "swarm", "status", "elastic")["agents"]]

    assert len(pids()) == 4 and all(psutil.pid_exists(p) for p in pids())
    before = pids()
    jrun(godel, "swarm", "scale", "elastic", "1")
    assert len(pids()) == 1
    assert wait_for(lambda: sum(gone(p) for p in before) == 3, timeout=15)
    r = godel.run("swarm", "scale", "elastic", "9")
    assert r.returncode == 1 and "between 0 and 5" in r.stderr
    out = jrun(godel, "swarm", "destroy", "elastic")
    assert len(out["stopped"]) == 1
    assert wait_for(lambda: all(gone(p) for p in before), timeout=15)
    assert jrun(godel, "swarm", "list") == []
    r = godel.run("swarm", "status", "elastic")
    assert r.returncode == 1 and "swarm 'elastic' not found" in r.stderr


def test_swarm_spawn_generates_a_name(godel: Godel) -> None:
    out = jrun(godel, "swarm", "spawn", "--count", "3")
    assert out["swarm"]["name"].startswith("swarm-") and len(out["agents"]) == 3
    assert time.time() > 0


def test_metrics_reflect_the_work_done(godel: Godel) -> None:
    from core.federation.metrics import parse_exposition

    jrun(godel, "swarm", "create", "m", "--count", "2")
    submit(godel, "m", *[f"echo {i}" for i in range(6)], "exit 1")
    assert wait_for(lambda: all_final(godel, "m", 7), timeout=60)
    r = godel.run("metrics", check=True)
    values = parse_exposition(r.stdout)
    assert values['godel_tasks_total{runtime="shell",status="succeeded",swarm="m"}'] == 6
    assert values['godel_tasks_total{runtime="shell",status="dead",swarm="m"}'] == 1
    assert values['godel_agents{status="idle",swarm="m"}'] == 2
    assert values['godel_queue_depth{priority="normal",swarm="m"}'] == 0
    routed = [
        v
        for k, v in values.items()
        if k.startswith("godel_route_decisions_total{") and 'outcome="routed"' in k
    ]
    assert sum(routed) >= 7


def test_breaker_opens_then_lets_exactly_one_trial_through(godel: Godel) -> None:
    cfg = godel.cwd / ".godel"
    cfg.mkdir()
    (cfg / "config.toml").write_text(
        "[health]\nfailure_threshold = 2\nopen_for_s = 12\nmax_open_s = 24\n"
    )
    jrun(godel, "swarm", "create", "br", "--count", "1")
    agent_id = jrun(godel, "swarm", "status", "br")["agents"][0]["id"]
    bad = submit(godel, "br", "exit 1", "exit 1", max_attempts="1")
    assert wait_for(lambda: all_final(godel, "br", 2), timeout=30)
    (good,) = submit(godel, "br", "echo recovered")
    assert tasks(godel, "br")[good]["status"] == "ready"  # the breaker is open
    time.sleep(1)
    assert tasks(godel, "br")[good]["status"] == "ready"
    assert wait_for(lambda: tasks(godel, "br")[good]["status"] == "succeeded", timeout=45)
    audit = jrun(godel, "audit", "list", "--subject", agent_id)
    states = [e["result"] for e in audit if e["action"] == "agent.breaker"]
    assert states == ["open", "half_open", "closed"]
    assert len(bad) == 2


def test_a_dead_swarm_agent_is_replaced(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "heal", "--count", "2")
    first = jrun(godel, "swarm", "status", "heal")["agents"]
    os.kill(first[0]["pid"], signal.SIGKILL)

    def live_ids() -> set[str]:
        agents = jrun(godel, "swarm", "status", "heal")["agents"]
        return {a["id"] for a in agents if a["status"] in ("idle", "busy")}

    assert wait_for(lambda: len(live_ids()) == 2 and first[0]["id"] not in live_ids(), timeout=20)
    audit = jrun(godel, "audit", "list", "--subject", "heal")
    restarts = [e for e in audit if e["action"] == "swarm.restart"]
    assert restarts and restarts[0]["result"] == "ok"
    assert restarts[0]["payload"]["dead_agent"] == first[0]["id"]


def test_the_autoscaler_spawns_and_stops_real_agents(godel: Godel) -> None:
    cfg = godel.cwd / ".godel"
    cfg.mkdir()
    (cfg / "config.toml").write_text("[autoscaler]\ninterval_s = 0.2\nscale_down_window_s = 1.5\n")
    jrun(godel, "swarm", "create", "auto", "--count", "0", "--min", "0", "--max", "3")

    def members() -> list[dict[str, Any]]:
        return [
            a
            for a in jrun(godel, "swarm", "status", "auto")["agents"]
            if a["status"] in ("idle", "busy")
        ]

    submit(godel, "auto", *["sleep 2" for _ in range(5)])
    assert wait_for(lambda: len(members()) == 3, timeout=20)  # clamped at --max 3
    pids = [a["pid"] for a in members()]
    assert all(psutil.pid_exists(p) for p in pids)
    assert wait_for(lambda: all_final(godel, "auto", 5), timeout=60)
    assert wait_for(lambda: members() == [], timeout=20)  # after the window, back to 0
    assert wait_for(lambda: all(gone(p) for p in pids), timeout=15)
    audit = jrun(godel, "audit", "list", "--subject", "auto")
    decisions = [e for e in audit if e["action"] == "swarm.autoscale"]
    assert decisions[0]["result"] == "0->3"
    assert "5 ready or running tasks" in decisions[0]["payload"]["reason"]
    assert decisions[-1]["result"].endswith("->0")


def test_route_explain_and_strategy_change_at_run_time(godel: Godel) -> None:
    jrun(godel, "swarm", "create", "rt", "--count", "3", "--skills", "python")
    (stuck,) = submit(godel, "rt", "echo gpu", skills="gpu")
    (done,) = submit(godel, "rt", "echo ok", skills="python")
    assert wait_for(lambda: tasks(godel, "rt")[done]["status"] == "succeeded", timeout=20)

    explained = jrun(godel, "route", "explain", stuck)
    assert explained["now"]["chosen"] is None
    assert explained["now"]["reason"] == "no agent has skills gpu"
    rows = explained["now"]["candidates"]
    assert len(rows) == 3 and all(r["excluded"] == "missing skills: gpu" for r in rows)
    assert tasks(godel, "rt")[stuck]["status"] == "ready"

    ok = jrun(godel, "route", "explain", done)
    assert [p["result"] for p in ok["past"]] == [tasks(godel, "rt")[done]["lease_agent"]]
    assert ok["past"][0]["payload"]["strategy"] == "balanced"
    scored = [r for r in ok["now"]["candidates"] if r["score"] is not None]
    assert len(scored) == 3 and all(r["parts"] for r in scored)
    text = godel.run("route", "explain", done, check=True).stdout
    assert "AGENT" in text and "SCORE" in text and "Past decisions:" in text

    r = godel.run("swarm", "strategy", "rt", "teleport")
    assert r.returncode == 1 and "unknown routing strategy 'teleport'" in r.stderr
    godel.run("swarm", "strategy", "rt", "round-robin", check=True)
    ids = submit(godel, "rt", *[f"echo {i}" for i in range(6)], skills="python")
    assert wait_for(
        lambda: all(tasks(godel, "rt")[i]["status"] == "succeeded" for i in ids), timeout=30
    )
    routes = [
        e
        for e in jrun(godel, "audit", "list")
        if e["action"] == "task.route" and e["subject"] in ids
    ]
    assert {e["payload"]["strategy"] for e in routes} == {"round-robin"}
    assert len({e["result"] for e in routes}) == 3  # round-robin used every agent
    assert "round-robin" in jrun(godel, "route", "strategies")


def test_the_ejection_cap_keeps_a_pool_working(godel: Godel) -> None:
    cfg = godel.cwd / ".godel"
    cfg.mkdir()
    (cfg / "config.toml").write_text(
        "[health]\nfailure_threshold = 1\nopen_for_s = 60\nmax_open_s = 60\n"
        "max_ejection_percent = 10\n"
    )
    jrun(godel, "swarm", "create", "cap", "--count", "2")
    agents = [a["id"] for a in jrun(godel, "swarm", "status", "cap")["agents"]]
    submit(godel, "cap", "exit 1", "exit 1", max_attempts="1")  # one failure on each agent
    assert wait_for(lambda: all_final(godel, "cap", 2), timeout=30)
    opened = [
        e["subject"]
        for e in jrun(godel, "audit", "list")
        if e["action"] == "agent.breaker" and e["result"] == "open"
    ]
    assert sorted(opened) == sorted(agents)  # both breakers are open...
    (good,) = submit(godel, "cap", "echo served")
    # ...but at most 10 % (at least one) of the pool may be out: the other still serves.
    assert wait_for(lambda: tasks(godel, "cap")[good]["status"] == "succeeded", timeout=15)
