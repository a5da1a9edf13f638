"""``[do]``: how ``godel do`` works in a repository — its agents, gate, budget, planner and
worktrees. Put it in the repository's ``.godel/config.toml`` (docs/do.md,
docs/self-orchestration.md); ``godel do``'s options override it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = ["DoSettings", "DoWorktreeSettings"]

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class DoWorktreeSettings(BaseModel):
    """``[do.worktrees]``: where each task's worktree comes from and what happens to it."""

    model_config = ConfigDict(extra="forbid")

    base: _Text | None = None  # the branch tasks start from and merge into; None: the current
    root: Path | None = None  # where worktrees go; None: <git common dir>/godel-worktrees
    copy_files: list[str] = Field(default_factory=list)  # e.g. [".env"]: copied, not committed
    setup_command: _Text | None = None  # run in each new worktree, e.g. "make setup"
    setup_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    cleanup: Literal["always", "on-success", "never"] = "on-success"

    @field_validator("copy_files")
    @classmethod
    def _inside(cls, v: list[str]) -> list[str]:
        for name in v:
            p = PurePosixPath(name)
            if not name.strip() or p.is_absolute() or ".." in p.parts:
                raise ValueError(f"copy_files entry {name!r} must be a path inside the repository")
        return v


class DoSettings(BaseModel):
    """``[do]``: the defaults of ``godel do`` in this repository."""

    model_config = ConfigDict(extra="forbid")

    runtime: _Text = "shell"  # the agents' runtime (a task may name its own)
    model: _Text | None = None  # the agents' model
    # The model that turns an intent into a plan; None: ``model``.
    planner_model: _Text | None = None
    agents: int = Field(default=1, ge=1, le=1000)  # at most this many tasks at once
    strategy: Literal["careful", "fast", "balanced"] = "careful"
    gate: _Text | None = None  # run in each task's worktree and after merges
    budget: Decimal | None = Field(default=None, ge=0)  # dollars: the project's budget
    worktrees: DoWorktreeSettings = Field(default_factory=DoWorktreeSettings)
