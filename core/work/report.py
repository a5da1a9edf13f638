"""What a merge did, per task: the shape ``godel do`` will print and record."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field

from core.work.gates import GateResult

Strategy = Literal["careful", "balanced", "fast"]


class Overlap(BaseModel):
    """Two branches touched the same files. ``conflict``: git cannot merge them cleanly."""

    branches: tuple[str, str]
    tasks: tuple[str, str]
    files: list[str]
    conflict: bool
    conflict_files: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def line(self) -> str:
        """``describe()``, in the JSON too: faces print it without this module."""
        return self.describe()

    def describe(self) -> str:
        kind = "conflict" if self.conflict else "overlap (merges cleanly)"
        files = ", ".join(self.conflict_files if self.conflict else self.files)
        return f"{self.branches[0]} and {self.branches[1]}: {kind} in {files}"


class TaskMerge(BaseModel):
    """One task's branch: what it touched, whether it reached the base, and why."""

    task: str
    branch: str
    files: list[str]
    merged: bool
    reason: str  # why it was merged or not, in one line
    merge_commit: str | None = None  # the base's tip once this branch was in it
    gate: GateResult | None = None  # the gate run on the base after this merge (careful)


class MergeReport(BaseModel):
    strategy: Strategy
    base: str
    base_before: str
    base_after: str
    overlaps: list[Overlap]
    tasks: list[TaskMerge]
    gates: list[GateResult]  # every gate run on the base, in order

    @property
    def merged(self) -> list[TaskMerge]:
        return [t for t in self.tasks if t.merged]
