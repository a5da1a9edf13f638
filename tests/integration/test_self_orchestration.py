"""Godel working on itself: ``godel do`` in a scratch clone of this repository, driven by
the repository's own ``.godel/config.toml`` (pi agents, worktrees that borrow the
checkout's .venv, careful merges under a budget), with the scripted model in place of
the real one: the planner plans, a pi agent makes the change in its worktree, the gate
passes there and on the base, and the change is merged into the clone's branch.

The gate is the config's minus its slow half: the lint over the whole clone and one unit
test file, rather than the lint, types and every unit test (docs/self-orchestration.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import Godel
from tests.gitrepo import GIT_ENV, git

REPO = Path(__file__).resolve().parents[2]
INTENT = "write docs/glossary.md: A swarm is a group of agents that share a queue."
GATE = (
    ".venv/bin/ruff check . && "
    ".venv/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_events.py"
)


def test_godel_do_makes_a_change_to_a_clone_of_this_repository(
    godel: Godel, tmp_path: Path
) -> None:
    clone = tmp_path / "godel"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    config = clone / ".godel" / "config.toml"
    assert config.exists(), "the repository's .godel/config.toml is committed"
    # What `make setup` would make in the clone (its worktrees link to its .venv): this
    # checkout's, linked rather than installed again.
    (clone / ".venv").symlink_to(REPO / ".venv")
    (clone / "tools" / "pi" / "node_modules").symlink_to(REPO / "tools" / "pi" / "node_modules")
    before = git(clone, "rev-parse", "HEAD")
    # The code under test is this checkout's, whatever the clone holds.
    env = {**godel.env, **GIT_ENV, "PYTHONPATH": str(REPO)}

    r = subprocess.run(
        godel.cmd("do", INTENT, "--model", "scripted", "--gate", GATE, "--json"),
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    started, planned = events[0], events[1]
    assert started["type"] == "do.started" and started["strategy"] == "careful"  # the config's
    assert planned["source"] == "model scripted"
    assert [t["runtime"] for t in planned["tasks"]] == ["pi"]  # the config's runtime
    report = events[-1]["report"]
    (task,) = report["tasks"]
    assert task["merged"] and task["gate"]["passed"] and task["files"] == ["docs/glossary.md"]

    # The change is on the clone's branch, gated, and nothing else came with it.
    assert git(clone, "rev-parse", "HEAD") != before
    changed = git(clone, "diff", "--name-only", before, "HEAD").splitlines()
    assert changed == ["docs/glossary.md"]
    assert (clone / "docs" / "glossary.md").read_text().startswith("A swarm is a group")
    assert ".venv" not in git(clone, "ls-files")
    assert git(clone, "status", "--porcelain") == ""
    # The run was held to the config's budget, and what the pi agent spent was charged.
    budgets = json.loads(
        subprocess.run(
            godel.cmd("budget", "show", "--json"), cwd=clone, env=env, capture_output=True,
            text=True, timeout=60, check=True,
        ).stdout
    )  # fmt: skip
    (project,) = [b for b in budgets if b["scope"] == "project"]
    assert project["limit"] == "10.00" or float(project["limit"]) == 10.0
    assert float(project["spent"]) > 0 and float(project["reserved"]) == 0
    assert os.path.islink(clone / ".venv")
