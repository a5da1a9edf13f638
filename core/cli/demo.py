"""``godel demo``: ``godel do`` on a scratch repository, for real, on the scripted model.

The demo makes a small git repository (``<home>/demo-repo``) whose ``.godel/config.toml``
points the ``scripted`` model at ``core/llm/scripts/demo.json``, starts a daemon there,
sets a budget and runs ``godel do "<intent>"``: the planner (the scripted model) splits
the intent into three tasks for a shell, a native and a pi agent; each edits files in
its own worktree; a gate (``sh check.sh``: the Python compiles, the tests pass) checks
each; the native task's first test is wrong on purpose (the script's first answer), so
its gate fails and it is retried with the gate's output; everything is merged. Every
line printed is the engine's (``do.step`` events, the daemon's records) or the real
output of a command (``git log``). What the engine published is recorded to
``<home>/demo.rec``, which ``godel replay`` plays in the console.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from core.api.client import connect, start_daemon, stop_daemon
from core.audit import VerifyReport
from core.cli import render
from core.cli.budget_cmds import HEADERS as BUDGET_HEADERS
from core.cli.budget_cmds import budget_row
from core.cli.do_render import event_line, report_lines
from core.cli.recorder import Recorder
from core.paths import GodelPaths

INTENT = "add a calculator with a test and notes"
BUDGET = "0.50"

CHECK_SH = """#!/bin/sh
# The gate: every Python file compiles, and the tests pass.
set -e
for f in *.py; do [ -e "$f" ] || continue; python3 -m py_compile "$f"; done
if ls test_*.py >/dev/null 2>&1; then python3 -m unittest -q 2>&1; fi
echo "gate: ok"
"""

CONFIG = """# How `godel do` works in this repository (docs/do.md).
# The scripted model answers from the demo's script: offline, free of keys, the same
# every run. With a real model, name it here instead (docs/self-orchestration.md).
[providers.scripted]
kind = "openai"
scripted = true
script = "{script}"

[do]
model = "scripted"      # the planner's and the model agents' (shell tasks take none)
agents = 3
strategy = "careful"
gate = "sh check.sh"
"""

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Godel demo",
    "GIT_AUTHOR_EMAIL": "demo@godel.invalid",
    "GIT_COMMITTER_NAME": "Godel demo",
    "GIT_COMMITTER_EMAIL": "demo@godel.invalid",
}


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def script_path() -> Path:
    return Path(str(resources.files("core.llm") / "scripts" / "demo.json"))


def make_repo(root: Path) -> Path:
    """A fresh scratch repository at ``root`` (one made by an earlier demo is replaced)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "README.md").write_text("# calc\n\nA scratch repository for `godel demo`.\n")
    (root / "check.sh").write_text(CHECK_SH)
    (root / ".gitignore").write_text("__pycache__/\n")
    (root / ".godel").mkdir()
    (root / ".godel" / "config.toml").write_text(CONFIG.format(script=script_path()))
    env = {**os.environ, **GIT_IDENTITY}
    for args in (
        ["init", "-q", "-b", "main"],
        # The daemon commits each task: the repository carries who it commits as.
        ["config", "user.name", GIT_IDENTITY["GIT_AUTHOR_NAME"]],
        ["config", "user.email", GIT_IDENTITY["GIT_AUTHOR_EMAIL"]],
        ["add", "-A"],
        ["commit", "-qm", "A scratch repository for godel demo"],
    ):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return root


async def prepare(paths: GodelPaths, say: Callable[[str], None] = _print) -> Path:
    """The scratch repository, and a daemon for ``paths`` started from it (so that it
    loads the repository's .godel/config.toml). The console runs this before it starts,
    or it would start a daemon of its own from wherever it was run."""
    say(f"Godel demo: home {paths.home}")
    repo = make_repo(paths.home / "demo-repo")
    say(f"\n$ git init {repo}   (README.md, check.sh, .godel/config.toml)")
    # A daemon already running for this home has another config: the demo's own starts
    # from the repository.
    if await stop_daemon(paths) is not None:
        say("(stopped the daemon that ran for this home, to start one with the demo's config)")
    await start_daemon(paths, cwd=repo)
    return repo


async def run_demo(
    paths: GodelPaths,
    *,
    keep: bool,
    out: Callable[[str], None] | None = None,
    on_run: Callable[[str], None] | None = None,
    repo: Path | None = None,
) -> int:
    """Run the demo; 0 when every task merged and the audit chain verifies. ``repo``:
    what ``prepare`` made (None: prepare here). ``on_run`` gets the run's id as soon as
    the engine names it (the console opens its view)."""
    say = out or _print
    if repo is None:
        repo = await prepare(paths, say)
    record = paths.home / "demo.rec"
    backend = await connect(paths)
    recorder = await Recorder.start(backend, str(record))
    last_seq = 0
    try:
        say(f"\n$ godel budget set project {BUDGET}")
        b = await backend.call("budget.set", {"scope": "project", "amount": BUDGET})
        say(render.table(BUDGET_HEADERS, [budget_row(b)]))

        say(f'\n$ godel do "{INTENT}"')

        def on_stream(data: Any) -> None:
            nonlocal last_seq
            if not isinstance(data, dict):
                return
            last_seq = max(last_seq, int(data.get("seq") or 0))
            if data.get("type") == "do.started" and on_run is not None:
                on_run(str(data["run"]))
            line = event_line(data)
            if line is not None:
                say(line)

        request = {
            "intent": INTENT,
            "repo": str(repo),
            "plan": None,
            "planner_model": "scripted",
            "agents": 3,
            "strategy": "careful",
            "runtime": "shell",
            "model": "scripted",
            "gate": "sh check.sh",
        }
        report = await backend.call("do.run", request, on_stream)
        for line in report_lines(report):
            say(line)

        say("\n$ git log --oneline --graph")
        log = await asyncio.to_thread(
            subprocess.run,
            ["git", "log", "--oneline", "--graph"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        say(log.stdout.rstrip())

        say("\n$ godel budget show")
        budgets = await backend.call("budget.show")
        say(render.table(BUDGET_HEADERS, [budget_row(b) for b in budgets]))

        say("\n$ godel audit verify")
        verified = VerifyReport.model_validate(await backend.call("audit.verify"))
        say(verified.summary())
    finally:
        await recorder.stop(until_seq=last_seq)
        await backend.close()
    say(f"\nRecorded what the engine published: godel replay {record}")
    if not keep:
        say("\n$ godel daemon stop")
        pid = await stop_daemon(paths)
        say(f"Daemon stopped (pid {pid}); every agent process ended with it.")
    return 0 if report["exit_code"] == 0 and verified.ok else 1
