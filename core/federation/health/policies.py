"""Pool-level health policies: the ejection cap and panic mode (``EjectionPolicy``), and
restart backoff with a hard cap for dead agents (``RestartPolicy``).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass, field

from core.config import HealthSettings
from core.federation.health.clock import Monotonic

__all__ = ["EjectionPolicy", "RestartPolicy"]


@dataclass(frozen=True)
class EjectionPolicy:
    """Caps how much of a pool may be ejected, and when to ignore health entirely."""

    max_ejection_percent: float = 10.0
    panic_threshold: float = 0.5  # fraction of healthy hosts; 0 disables panic

    @classmethod
    def from_settings(cls, settings: HealthSettings) -> EjectionPolicy:
        return cls(settings.max_ejection_percent, settings.panic_threshold)

    def max_ejected(self, pool_size: int) -> int:
        """Most hosts that may be ejected at once; at least one, as Envoy allows."""
        if pool_size <= 0:
            return 0
        # The small epsilon keeps 10 % of 30 at 3 despite float rounding.
        return max(1, math.floor(pool_size * self.max_ejection_percent / 100 + 1e-9))

    def may_eject(self, pool_size: int, currently_ejected: int) -> bool:
        return currently_ejected < self.max_ejected(pool_size)

    def in_panic(self, healthy: int, total: int) -> bool:
        """Fewer than ``panic_threshold`` healthy: route to all hosts to spare the survivors."""
        if total <= 0:
            return False
        return healthy / total < self.panic_threshold


# --- restarts --------------------------------------------------------------------------


@dataclass
class _RestartHistory:
    attempts: int = 0  # since the last reset: sets the backoff exponent
    times: deque[float] = field(default_factory=deque)  # within the window: the hard cap


class RestartPolicy:
    """Exponential backoff with jitter for restarting dead agents, with a hard cap.

    ``reset`` restarts the backoff but keeps the window's history, so an agent that
    crashes shortly after each reset still hits ``max_restarts`` and stays failed.
    """

    def __init__(
        self,
        settings: HealthSettings | None = None,
        *,
        clock: Monotonic = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or HealthSettings()
        self._clock = clock
        self._rng = rng or random.Random()
        self._agents: dict[str, _RestartHistory] = {}

    def _history(self, agent_id: str) -> _RestartHistory:
        h = self._agents.setdefault(agent_id, _RestartHistory())
        horizon = self._clock() - self.settings.restart_window_s
        while h.times and h.times[0] <= horizon:
            h.times.popleft()
        return h

    def restarts_in_window(self, agent_id: str) -> int:
        return len(self._history(agent_id).times)

    def next_delay(self, agent_id: str) -> float | None:
        """Seconds to wait before the next restart, or None to give up (status failed)."""
        s = self.settings
        h = self._history(agent_id)
        if len(h.times) >= s.max_restarts:
            return None
        raw = min(s.restart_max_s, s.restart_base_s * s.restart_factor**h.attempts)
        # Jitter only shortens, so the cap holds and synchronized crashes spread out.
        return raw * (1.0 - s.restart_jitter * self._rng.random())

    def give_up_reason(self, agent_id: str) -> str:
        s = self.settings
        return (
            f"restarted {self.restarts_in_window(agent_id)} times in "
            f"{s.restart_window_s:g}s (limit {s.max_restarts}); not restarting again"
        )

    def record_restart(self, agent_id: str) -> None:
        h = self._history(agent_id)
        h.attempts += 1
        h.times.append(self._clock())

    def reset(self, agent_id: str) -> None:
        """The agent stayed healthy: the next crash starts from the base delay again."""
        h = self._agents.get(agent_id)
        if h is not None:
            h.attempts = 0

    def reset_if_stable(self, agent_id: str, healthy_since: float) -> bool:
        """``reset`` if healthy since ``healthy_since`` for ``restart_reset_after_s``."""
        if self._clock() - healthy_since >= self.settings.restart_reset_after_s:
            self.reset(agent_id)
            return True
        return False

    def forget(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)
