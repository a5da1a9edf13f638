"""The queue's rules that every store backend applies alike: backoff, capacity, text."""

from __future__ import annotations

import random

from core.models import ExecResult, ExecStatus, TaskPriority

PRIORITIES = list(TaskPriority)  # rank = index: 0 critical ... 3 low
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
WARN_FRACTION = 0.90  # an event warns
REFUSE_FRACTION = 0.95  # submit is refused
ACTIVE = ("queued", "ready", "running")
FINAL_FAILURES = ("failed", "cancelled")


def retry_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": U(cap/2, cap), cap = min(max, base * 2^n).

    Half the delay is kept so a retry never comes at once; the random half spreads
    tasks that failed together.
    """
    cap = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(cap / 2, cap)


def failure_text(result: ExecResult) -> str:
    if result.reason:
        return result.reason
    if result.exit_code is not None:
        return f"{result.status.value}: exit code {result.exit_code}"
    return result.status.value


def final_failure_text(result: ExecResult, attempts: int, retryable: bool) -> str:
    """Why a task is ``failed`` for good: after how many attempts, and the last reason."""
    why = failure_text(result)
    if not retryable and result.status is ExecStatus.ABORTED:
        return f"{why} (an aborted attempt is not retried)"
    if not retryable:
        return f"{why} (not retried)"
    if not result.reason and result.status is ExecStatus.FAILED and result.exit_code is not None:
        why = f"exit code {result.exit_code}"  # not "failed after 3 attempts: failed: ..."
    tries = "attempt" if attempts == 1 else "attempts"
    return f"failed after {attempts} {tries}: {why}"
