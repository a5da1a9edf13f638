"""The monotonic time source the health layer's pure logic reads (breakers, trackers,
restart policy): ``time.monotonic``, or a fake clock's ``monotonic`` in tests."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Monotonic"]

Monotonic = Callable[[], float]
"""Monotonic seconds."""
