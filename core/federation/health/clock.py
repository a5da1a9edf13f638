"""The injectable monotonic clock the health layer reads (``time.monotonic``, or a fake)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Clock"]

Clock = Callable[[], float]
"""Monotonic seconds; ``time.monotonic`` in production, a fake in tests."""
