"""``[autoscaler]`` settings (apart from the autoscaler, so config never imports federation)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AutoscalerSettings"]


class AutoscalerSettings(BaseModel):
    """``[autoscaler]``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval_s: float = Field(default=5.0, gt=0)
    scale_down_window_s: float = Field(default=300.0, ge=0)
