"""``godel task wait`` and ``godel task submit --wait``: block until tasks are final.

The daemon does the waiting (``task.wait``, driven by ``task.changed`` events) and
streams counts by status; this side draws them as one updating line on stderr when it
is a terminal, and exits with the tasks' outcome: 0 if every task succeeded, 1 if any
failed or was cancelled, 124 (as ``timeout(1)``) if ``--timeout`` ran out first.
A wait only reads: it never starts a stopped daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

import click

from core.cli.common import EXIT_NOT_RUNNING, Ctx, call, echo_json, fail
from core.errors import DaemonError

EXIT_TIMEOUT = 124
FINAL = ("succeeded", "failed", "cancelled")
# The order statuses are shown in: where a task is headed, left to right.
ORDER = ("queued", "ready", "running", "succeeded", "failed", "cancelled")
SHOW_PROBLEMS = 20  # failed or cancelled tasks named after the summary


def count_text(counts: dict[str, int]) -> str:
    """``2 running, 1 ready`` in ``ORDER``; statuses with no task left out."""
    known = [s for s in ORDER if counts.get(s)]
    other = sorted(s for s in counts if s not in ORDER and counts[s])
    return ", ".join(f"{counts[s]} {s}" for s in [*known, *other])


def progress_line(total: int, counts: dict[str, int], elapsed_s: float) -> str:
    final = sum(counts.get(s, 0) for s in FINAL)
    return f"waiting: {final}/{total} final ({count_text(counts)}), {elapsed_s:.0f}s"


class Progress:
    """One line on stderr, redrawn on each update and every second (for the clock)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self._drawn = False

    def update(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        stranded = data.get("stranded")
        if isinstance(stranded, dict) and stranded:
            self.clear()
            for task_id, why in list(stranded.items())[:SHOW_PROBLEMS]:
                click.echo(f"godel: {task_id} cannot run now: {why}", err=True)
        if isinstance(data.get("counts"), dict):
            self.counts = data["counts"]
            self.draw()

    def draw(self) -> None:
        if not self.enabled or not self.counts:
            return
        line = progress_line(self.total, self.counts, time.monotonic() - self.started)
        sys.stderr.write(f"\r{line}\x1b[K")
        sys.stderr.flush()
        self._drawn = True

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.draw()

    def clear(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._drawn = False


def summary(tasks: list[dict[str, Any]], elapsed_s: float) -> list[str]:
    """What a wait prints when every task is final."""
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    took = f"({elapsed_s:.1f}s)"
    if counts.get("succeeded", 0) == len(tasks):
        if len(tasks) == 1:
            return [f"Task {tasks[0]['id']} succeeded {took}"]
        return [f"All {len(tasks)} tasks succeeded {took}"]
    lines = [f"{len(tasks)} tasks final: {count_text(counts)} {took}"]
    problems = [t for t in tasks if t["status"] != "succeeded"]
    for t in problems[:SHOW_PROBLEMS]:
        lines.append(f"  {t['id']} {t['status']}: {t.get('error') or 'no reason recorded'}")
    if len(problems) > SHOW_PROBLEMS:
        lines.append(
            f"  ... and {len(problems) - SHOW_PROBLEMS} more "
            "(`godel task list --status failed`, `--status cancelled`)"
        )
    return lines


async def wait_tasks(ctx: Ctx, ids: list[str], timeout: float | None, as_json: bool) -> int:
    """Wait for ``ids``, print the outcome, and return the exit code."""
    progress = Progress(len(dict.fromkeys(ids)), enabled=sys.stderr.isatty())
    ticker = asyncio.create_task(progress.tick())
    try:
        params: dict[str, Any] = {"ids": ids}
        if timeout is not None:
            params["timeout"] = timeout
        try:
            result = await call(ctx, "task.wait", params, on_stream=progress.update, start=False)
        except DaemonError as e:
            progress.clear()
            fail(
                f"{e.message}; the tasks keep their state: wait again once a daemon runs",
                EXIT_NOT_RUNNING,
            )
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        progress.clear()
    tasks: list[dict[str, Any]] = result["tasks"]
    if as_json:
        echo_json(tasks)
    if result["timed_out"]:
        waiting = {t["status"]: 0 for t in tasks if t["status"] not in FINAL}
        for t in tasks:
            if t["status"] in waiting:
                waiting[t["status"]] += 1
        left = sum(waiting.values())
        fail(
            f"timed out after {timeout:g}s: {left} of {len(tasks)} tasks not final yet "
            f"({count_text(waiting)}); they stay queued, wait again with `godel task wait`",
            EXIT_TIMEOUT,
        )
    if not as_json:
        for line in summary(tasks, float(result["elapsed_s"])):
            click.echo(line)
    return 0 if all(t["status"] == "succeeded" for t in tasks) else 1
