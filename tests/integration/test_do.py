"""``godel do`` through the real CLI, against a real daemon and real git repositories:
shell agents editing files in their worktrees, gates, merges into the base, overlaps,
and the exit codes 0, 1 and 2."""

from __future__ import annotations

import json
import queue
import shlex
import signal
import subprocess
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Godel, gone, wait_for
from tests.gitrepo import GIT_ENV, git, init_repo


@pytest.fixture
def repo(godel: Godel) -> Path:
    godel.env |= GIT_ENV  # the daemon (started with this env) commits too
    # The gate: every task's files are there (a Makefile's `make test`, in small).
    files = {"README": "scratch\n", "gate": "#!/bin/sh\ntest ! -e broken.txt\n"}
    return init_repo(godel.cwd, files, executable={"gate"})


def plan(godel: Godel, tasks: list[dict[str, Any]], name: str = "plan.json") -> str:
    path = godel.cwd.parent / name
    path.write_text(json.dumps({"tasks": tasks}))
    return str(path)


def do(godel: Godel, plan_file: str, *extra: str) -> tuple[int, dict[str, Any]]:
    r = godel.run("do", "make files", "--plan", plan_file, "--gate", "./gate", "--json", *extra)
    assert r.stdout, r.stderr
    # One do.* event per line, as published; the last, do.finished, carries the report.
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["type"] for e in events[:2]] == ["do.started", "do.planned"]
    assert all(e["type"] == "do.step" for e in events[2:-1])
    assert events[-1]["type"] == "do.finished"
    assert events[-1]["exit_code"] == r.returncode
    return r.returncode, events[-1]["report"]


def test_tasks_run_in_worktrees_and_merge_into_the_base(godel: Godel, repo: Path) -> None:
    before = git(repo, "rev-parse", "main")
    p = plan(
        godel,
        [
            {"name": "a", "input": "echo a > a.txt"},
            {"name": "b", "input": "echo b > b.txt"},
            {"name": "c", "input": "cat a.txt b.txt > c.txt", "depends_on": ["a", "b"]},
        ],
    )
    code, report = do(godel, p, "--agents", "2")
    assert code == 0, report
    assert report["outcome"] == "merged" and report["base_before"] == before
    assert report["base_after"] == git(repo, "rev-parse", "main")
    tasks = {t["task"]: t for t in report["tasks"]}
    assert {n: t["files"] for n, t in tasks.items()} == {
        "a": ["a.txt"],
        "b": ["b.txt"],
        "c": ["c.txt"],
    }
    for t in tasks.values():
        assert t["merged"] and t["gate"]["passed"] and t["worktree"] is None
        assert t["tokens"] is None and t["cost_usd"] is None  # shell: no model, no price
        # The task's commit is on its branch and in the base now.
        assert git(repo, "rev-parse", t["branch"]) == t["head"]
        git(repo, "merge-base", "--is-ancestor", t["head"], "main")
    # c ran after a and b were merged: its worktree had both files.
    assert (repo / "c.txt").read_text() == "a\nb\n"
    assert git(repo, "status", "--porcelain") == ""
    # The agents were spawned for the run and killed after it.
    agents = json.loads(godel.run("agent", "list", "--all", "--json", check=True).stdout)
    assert {a["id"] for a in agents} >= {t["agent"] for t in tasks.values()}
    assert all(a["status"] != "idle" for a in agents)


def test_a_task_failing_its_gate_is_not_merged_and_exits_1(godel: Godel, repo: Path) -> None:
    p = plan(
        godel,
        [
            {"name": "good", "input": "echo ok > ok.txt"},
            {"name": "bad", "input": "echo no > broken.txt"},
            {"name": "after", "input": "echo x > x.txt", "depends_on": ["bad"]},
        ],
    )
    code, report = do(godel, p)
    assert code == 1 and report["outcome"] == "failed"
    tasks = {t["task"]: t for t in report["tasks"]}
    assert tasks["good"]["merged"]
    bad = tasks["bad"]
    assert not bad["merged"] and not bad["gate"]["passed"]
    assert bad["reason"].startswith("the gate `./gate` failed (exit 1)")
    assert Path(bad["worktree"]).is_dir()  # kept for a look
    assert tasks["after"]["reason"] == "not run: its dependency bad was not merged"
    assert (repo / "ok.txt").exists() and not (repo / "broken.txt").exists()


def test_two_tasks_editing_one_file_are_reported_as_overlapping(godel: Godel, repo: Path) -> None:
    p = plan(
        godel,
        [
            {"name": "one", "input": "echo one > same.txt"},
            {"name": "two", "input": "echo two > same.txt"},
        ],
    )
    code, report = do(godel, p, "--strategy", "fast")
    assert code == 1
    (overlap,) = report["overlaps"]
    assert overlap["tasks"] == ["one", "two"] and overlap["files"] == ["same.txt"]
    assert overlap["conflict"] is True
    assert not any(t["merged"] for t in report["tasks"])
    assert all("overlaps" in t["reason"] for t in report["tasks"])
    # Text mode says it too.
    code2 = godel.run("do", "again", "--plan", p)
    assert code2.returncode == 1
    assert "overlap: " in code2.stdout


def test_usage_errors_exit_2_with_one_line(godel: Godel, repo: Path, tmp_path: Path) -> None:
    p = plan(godel, [{"name": "a", "input": "true"}])
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    r = subprocess.run(
        godel.cmd("do", "x", "--plan", p), cwd=elsewhere, env=godel.env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "is not a git repository" in r.stderr

    r = godel.run("do", "x")
    assert r.returncode == 2 and r.stderr.startswith("godel: nothing to plan with: pass --plan")

    bad = plan(godel, [{"name": "a", "input": "true", "depends_on": ["zz"]}], "bad.json")
    r = godel.run("do", "x", "--plan", bad)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'zz'" in r.stderr

    r = godel.run("do", "x", "--plan", p, "--dry-run")
    assert r.returncode == 0
    shown = r.stdout.splitlines()
    assert shown == ["1. a: true", "running cost: none (shell agents have no price)"]
    assert godel.daemon_pid() is None  # none of this needed the daemon


def test_the_demo_plans_edits_retries_and_merges_under_a_budget(godel: Godel) -> None:
    """`godel demo --headless` (what `make demo` runs off a terminal): the scripted model
    plans three tasks for shell, native and pi agents, each edits its worktree, the
    native task fails its gate once and is retried with the gate's output, all merge,
    the spend is charged to the budget, and the recording holds the run."""
    from core.events import DoFinished, read_recording

    r = godel.run("demo", "--headless", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "plan (model scripted): 3 tasks in 2 levels" in out
    assert "tests: gate `sh check.sh` failed (exit 1) in its worktree" in out
    assert "tests: retrying once with the gate's output" in out
    assert "tests [native]: merged (retried once)" in out
    assert "calc [shell]: merged" in out and "notes [pi]: merged" in out
    assert "merged (exit 0)" in out and "audit chain intact" in out
    repo = godel.home / "demo-repo"
    assert "return a + b" in (repo / "calc.py").read_text()
    assert "add(2, 3), 5" in (repo / "test_calc.py").read_text()  # the retry's fix
    assert (repo / "NOTES.md").exists()
    assert subprocess.run(["sh", "check.sh"], cwd=repo, capture_output=True).returncode == 0
    assert git(repo, "status", "--porcelain") == ""
    # The budget was charged what the planner and the model agents spent (shell: none).
    shown = [ln for ln in out.splitlines() if ln.startswith("project  $0.50")]
    budget_line = shown[-1]  # `godel budget show`, after the run
    spent = budget_line.split()[2]
    assert spent.startswith("$0.00") and spent != "$0.00"
    finished = [e for e in read_recording(godel.home / "demo.rec") if isinstance(e, DoFinished)]
    assert [(e.outcome, e.exit_code) for e in finished] == [("merged", 0)]


# --- interrupting a run ---------------------------------------------------------------------


class Lines:
    """A process's stdout read on a thread, one JSON object a line, so the test can wait
    for a line (the timeout is only a safety net: the test waits for the line itself)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)  # the end of the stream

    def end(self, timeout: float = 120) -> None:
        """Wait for the end of the stream (what is left in it is dropped)."""
        while True:
            try:
                if self.lines.get(timeout=timeout) is None:
                    return
            except queue.Empty:
                raise AssertionError(f"the stream did not end within {timeout:g}s") from None

    def until(self, predicate: Any, what: str, timeout: float = 120) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while True:
            try:
                item = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {what} within {timeout:g}s; saw {seen}") from None
            assert item is not None, f"the stream ended before {what}; saw {seen}"
            seen.append(item)
            if predicate(item):
                return seen


def start_sleeper(godel: Godel, *extra: str) -> tuple[Lines, dict[str, Any]]:
    """``godel do`` on one task that blocks, once its command runs: the process, and what
    its events said (the run id, the worktree, the agent, the blocked command's pid)."""
    # The task writes its own pid, then becomes `sleep`: the pid is the blocked command's.
    p = plan(godel, [{"name": "sleeper", "input": "sh -c 'echo $$ > started; exec sleep 600'"}])
    out = Lines(godel.popen("do", "wait", "--plan", p, "--json", *extra))
    seen = out.until(lambda e: e["type"] == "do.step" and e["step"] == "agent", "the agent's step")
    run = seen[0]["run"]
    (where,) = [e["line"] for e in seen if e.get("step") == "worktree"]
    worktree = Path(where.split(" worktree ", 1)[1].split(" on ", 1)[0])
    started = worktree / "started"
    # The exec's command is under way once it wrote its pid (no event says so: poll).
    assert wait_for(lambda: started.exists() and started.read_text().strip(), timeout=120)
    info = {
        "run": run,
        "worktree": worktree,
        "branch": f"godel/{run}/sleeper",
        "agent": seen[-1]["agent_id"],
        "pid": int(started.read_text()),
    }
    assert psutil.pid_exists(info["pid"])
    return out, info


def interrupted(out: Lines) -> None:
    """Ctrl-C: exit 130 with one line."""
    out.proc.send_signal(signal.SIGINT)
    out.end()
    assert out.proc.wait(timeout=120) == 130
    assert out.proc.stderr is not None
    err = out.proc.stderr.read()
    assert err == (
        "godel: interrupted: the run stops and its agents are killed; unmerged worktrees "
        "and branches are kept\n"
    )


def test_ctrl_c_kills_the_agents_keeps_the_worktrees_and_exits_130(
    godel: Godel, repo: Path
) -> None:
    out, run = start_sleeper(godel)
    interrupted(out)
    # The daemon saw its caller go away: it published do.finished "interrupted".
    follower = Lines(godel.popen("events", "--follow", "--json", "--type", "do.finished"))
    (finished,) = follower.until(lambda e: e["run"] == run["run"], "do.finished")[-1:]
    follower.proc.send_signal(signal.SIGINT)
    follower.end()
    follower.proc.wait(timeout=60)
    assert (finished["outcome"], finished["exit_code"]) == ("interrupted", 130)
    assert finished["message"].startswith("interrupted: its agents were killed")
    audit = json.loads(
        godel.run("audit", "list", "--subject", run["run"], "--json", check=True).stdout
    )
    assert [(e["action"], e["result"]) for e in audit if e["action"] == "do.finish"] == [
        ("do.finish", "interrupted")
    ]
    # The agent was killed, and its blocked command with it.
    agents = json.loads(godel.run("agent", "list", "--all", "--json", check=True).stdout)
    (agent,) = [a for a in agents if a["id"] == run["agent"]]
    assert agent["status"] == "stopped", agent
    # Its processes end as the kill's signals land (no event says when: poll).
    assert agent["pid"] is None or wait_for(lambda: gone(agent["pid"]), timeout=60)
    assert wait_for(lambda: gone(run["pid"]), timeout=60)
    # Its worktree and branch are kept, for a look.
    assert (run["worktree"] / "started").exists()
    git(repo, "rev-parse", "--verify", run["branch"])
    assert git(repo, "rev-parse", run["branch"]) == git(repo, "rev-parse", "main")


def test_ctrl_c_of_an_embedded_run_exits_130_the_same_way(godel: Godel, repo: Path) -> None:
    out, run = start_sleeper(godel, "--embedded")
    interrupted(out)
    assert godel.daemon_pid() is None  # the engine ran in the command
    assert wait_for(lambda: gone(run["pid"]), timeout=60)
    assert (run["worktree"] / "started").exists()
    git(repo, "rev-parse", "--verify", run["branch"])
    # The engine stopped with the command; its store says what happened.
    godel.run("daemon", "start", check=True)
    audit = json.loads(
        godel.run("audit", "list", "--subject", run["run"], "--json", check=True).stdout
    )
    assert [e["result"] for e in audit if e["action"] == "do.finish"] == ["interrupted"]
    agents = json.loads(godel.run("agent", "list", "--all", "--json", check=True).stdout)
    (agent,) = [a for a in agents if a["id"] == run["agent"]]
    assert agent["status"] == "stopped", agent


# --- budgets ------------------------------------------------------------------------------


def test_a_budget_that_cannot_take_every_task_stops_the_run_with_exit_3(
    godel: Godel, repo: Path
) -> None:
    from core.config.builtin import BUILTIN_CONFIG
    from core.engine.budgets import ESTIMATE

    prices = BUILTIN_CONFIG["models"]["scripted"]
    estimate = (
        ESTIMATE.input_tokens * Decimal(prices["input_per_mtok"])
        + ESTIMATE.output_tokens * Decimal(prices["output_per_mtok"])
    ) / 10**6
    # One exec's estimate and a little more: the first task's reservation fits, and once
    # it has spent its (few hundred tokens') share, the next estimate no longer does.
    limit = estimate + Decimal("0.00005")
    p = plan(
        godel,
        [
            {"name": "first", "input": "write first.txt: one"},
            {"name": "second", "input": "write second.txt: two"},
            {"name": "third", "input": "write third.txt: three"},
        ],
    )
    code, report = do(
        godel, p, "--runtime", "native", "--model", "scripted", "--budget", str(limit),
        "--gate", "true",
    )  # fmt: skip
    assert code == 3 and report["outcome"] == "budget_exhausted", report
    tasks = {t["task"]: t for t in report["tasks"]}
    first = tasks.pop("first")
    assert first["merged"] and Decimal(first["cost_usd"]) > limit - estimate
    assert (repo / "first.txt").read_text() == "one"
    for t in tasks.values():
        assert not t["merged"] and t["budget_exhausted"]
        assert t["reason"].startswith("the agent's exec was refused: budget exhausted:"), t
        assert t["execs"] == [] and t["cost_usd"] is None
    assert not (repo / "second.txt").exists() and not (repo / "third.txt").exists()
    (budget,) = json.loads(godel.run("budget", "show", "--json", check=True).stdout)
    assert budget["scope"] == "project" and Decimal(budget["limit"]) == limit
    assert Decimal(budget["reserved"]) == 0
    assert Decimal(budget["spent"]) == Decimal(first["cost_usd"])
    assert Decimal(budget["spent"]) <= limit + estimate


# --- merge strategies ---------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["careful", "fast"])
def test_careful_gates_each_merge_and_fast_gates_once(
    godel: Godel, repo: Path, strategy: str
) -> None:
    # The gate logs where it runs: in a task's worktree, or on the base (`.merge`).
    log = godel.cwd.parent / "gates.log"
    p = plan(
        godel,
        [{"name": "a", "input": "echo a > a.txt"}, {"name": "b", "input": "echo b > b.txt"}],
    )
    gate = f"pwd >> {shlex.quote(str(log))} && ./gate"
    code, report = do(godel, p, "--agents", "2", "--strategy", strategy, "--gate", gate)
    assert code == 0 and report["outcome"] == "merged", report
    ran = log.read_text().splitlines()
    assert sorted(Path(line).name for line in ran) == sorted(
        ["a", "b", *[".merge"] * (2 if strategy == "careful" else 1)]
    )
    tasks = {t["task"]: t for t in report["tasks"]}
    assert all(t["merged"] for t in tasks.values())
    commits = {t["merge_commit"] for t in tasks.values()}
    if strategy == "careful":  # one at a time, each behind its own gate run
        assert len(commits) == 2
        assert {t["reason"] for t in tasks.values()} == {"merged; the gate passed"}
    else:  # together, behind one gate run
        assert commits == {report["base_after"]}
        assert {t["reason"] for t in tasks.values()} == {"merged with the others; the gate passed"}
    assert report["base_after"] == git(repo, "rev-parse", "main")
    assert (repo / "a.txt").exists() and (repo / "b.txt").exists()


def test_fast_merges_what_does_not_overlap_and_leaves_a_conflict_alone(
    godel: Godel, repo: Path
) -> None:
    p = plan(
        godel,
        [
            {"name": "one", "input": "echo one > same.txt"},
            {"name": "two", "input": "echo two > same.txt"},
            {"name": "free", "input": "echo free > free.txt"},
        ],
    )
    code, report = do(godel, p, "--strategy", "fast", "--agents", "3")
    assert code == 1 and report["outcome"] == "failed"
    tasks = {t["task"]: t for t in report["tasks"]}
    assert tasks["free"]["merged"]
    (overlap,) = report["overlaps"]
    assert overlap["conflict"] is True and overlap["conflict_files"] == ["same.txt"]
    for name in ("one", "two"):
        t = tasks[name]
        assert not t["merged"] and "not merged by the fast strategy" in t["reason"]
        # Nothing was resolved: each branch still holds its own version, in its worktree.
        assert git(repo, "show", f"{t['branch']}:same.txt") == name
        assert (Path(t["worktree"]) / "same.txt").read_text() == f"{name}\n"
    assert not (repo / "same.txt").exists() and (repo / "free.txt").read_text() == "free\n"
    assert git(repo, "status", "--porcelain") == ""


# --- without a daemon ---------------------------------------------------------------------


def test_an_embedded_run_needs_no_daemon_and_records_the_run(godel: Godel, repo: Path) -> None:
    from core.events import DoFinished, DoStep, read_recording

    rec = godel.cwd.parent / "run.rec"
    p = plan(godel, [{"name": "a", "input": "echo a > a.txt"}])
    code, report = do(godel, p, "--embedded", "--record", str(rec))
    assert code == 0 and report["outcome"] == "merged", report
    assert (repo / "a.txt").read_text() == "a\n"
    assert godel.daemon_pid() is None
    events = list(read_recording(rec))
    finished = [e for e in events if isinstance(e, DoFinished)]
    assert [(e.run, e.outcome, e.exit_code) for e in finished] == [(report["run"], "merged", 0)]
    assert {e.step for e in events if isinstance(e, DoStep)} >= {"agent", "exec", "merge"}

    # With no home given, the engine's home is a temporary one, removed afterwards.
    tmp = godel.cwd.parent / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in godel.env.items() if k != "GODEL_HOME"} | {"TMPDIR": str(tmp)}
    p2 = plan(godel, [{"name": "b", "input": "echo b > b.txt"}], "plan2.json")
    r = subprocess.run(
        godel.cmd("do", "more", "--plan", p2, "--embedded"), cwd=repo, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "merged (exit 0)"
    assert (repo / "b.txt").read_text() == "b\n"
    assert not [p for p in tmp.iterdir() if p.name.startswith("godel-do-")]


# --- the planner --------------------------------------------------------------------------


def test_without_a_plan_the_model_plans_and_a_native_agent_runs_it(
    godel: Godel, repo: Path
) -> None:
    intent = "write hello.txt: hi"
    r = godel.run(
        "do", intent, "--model", "scripted", "--runtime", "native", "--gate", "test -f hello.txt",
        "--json", timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    planned = events[1]
    assert planned["type"] == "do.planned" and planned["source"] == "model scripted"
    assert [(t["name"], t["input"], t["runtime"]) for t in planned["tasks"]] == [
        ("task", intent, "native")
    ]
    assert planned["tokens"] > 0 and Decimal(planned["cost_usd"]) > 0
    report = events[-1]["report"]
    assert report["outcome"] == "merged" and report["plan_source"] == "model scripted"
    (task,) = report["tasks"]
    assert task["merged"] and task["files"] == ["hello.txt"] and task["gate"]["passed"]
    assert task["tokens"] > 0 and Decimal(task["cost_usd"]) > 0
    assert (repo / "hello.txt").read_text() == "hi"

    # A dry run now estimates running a plan from what this daemon measured: the mean
    # cost of scripted's execs (here, the one above), one exec per task.
    plan_file = plan(godel, [{"name": "a", "input": "write a.txt: a"}] * 1)
    r = godel.run(
        "do", "x", "--plan", plan_file, "--runtime", "native", "--model", "scripted",
        "--dry-run", "--json", timeout=60,
    )  # fmt: skip
    estimate = json.loads(r.stdout)["estimate"]
    assert estimate["total_usd"] == task["cost_usd"]
    assert estimate["tasks"][0]["basis"] == "the mean of 1 measured exec of scripted"


def test_a_dry_run_without_a_plan_shows_the_models_plan_and_runs_nothing(
    godel: Godel, repo: Path
) -> None:
    r = godel.run("do", "write hello.txt: hi", "--model", "scripted", "--dry-run", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    first, planning, running = r.stdout.splitlines()
    assert first == "1. task: write hello.txt: hi"
    assert planning.startswith("planning cost: $") and "tokens, model scripted)" in planning
    assert running == "running cost: none (shell agents have no price)"  # --runtime: shell
    shown = json.loads(
        godel.run(
            "do", "write hello.txt: hi", "--model", "scripted", "--runtime", "native",
            "--dry-run", "--json", timeout=120,
        ).stdout
    )  # fmt: skip
    assert [t["input"] for t in shown["tasks"]] == ["write hello.txt: hi"]
    assert shown["planning"]["model"] == "scripted" and shown["planning"]["tokens"] > 0
    # Nothing measured yet on this daemon: unknown, not guessed.
    assert shown["running_cost"] == "unknown: no exec of scripted measured yet (task task)"
    assert shown["estimate"]["total_usd"] is None
    # Nothing ran: no agent, no branch, no file.
    assert json.loads(godel.run("agent", "list", "--all", "--json", check=True).stdout) == []
    assert git(repo, "branch", "--list", "godel/*") == ""
    assert not (repo / "hello.txt").exists()
    # Each plan asked for is on the audit log, with what it cost.
    entries = json.loads(godel.run("audit", "list", "--json", check=True).stdout)
    plans = [e for e in entries if e["action"] == "do.plan"]
    assert len(plans) == 2 and all(e["payload"]["model"] == "scripted" for e in plans)


# A scripted model whose planner never answers in time: planning is under way until the
# run is interrupted.
SLOW_PLANNER = """
[providers.slow-planner]
kind = "openai"
scripted = true
script = ".godel/slow-planner.json"

[models.slow-planner]
provider = "slow-planner"
id = "scripted"
input_per_mtok = "1"
output_per_mtok = "2"
"""
SLOW_PLANNER_SCRIPT = {
    "rules": [
        {
            "match": {"last": "user", "system_regex": "^You are the planner of Godel"},
            "reply": {"text": '{"tasks": []}', "delay_s": 600},
        }
    ]
}


def test_ctrl_c_while_planning_releases_the_planners_reservation(godel: Godel, repo: Path) -> None:
    (repo / ".godel").mkdir()
    (repo / ".godel" / "config.toml").write_text(SLOW_PLANNER)
    (repo / ".godel" / "slow-planner.json").write_text(json.dumps(SLOW_PLANNER_SCRIPT))
    godel.run("daemon", "start", check=True)
    budgets = Lines(godel.popen("events", "--follow", "--json", "--type", "budget.changed"))
    out = Lines(godel.popen("do", "x", "--model", "slow-planner", "--budget", "1", "--json"))
    (started,) = out.until(lambda e: e["type"] == "do.started", "do.started")
    # The planner's call reserved its estimate: planning is under way.
    budgets.until(
        lambda e: e["budget"]["scope"] == "project" and Decimal(e["budget"]["reserved"]) > 0,
        "the planner's reservation",
    )
    interrupted(out)
    finished = Lines(godel.popen("events", "--follow", "--json", "--type", "do.finished"))
    (done,) = finished.until(lambda e: e["run"] == started["run"], "do.finished")[-1:]
    assert done["outcome"] == "interrupted"
    for follower in (budgets, finished):
        follower.proc.send_signal(signal.SIGINT)
        follower.end()
        follower.proc.wait(timeout=60)
    # Nothing stays reserved for a call that will never be settled otherwise.
    (budget,) = json.loads(godel.run("budget", "show", "--json", check=True).stdout)
    assert Decimal(budget["reserved"]) == 0, budget
