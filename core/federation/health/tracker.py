"""Active health: ``ProbeResult``, and the per-agent ``HealthTracker`` with its thresholds."""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.config import HealthSettings
from core.federation.health.breaker import BreakerTransition, CircuitBreaker
from core.federation.health.clock import Monotonic

__all__ = ["HealthTracker", "HealthTransition", "ProbeResult"]


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome.

    A caller holding a runtime's health report builds one from it: ``ok`` when healthy,
    ``dead`` when the process is gone (federation does not import the runtimes).
    """

    ok: bool
    detail: str = ""
    dead: bool = False  # the process is gone: unhealthy at once, thresholds ignored


@dataclass(frozen=True)
class HealthTransition:
    agent_id: str
    healthy: bool
    detail: str
    at: float  # clock seconds


class HealthTracker:
    """One agent's probe history: ``unhealthy_threshold`` failures in a row make it
    unhealthy, ``healthy_threshold`` successes in a row make it healthy again.

    It also holds the agent's ``CircuitBreaker`` so task results (passive health) and
    probes (active health) live in one place for the router.
    """

    def __init__(
        self,
        agent_id: str,
        settings: HealthSettings | None = None,
        *,
        clock: Monotonic = time.monotonic,
        breaker: CircuitBreaker | None = None,
        initially_healthy: bool = True,
    ) -> None:
        self.agent_id = agent_id
        self.settings = settings or HealthSettings()
        self._clock = clock
        self.breaker = breaker or CircuitBreaker.from_settings(self.settings, clock=clock)
        self._healthy = initially_healthy
        self._since = clock()
        self._probed = False
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.last_detail = ""
        self.last_probe_at: float | None = None

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def since(self) -> float:
        """Clock time of the latest healthy/unhealthy change (or creation)."""
        return self._since

    def record_probe(
        self, ok: bool, detail: str = "", *, immediate: bool = False
    ) -> HealthTransition | None:
        """Count one probe; return the transition if the agent's health changed.

        ``immediate`` (a dead process) makes a failure count at once, like Envoy's
        unexpected HTTP status. An agent created unhealthy needs one pass only, as
        Envoy does at startup.
        """
        first = not self._probed
        self._probed = True
        self.last_detail = detail
        self.last_probe_at = self._clock()
        if ok:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if not self._healthy and (
                first or self.consecutive_successes >= self.settings.healthy_threshold
            ):
                return self._set(True, detail)
            return None
        self.consecutive_failures += 1
        self.consecutive_successes = 0
        if self._healthy and (
            immediate or self.consecutive_failures >= self.settings.unhealthy_threshold
        ):
            return self._set(False, detail)
        return None

    def record_result(self, result: ProbeResult) -> HealthTransition | None:
        return self.record_probe(result.ok, result.detail, immediate=result.dead)

    def record_task(self, ok: bool) -> BreakerTransition | None:
        """Passive health: feed one task outcome to the breaker."""
        return self.breaker.record_success() if ok else self.breaker.record_failure()

    def _set(self, healthy: bool, detail: str) -> HealthTransition:
        self._healthy = healthy
        self._since = self._clock()
        return HealthTransition(self.agent_id, healthy, detail, self._since)
