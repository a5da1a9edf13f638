"""A ``godel do`` plan: the tasks an intent was split into, read from a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import InvalidInput
from core.work.worktrees import check_id


class DoTask(BaseModel):
    """One task: its name (a branch component), what its agent runs, and what it needs."""

    model_config = ConfigDict(extra="forbid")

    name: str
    input: str = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)  # the files it is expected to touch (shown)
    # The task's own runtime and model; None: the run's (``--runtime``, ``--model``).
    runtime: str | None = None
    model: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_id("task id", v)
        except InvalidInput as e:
            raise ValueError(e.message) from None

    @field_validator("runtime", "model")
    @classmethod
    def _named(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty (leave it out to use the run's)")
        return v.strip() if v is not None else None


class DoPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[DoTask] = Field(min_length=1)

    def levels(self) -> list[list[DoTask]]:
        """The tasks in dependency levels: each level depends only on the ones before it."""
        done: set[str] = set()
        left = list(self.tasks)
        out: list[list[DoTask]] = []
        while left:
            level = [t for t in left if set(t.depends_on) <= done]
            if not level:
                names = ", ".join(t.name for t in left)
                raise InvalidInput(f"plan: the tasks {names} depend on each other in a cycle")
            out.append(level)
            done |= {t.name for t in level}
            left = [t for t in left if t.name not in done]
        return out


def load_do_plan(path: str) -> DoPlan:
    """The plan in ``path``, or one line naming what is wrong with it."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InvalidInput(f"cannot read the plan {path}: {e.strerror or e}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"plan {path} is not JSON: {e.msg} at line {e.lineno}") from None
    return validate_do_plan(raw, path)


def validate_do_plan(raw: object, where: str) -> DoPlan:
    """``raw`` (parsed JSON) as a plan, or one line naming what is wrong; ``where`` names
    the plan's origin in that line (a file, "the reply of model M")."""
    try:
        plan = DoPlan.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        problem = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"plan {where}: {loc}: {problem}") from None
    names = [t.name for t in plan.tasks]
    seen: set[str] = set()
    for t in plan.tasks:
        if t.name in seen:
            raise InvalidInput(f"plan {where}: two tasks are named {t.name!r}: rename one")
        seen.add(t.name)
    for t in plan.tasks:
        for d in t.depends_on:
            if d not in names:
                raise InvalidInput(
                    f"plan {where}: task {t.name!r} depends on {d!r}, which is not in the plan"
                )
    plan.levels()  # a cycle is refused here, before anything runs
    return plan
