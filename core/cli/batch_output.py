"""What ``godel run`` prints: JSON lines (``--json``, or stdout not a terminal), or a live
table on a terminal (rich).

JSON lines, one object per line on stdout, each with ``event`` (docs/headless.md):

- ``task.submitted``: ``task`` (the plan's name), ``id``, ``status``
- ``task.started``: ``task``, ``id``, ``attempt``, ``agent``
- ``task.finished``: ``task``, ``id``, ``status``, ``attempts``, ``error``
- ``run.finished`` (last): ``outcome``, ``exit_code``, ``counts`` (tasks by status),
  ``cancelled``, ``elapsed_s``, ``tasks`` (each: ``task``, ``id``, ``status``,
  ``attempts``, ``error``)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from core.cli.batch import Outcome, TaskState

STATUS_STYLE = {
    "pending": "dim",
    "queued": "dim",
    "ready": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}
ORDER = ("pending", "queued", "ready", "running", "succeeded", "failed", "cancelled")
MAX_ROWS = 40  # the live table shows the unfinished first, then the latest finished


def _finished(t: TaskState) -> dict[str, Any]:
    return {
        "task": t.name,
        "id": t.id,
        "status": t.status,
        "attempts": t.attempts,
        "error": t.error,
    }


class JsonLines:
    def _line(self, obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def submitted(self, t: TaskState) -> None:
        self._line({"event": "task.submitted", "task": t.name, "id": t.id, "status": t.status})

    def started(self, t: TaskState) -> None:
        self._line(
            {
                "event": "task.started",
                "task": t.name,
                "id": t.id,
                "attempt": t.attempts,
                "agent": t.agent,
            }
        )

    def finished(self, t: TaskState) -> None:
        self._line({"event": "task.finished", **_finished(t)})

    def done(self, outcome: Outcome) -> None:
        self._line(
            {
                "event": "run.finished",
                "outcome": outcome.outcome,
                "exit_code": outcome.exit_code,
                "counts": outcome.counts,
                "cancelled": outcome.cancelled,
                "elapsed_s": outcome.elapsed_s,
                "tasks": [_finished(t) for t in outcome.tasks],
            }
        )


class LiveTable:
    """The run's tasks by status, redrawn as they change (rich ``Live``)."""

    def __init__(self, states: list[TaskState]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.states = states
        self.began = time.monotonic()
        self.console = Console()
        self.live = Live(self._render(), console=self.console, refresh_per_second=4)
        self.live.start()

    def _render(self) -> Any:
        from rich.table import Table

        counts: dict[str, int] = {}
        for t in self.states:
            counts[t.status] = counts.get(t.status, 0) + 1
        summary = ", ".join(f"{counts[s]} {s}" for s in ORDER if counts.get(s))
        elapsed = time.monotonic() - self.began
        table = Table(title=f"godel run: {summary} ({elapsed:.0f}s)", title_justify="left")
        # The error gives way first on a narrow terminal: the others keep their width.
        for col, width in (("task", 12), ("status", 9), ("attempt", 7), ("agent", 12)):
            table.add_column(col, overflow="ellipsis", no_wrap=True, min_width=width)
        table.add_column("error", overflow="ellipsis", no_wrap=True, min_width=10)
        rows = sorted(self.states, key=lambda t: (t.final, ORDER.index(t.status)))[:MAX_ROWS]
        for t in rows:
            style = STATUS_STYLE.get(t.status, "")
            table.add_row(
                t.name,
                f"[{style}]{t.status}[/]" if style else t.status,
                str(t.attempts or ""),
                t.agent or "",
                t.error.splitlines()[0] if t.error else "",
            )
        if len(self.states) > MAX_ROWS:
            table.caption = f"... and {len(self.states) - MAX_ROWS} more"
        return table

    def _draw(self) -> None:
        self.live.update(self._render())

    def submitted(self, t: TaskState) -> None:
        self._draw()

    def started(self, t: TaskState) -> None:
        self._draw()

    def finished(self, t: TaskState) -> None:
        self._draw()

    def done(self, outcome: Outcome) -> None:
        self._draw()
        self.live.stop()
        took = f"({outcome.elapsed_s:.1f}s)"
        n = len(outcome.tasks)
        if outcome.outcome == "succeeded":
            self.console.print(f"All {n} tasks succeeded {took}", highlight=False)
        elif outcome.outcome == "interrupted":
            pass  # the one line on stderr says it
        else:
            failed = [t for t in outcome.tasks if t.status != "succeeded"]
            self.console.print(
                f"{len(failed)} of {n} tasks did not succeed {took}",
                style="bold red",
                highlight=False,
            )

    def stop(self) -> None:
        """Stop drawing (an error ends the run before ``done``)."""
        self.live.stop()
