"""What ``godel task wait`` prints: the progress line and the summary (pure functions)."""

from __future__ import annotations

from typing import Any

from core.cli.waiting import SHOW_PROBLEMS, count_text, progress_line, summary


def task(i: int, status: str, error: str = "") -> dict[str, Any]:
    return {"id": f"task-{i}", "status": status, "error": error}


def test_counts_read_in_the_order_tasks_move() -> None:
    counts = {"failed": 1, "ready": 2, "succeeded": 3, "running": 1, "mystery": 1, "queued": 0}
    assert count_text(counts) == "2 ready, 1 running, 3 succeeded, 1 failed, 1 mystery"
    assert progress_line(8, counts, 12.4) == (
        "waiting: 4/8 final (2 ready, 1 running, 3 succeeded, 1 failed, 1 mystery), 12s"
    )


def test_summary_names_what_did_not_succeed() -> None:
    assert summary([task(1, "succeeded")], 0.42) == ["Task task-1 succeeded (0.4s)"]
    assert summary([task(1, "succeeded"), task(2, "succeeded")], 3) == [
        "All 2 tasks succeeded (3.0s)"
    ]
    lines = summary([task(1, "succeeded"), task(2, "failed", "why"), task(3, "cancelled")], 1)
    assert lines == [
        "3 tasks final: 1 succeeded, 1 failed, 1 cancelled (1.0s)",
        "  task-2 failed: why",
        "  task-3 cancelled: no reason recorded",
    ]
    many = summary([task(i, "failed", "x") for i in range(SHOW_PROBLEMS + 5)], 1)
    assert len(many) == 1 + SHOW_PROBLEMS + 1
    assert many[-1].startswith("  ... and 5 more")
