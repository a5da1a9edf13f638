"""``[autoscaler]`` settings (apart from the autoscaler, so config never imports federation)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.config.bounds import between

__all__ = ["AutoscalerSettings"]


class AutoscalerSettings(BaseModel):
    """``[autoscaler]``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Under 0.1 s the loop busy-spins a core.
    interval_s: Annotated[float, Field(allow_inf_nan=False), between(0.1, 3600)] = 5.0
    scale_down_window_s: Annotated[float, Field(allow_inf_nan=False), between(0, 86_400)] = 300.0
