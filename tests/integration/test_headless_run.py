"""``godel run PLAN.toml`` through the real CLI: against a daemon and embedded, its exit
codes (0, 1, 2, 3, 130), its JSON lines, its recording played back by the console's
replay index, and Ctrl-C cancelling the run's unfinished tasks."""

from __future__ import annotations

import json
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.events.recording import SNAPSHOT_TYPE, ReadStats, read_recording
from godel_tui.replay import RecordingIndex
from tests.conftest import Godel

PLAN = """
[[swarm]]
name = "builders"
runtime = "shell"
count = 2

[[task]]
name = "build"
input = "echo building"

[[task]]
name = "test"
input = "echo testing"
depends_on = ["build"]

[[task]]
name = "broken"
input = "exit 3"
max_attempts = 1

[[task]]
name = "after-broken"
input = "echo never"
depends_on = ["broken"]
"""

EXPECTED = {
    "build": "succeeded",
    "test": "succeeded",
    "broken": "failed",
    "after-broken": "failed",
}
KEYS = {
    "task.submitted": {"event", "task", "id", "status"},
    "task.started": {"event", "task", "id", "attempt", "agent"},
    "task.finished": {"event", "task", "id", "status", "attempts", "error"},
    "run.finished": {
        "event",
        "outcome",
        "exit_code",
        "counts",
        "cancelled",
        "elapsed_s",
        "tasks",
    },
}


def write(godel: Godel, name: str, text: str) -> Path:
    path = godel.cwd / name
    path.write_text(text)
    return path


def lines(stdout: str) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in stdout.splitlines()]
    for obj in out:
        assert set(obj) == KEYS[obj["event"]], obj
    return out


def final(out: list[dict[str, Any]]) -> dict[str, str]:
    assert out[-1]["event"] == "run.finished"
    return {t["task"]: t["status"] for t in out[-1]["tasks"]}


def test_a_plan_with_a_failure_exits_1_and_records_a_replayable_run(godel: Godel) -> None:
    plan = write(godel, "plan.toml", PLAN)
    rec = godel.cwd / "run.jsonl"
    r = godel.run("run", str(plan), "--record", str(rec))  # stdout a pipe: JSON lines
    assert r.returncode == 1, r.stderr
    out = lines(r.stdout)
    assert final(out) == EXPECTED
    summary = out[-1]
    assert summary["outcome"] == "failed" and summary["exit_code"] == 1
    assert summary["counts"] == {"succeeded": 2, "failed": 2}
    by_task = {t["task"]: t for t in summary["tasks"]}
    assert by_task["broken"]["error"] == "failed after 1 attempt: exit code 3"
    assert by_task["after-broken"]["error"].startswith("dependency ")
    # Every task was submitted once, and each that finished said so once.
    submitted = [o["task"] for o in out if o["event"] == "task.submitted"]
    assert sorted(submitted) == sorted(EXPECTED)
    finished = {o["task"]: o["status"] for o in out if o["event"] == "task.finished"}
    assert finished == EXPECTED
    # "test" started only after "build" finished: its dependency held it.
    order = [(o["event"], o.get("task")) for o in out]
    assert order.index(("task.finished", "build")) < order.index(("task.started", "test"))

    # The daemon agrees with what the run printed.
    for t in summary["tasks"]:
        got = json.loads(godel.run("task", "get", t["id"], "--json", check=True).stdout)
        assert got["status"] == t["status"]

    # The recording: a console snapshot line, then events the console's replay folds
    # into the same final task statuses.
    assert rec.stat().st_mode & 0o777 == 0o600
    assert json.loads(rec.read_text().splitlines()[0])["type"] == SNAPSHOT_TYPE
    stats = ReadStats()
    events = list(read_recording(rec, stats))
    assert stats.unknown_types == {SNAPSHOT_TYPE: 1} and not stats.malformed
    ids = {t["id"] for t in summary["tasks"]}
    assert ids <= {getattr(e, "task_id", None) for e in events if e.type == "task.changed"}
    idx = RecordingIndex.build(rec)
    assert idx.starts_with_snapshot
    end = idx.state_at(len(idx))
    replayed = {t.id: t.status for t in [*end.tasks_recent, *end.tasks_active] if t.id in ids}
    assert replayed == {t["id"]: t["status"] for t in summary["tasks"]}


def test_all_succeed_exits_0_and_embedded_ends_the_same(godel: Godel) -> None:
    ok = write(godel, "ok.toml", PLAN.replace('"exit 3"', '"true"'))
    r = godel.run("run", str(ok), "--json", "--max-parallel", "1", "--budget", "5")
    assert r.returncode == 0, r.stderr
    out = lines(r.stdout)
    assert set(final(out).values()) == {"succeeded"}
    assert out[-1]["outcome"] == "succeeded" and out[-1]["exit_code"] == 0
    # --max-parallel 1: each task started only once the one before it finished.
    events = [(o["event"], o.get("task")) for o in out if o["event"].startswith("task.s")]
    running = 0
    for kind, _task in [(o["event"], o.get("task")) for o in out]:
        running += {"task.started": 1, "task.finished": -1}.get(kind, 0)
        assert running <= 1
    assert len(events) == 8  # 4 submitted, 4 started
    (budget,) = json.loads(godel.run("budget", "show", "--json", check=True).stdout)
    assert budget["scope"] == "project" and budget["unit"] == "usd"
    r = godel.run("run", str(ok), "--budget", "ten")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "godel: --budget takes an amount of dollars (e.g. 10.00), got 'ten'\n"

    # Embedded, on a temporary home (no --home, no GODEL_HOME): the same final statuses,
    # and no daemon touched.
    plan = write(godel, "plan.toml", PLAN)
    env = {k: v for k, v in godel.env.items() if k != "GODEL_HOME"}
    embedded = Godel(home=godel.home, cwd=godel.cwd, env=env)
    pid = godel.daemon_pid()
    r = embedded.run("run", "--embedded", str(plan))
    assert r.returncode == 1, r.stderr
    assert final(lines(r.stdout)) == EXPECTED
    assert godel.daemon_pid() == pid


def test_a_bad_plan_exits_2_with_one_line(godel: Godel) -> None:
    cases = {
        'name = "a"\ninptu = "x"': "task[0].inptu: unknown key 'inptu' (did you mean 'input'?)",
        'name = "a"\ninput = "x"\ndepends_on = ["b"]': "task[0].depends_on[0]: no task named 'b'",
        'name = "a"\ninput = "x"\nmax_attempts = 0': "task[0].max_attempts: must be at least 1",
    }
    for body, problem in cases.items():
        plan = write(godel, "bad.toml", f"[[task]]\n{body}\n")
        r = godel.run("run", str(plan))
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.startswith(f"godel: {plan}: {problem}"), r.stderr
        assert r.stderr.count("\n") == 1
    cycle = write(
        godel,
        "cycle.toml",
        '[[task]]\nname = "a"\ninput = "x"\ndepends_on = ["b"]\n'
        '[[task]]\nname = "b"\ninput = "x"\ndepends_on = ["a"]\n',
    )
    r = godel.run("run", str(cycle))
    assert r.returncode == 2
    assert r.stderr == f"godel: {cycle}: task[0].depends_on: a dependency cycle: a -> b -> a\n"
    r = godel.run("run", str(godel.cwd / "missing.toml"))
    assert (r.returncode, r.stderr) == (2, f"godel: {godel.cwd / 'missing.toml'}: no such file\n")
    # Refused by the engine before anything is queued: a usage error too.
    rt = write(godel, "rt.toml", '[[task]]\nname = "a"\ninput = "x"\nruntime = "nope"\n')
    r = godel.run("run", str(rt))
    assert r.returncode == 2 and r.stderr.startswith("godel: unknown runtime 'nope'")
    assert r.stderr.count("\n") == 1


def test_ctrl_c_cancels_the_unfinished_tasks_and_exits_130(godel: Godel) -> None:
    plan = write(
        godel,
        "slow.toml",
        '[[swarm]]\nname = "slow"\ncount = 1\n'
        '[[task]]\nname = "sleeper"\ninput = "sleep 600"\n'
        '[[task]]\nname = "next"\ninput = "echo after"\ndepends_on = ["sleeper"]\n',
    )
    proc = godel.popen("run", str(plan), "--json")
    assert proc.stdout is not None and proc.stderr is not None
    seen: list[dict[str, Any]] = []
    for line in proc.stdout:  # until the sleeper runs: the proof it is under way
        seen.append(json.loads(line))
        if seen[-1]["event"] == "task.started":
            break
    assert seen[-1]["task"] == "sleeper"
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "godel: interrupted: cancelled 2 unfinished task(s) of the run\n"
    summary = json.loads(rest.splitlines()[-1])
    assert summary["outcome"] == "interrupted" and summary["cancelled"] == 2
    ids = {o["task"]: o["id"] for o in seen if o["event"] == "task.submitted"}
    ids.update({t["task"]: t["id"] for t in summary["tasks"]})
    for task_id in ids.values():
        got = json.loads(godel.run("task", "get", task_id, "--json", check=True).stdout)
        assert got["status"] == "cancelled"


# A model on the scripted server at $100 per million tokens: an exec's estimate (10,000
# tokens) is $1.00, and a 24,000-character prompt costs more than that in its first turn.
PRICEY = """
[models.pricey]
provider = "scripted"
id = "scripted"
input_per_mtok = "100"
output_per_mtok = "100"
"""
ESTIMATE_USD = Decimal("1.00")


def test_a_budget_spent_mid_run_exits_3(godel: Godel) -> None:
    (godel.cwd / ".godel").mkdir()
    (godel.cwd / ".godel" / "config.toml").write_text(PRICEY)
    big = "x" * 24_000
    plan = write(
        godel,
        "costly.toml",
        '[[swarm]]\nname = "coders"\nruntime = "native"\nmodel = "pricey"\ncount = 1\n'
        f'[[task]]\nname = "big"\ninput = "run: echo {big}"\nmax_attempts = 1\n'
        'priority = "critical"\n'  # taken first by the swarm's one agent
        '[[task]]\nname = "next"\ninput = "hello"\ndepends_on = ["big"]\n'
        '[[task]]\nname = "other"\ninput = "hello"\npriority = "low"\n',
    )
    # $1.00: exactly one estimate fits, and big's first turn spends past it.
    r = godel.run("run", str(plan), "--json", "--budget", "1.00", timeout=120)
    assert r.returncode == 3, (r.stdout, r.stderr)
    summary = lines(r.stdout)[-1]
    assert summary["outcome"] == "budget_exhausted" and summary["exit_code"] == 3
    assert final(lines(r.stdout)) == {"big": "failed", "next": "failed", "other": "failed"}
    by_task = {t["task"]: t["error"] for t in summary["tasks"]}
    # big was stopped at its second model call; other, waiting in the exhausted scope,
    # failed without starting; next with its dependency.
    assert "budget exhausted: project at $" in by_task["big"], by_task
    assert "(including this exec so far)" in by_task["big"]
    assert by_task["other"].startswith("budget exhausted: budget project: $"), by_task
    assert by_task["next"].startswith("dependency "), by_task
    started = {o["task"] for o in lines(r.stdout) if o["event"] == "task.started"}
    assert started == {"big"}

    (budget,) = json.loads(godel.run("budget", "show", "--json", check=True).stdout)
    spent, limit = Decimal(budget["spent"]), Decimal(budget["limit"])
    assert budget["scope"] == "project" and Decimal(budget["reserved"]) == 0
    assert spent >= limit  # the budget really was used up...
    assert spent - limit <= ESTIMATE_USD  # ...and overspent by less than one reservation
