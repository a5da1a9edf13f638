"""Agent health: circuit breakers, active probes, ejection caps and restart backoff.

Modelled on Envoy's outlier detection and health checking: passive failure
counting opens a per-agent circuit breaker with a growing open time; active probes
move an agent between healthy and unhealthy with separate thresholds; the pool caps
how many agents may be ejected and ignores health altogether in panic. Everything
except ``Prober`` is plain synchronous logic over an injectable monotonic clock, so
the engine (one asyncio loop) owns all state and tests need no sleeping.

``breaker`` holds the circuit breaker, ``tracker`` probe results and thresholds,
``policies`` the ejection cap and restart backoff, ``prober`` the probe loop; the
``[health]`` settings live in ``core.config``. Import them from here.
"""

from __future__ import annotations

from core.config import HealthSettings
from core.federation.health.breaker import BreakerState, BreakerTransition, CircuitBreaker
from core.federation.health.clock import Monotonic
from core.federation.health.policies import EjectionPolicy, RestartPolicy
from core.federation.health.prober import OnChange, ProbeFn, Prober
from core.federation.health.tracker import HealthTracker, HealthTransition, ProbeResult

__all__ = [
    "BreakerState",
    "BreakerTransition",
    "CircuitBreaker",
    "EjectionPolicy",
    "HealthSettings",
    "HealthTracker",
    "HealthTransition",
    "Monotonic",
    "OnChange",
    "ProbeFn",
    "ProbeResult",
    "Prober",
    "RestartPolicy",
]
