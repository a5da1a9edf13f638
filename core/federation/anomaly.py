"""Failure-spike alerts: ``AnomalyDetector`` turns per-runtime task outcomes into ``Anomaly``
events, once per spike episode (see its docstring for the rule).
"""

from __future__ import annotations

import math
from collections import deque

from core.events import Anomaly

__all__ = ["Anomaly", "AnomalyDetector"]


class _Series:
    """One runtime's outcome counts in time buckets: ``[bucket index, total, failures]``.

    ``recent`` holds the buckets of the last window, ``base`` the baseline buckets
    before it; both deques are bounded by the window sizes and the running sums are
    kept incrementally, so a record is amortised O(1) whatever the sample rate.
    """

    __slots__ = (
        "alerting",
        "base",
        "base_f",
        "base_n",
        "last_idx",
        "recent",
        "recent_f",
        "recent_n",
    )

    def __init__(self) -> None:
        self.recent: deque[list[int]] = deque()
        self.base: deque[list[int]] = deque()
        self.recent_n = 0
        self.recent_f = 0
        self.base_n = 0
        self.base_f = 0
        self.last_idx: int | None = None
        self.alerting = False


class AnomalyDetector:
    """Detects a failure-rate spike per runtime, once per episode.

    A spike: the failure rate over the last ``window_s`` (with at least ``min_samples``
    outcomes) is ``>= max(baseline_rate * factor, floor)``, where ``baseline_rate`` is
    the failure rate over the ``baseline_s`` before now *minus* the last window (so
    ``[now - baseline_s, now - window_s)``). A baseline with fewer than
    ``min_baseline_samples`` outcomes is too noisy to scale, so only ``floor`` applies.

    ``record`` returns an ``Anomaly`` when a spike starts and then stays quiet while it
    lasts; the runtime re-arms once its last-window rate is back under the threshold
    (or the window is empty). A window below ``min_samples`` neither alerts nor re-arms.

    Time is counted in ``resolution_s`` buckets, so window edges are exact to one bucket;
    memory per runtime is at most ``max_buckets`` buckets. ``now`` is any clock in
    seconds (``time.monotonic()`` in the engine); a ``now`` that goes backwards is
    counted in the newest bucket.
    """

    def __init__(
        self,
        *,
        window_s: float = 60.0,
        baseline_s: float = 900.0,
        min_samples: int = 10,
        factor: float = 3.0,
        floor: float = 0.2,
        min_baseline_samples: int = 10,
        resolution_s: float = 1.0,
    ) -> None:
        if window_s <= 0 or resolution_s <= 0 or resolution_s > window_s:
            raise ValueError("need 0 < resolution_s <= window_s")
        if baseline_s <= window_s:
            raise ValueError("baseline_s must be longer than window_s")
        if min_samples < 1 or min_baseline_samples < 0:
            raise ValueError("min_samples must be >= 1, min_baseline_samples >= 0")
        if factor <= 0 or not 0 < floor <= 1:
            raise ValueError("need factor > 0 and 0 < floor <= 1")
        self.window_s = window_s
        self.baseline_s = baseline_s
        self.min_samples = min_samples
        self.factor = factor
        self.floor = floor
        self.min_baseline_samples = min_baseline_samples
        self.resolution_s = resolution_s
        # The small epsilon keeps 60 / 1.0 at 60 buckets despite float rounding.
        self._w = max(1, math.ceil(window_s / resolution_s - 1e-9))
        self._b = max(1, math.ceil((baseline_s - window_s) / resolution_s - 1e-9))
        self._series: dict[str, _Series] = {}

    @property
    def max_buckets(self) -> int:
        """The most buckets one runtime can hold."""
        return self._w + self._b

    def buffered_buckets(self, runtime: str) -> int:
        """Buckets currently held for ``runtime`` (for memory checks)."""
        s = self._series.get(runtime)
        return 0 if s is None else len(s.recent) + len(s.base)

    def runtimes(self) -> list[str]:
        return list(self._series)

    def forget(self, runtime: str) -> None:
        self._series.pop(runtime, None)

    def record(self, runtime: str, ok: bool, now: float) -> Anomaly | None:
        """Add one task outcome for ``runtime``; an ``Anomaly`` if a spike starts now."""
        s = self._series.get(runtime)
        if s is None:
            s = self._series[runtime] = _Series()
        idx = self._advance(s, now)
        recent = s.recent
        if recent and recent[-1][0] == idx:
            bucket = recent[-1]
        else:
            bucket = [idx, 0, 0]
            recent.append(bucket)
        bucket[1] += 1
        s.recent_n += 1
        if not ok:
            bucket[2] += 1
            s.recent_f += 1
        return self._evaluate(runtime, s, now)

    def check(self, runtime: str, now: float) -> Anomaly | None:
        """Re-evaluate without a new outcome (lets an idle runtime re-arm as time passes)."""
        s = self._series.get(runtime)
        if s is None:
            return None
        self._advance(s, now)
        return self._evaluate(runtime, s, now)

    def _advance(self, s: _Series, now: float) -> int:
        idx = math.floor(now / self.resolution_s)
        if s.last_idx is not None and idx < s.last_idx:
            idx = s.last_idx
        s.last_idx = idx
        # Buckets at or before cut_recent have left the window and join the baseline.
        cut_recent = idx - self._w
        recent, base = s.recent, s.base
        while recent and recent[0][0] <= cut_recent:
            b = recent.popleft()
            s.recent_n -= b[1]
            s.recent_f -= b[2]
            base.append(b)
            s.base_n += b[1]
            s.base_f += b[2]
        cut_base = cut_recent - self._b
        while base and base[0][0] <= cut_base:
            b = base.popleft()
            s.base_n -= b[1]
            s.base_f -= b[2]
        return idx

    def _evaluate(self, runtime: str, s: _Series, now: float) -> Anomaly | None:
        n = s.recent_n
        if n == 0:
            s.alerting = False
            return None
        rate = s.recent_f / n
        baseline = s.base_f / s.base_n if s.base_n else 0.0
        scaled = baseline * self.factor if s.base_n >= self.min_baseline_samples else 0.0
        threshold = max(scaled, self.floor)
        if rate < threshold:
            s.alerting = False
            return None
        if n < self.min_samples or s.alerting:
            return None
        s.alerting = True
        return Anomaly(
            runtime=runtime,
            window_s=self.window_s,
            failure_rate=rate,
            baseline_rate=baseline,
            threshold=threshold,
            samples=n,
            failures=s.recent_f,
            baseline_samples=s.base_n,
            clock=now,
            message=(
                f"runtime {runtime!r}: {s.recent_f}/{n} tasks failed in the last "
                f"{self.window_s:g}s ({rate:.0%}), threshold {threshold:.0%}, "
                f"baseline {baseline:.1%} over {s.base_n} tasks"
            ),
        )
