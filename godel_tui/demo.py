"""``godel demo`` on a terminal: the same real ``godel do`` run, watched in the console.

The demo's steps (``core.cli.demo.run_demo``) run as a worker of the app against the
daemon; its ``$ command`` lines and the run's outcome become notifications, and the
agents, their output, the run and the spend appear in the panes as the daemon reports
them.
"""

from __future__ import annotations

import asyncio

from core.api.client import stop_daemon
from core.cli.demo import run_demo
from core.paths import GodelPaths
from godel_tui.app import GodelApp


class DemoApp(GodelApp):
    def __init__(self, paths: GodelPaths) -> None:
        super().__init__(paths)
        self.result = 1

    def on_mount(self) -> None:
        # Textual calls GodelApp.on_mount too (handlers run for each class of the MRO).
        self.run_worker(self._demo(), name="demo", group="demo")

    def _say(self, text: str) -> None:
        line = text.strip()
        # The commands it runs and how it ends; the rest is what the panes show.
        if line.startswith("$ ") or line.startswith(
            ("audit chain", "Godel demo", "merged (exit", "failed (exit", "Recorded")
        ):
            self.notify(line, timeout=6, markup=False)

    async def _demo(self) -> None:
        self.result = await run_demo(self.paths, keep=True, out=self._say)
        self.notify(
            "demo finished: look around (? for keys); q quits and stops the daemon",
            timeout=30,
            markup=False,
        )


def run_in_console(paths: GodelPaths, *, keep: bool) -> int:
    app = DemoApp(paths)
    app.run()
    if not keep:
        pid = asyncio.run(stop_daemon(paths))
        print(f"Daemon stopped (pid {pid}); every agent process ended with it.")
    return app.result
