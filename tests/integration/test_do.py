"""``godel do`` through the real CLI, against a real daemon and real git repositories:
shell agents editing files in their worktrees, gates, merges into the base, overlaps,
and the exit codes 0, 1 and 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Godel

IDENTITY = {
    "GIT_AUTHOR_NAME": "Godel Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Godel Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(godel: Godel) -> Path:
    godel.env |= IDENTITY
    repo = godel.cwd
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, env=godel.env)
    (repo / "README").write_text("scratch\n")
    # The gate: every task's files are there (a Makefile's `make test`, in small).
    (repo / "gate").write_text("#!/bin/sh\ntest ! -e broken.txt\n")
    (repo / "gate").chmod(0o755)
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=godel.env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=godel.env)
    return repo


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
