"""``godel demo`` on a terminal: the same real ``godel do`` run, watched in the console.

``core.cli.demo.prepare`` makes the scratch repository and starts its daemon before the
console starts (so the console connects to that daemon rather than starting one of its
own); the demo's steps (``run_demo``) then run as a worker of the app. The runs view
opens as the run starts; its ``$ command`` lines and the run's outcome become
notifications, and the agents, their output, the run and the spend appear as the daemon
reports them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.api.client import stop_daemon
from core.cli.demo import prepare, run_demo
from core.paths import GodelPaths
from godel_tui.app import GodelApp
from godel_tui.screens.runs import RunsScreen


class DemoApp(GodelApp):
    def __init__(self, paths: GodelPaths, repo: Path) -> None:
        super().__init__(paths)
        self.repo = repo
        self.result = 1

    def on_mount(self) -> None:
        # Textual calls GodelApp.on_mount too (handlers run for each class of the MRO).
        self.run_worker(self._demo(), name="demo", group="demo")

    def _say(self, text: str) -> None:
        line = text.strip()
        # The commands it runs and how it ends; the rest is what the panes show.
        if line.startswith("$ ") or line.startswith(
            ("audit chain", "merged (exit", "failed (exit", "Recorded")
        ):
            self.notify(line, timeout=6, markup=False)

    def _show_run(self, _run: str) -> None:
        if not isinstance(self.screen, RunsScreen):
            self.action_runs()

    async def _demo(self) -> None:
        self.result = await run_demo(
            self.paths, keep=True, out=self._say, on_run=self._show_run, repo=self.repo
        )
        self.notify(
            "demo finished: look around (? for keys, D runs and agents); q quits and stops "
            "the daemon",
            timeout=30,
            markup=False,
        )


def run_in_console(paths: GodelPaths, *, keep: bool) -> int:
    repo = asyncio.run(prepare(paths))
    app = DemoApp(paths, repo)
    app.run()
    if not keep:
        pid = asyncio.run(stop_daemon(paths))
        print(f"Daemon stopped (pid {pid}); every agent process ended with it.")
    return app.result
