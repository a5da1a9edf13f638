"""``[health]`` settings: every knob of the federation's health layer (``core.federation.health``).

Kept in the config package so that config never imports federation.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from core.config.bounds import between

__all__ = ["HealthSettings"]

_Num = Annotated[float, Field(allow_inf_nan=False)]
_Count = Annotated[StrictInt, between(1, 1000)]
# Far below 0.01 s a probe or restart loop busy-spins a core; over a day it never happens.
_Seconds = Annotated[_Num, between(0.01, 86_400)]
_Fraction = Annotated[_Num, between(0, 1, hi_open=True)]


class HealthSettings(BaseModel):
    """``[health]``: every knob of the health layer, with Envoy-like defaults."""

    # A typo'd key must be an error that names it, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")

    # Active probes.
    interval_s: _Seconds = 10.0
    timeout_s: _Seconds = 5.0
    unhealthy_threshold: _Count = 3
    healthy_threshold: _Count = 2
    jitter: _Fraction = 0.1  # each interval is scaled by 1 ± jitter
    max_concurrent_probes: Annotated[StrictInt, between(1, 10_000)] = 32

    # Passive: circuit breaker fed by task results.
    failure_threshold: _Count = 5
    open_for_s: _Seconds = 30.0
    max_open_s: _Seconds = 300.0

    # Pool level.
    max_ejection_percent: Annotated[_Num, between(0, 100)] = 10.0
    panic_threshold: Annotated[_Num, between(0, 1)] = 0.5  # 0 disables panic

    # Restarting dead agents.
    restart_base_s: _Seconds = 1.0
    restart_factor: Annotated[_Num, between(1, 10)] = 2.0
    restart_max_s: _Seconds = 60.0
    restart_jitter: _Fraction = 0.2  # a delay is scaled by a random factor in (1 - jitter, 1]
    max_restarts: _Count = 5
    restart_window_s: Annotated[_Num, between(1, 7 * 86_400)] = 600.0
    restart_reset_after_s: _Seconds = 120.0  # healthy this long → backoff starts over

    @model_validator(mode="after")
    def _caps_not_below_bases(self) -> Self:
        if self.max_open_s < self.open_for_s:
            raise ValueError(
                f"max_open_s ({self.max_open_s}) must be at least open_for_s ({self.open_for_s})"
            )
        if self.restart_max_s < self.restart_base_s:
            raise ValueError(
                f"restart_max_s ({self.restart_max_s}) must be at least "
                f"restart_base_s ({self.restart_base_s})"
            )
        return self
