"""A headless run's plan (``godel run PLAN.toml``): swarms to have, tasks to run.

The fields are ``SwarmSpec``'s and ``TaskSpec``'s; a task names the tasks it depends on
by their plan ``name`` (the daemon's ids are made at submit). A plan that cannot run is
refused with one line: ``<file>: <key.path>: <problem>``, as a config file is.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.config.messages import config_error, describe_error, key_path
from core.errors import ConfigError
from core.models import DEFAULT_STRATEGY, TaskPriority

__all__ = ["Plan", "PlanSwarm", "PlanTask", "load_plan"]

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class PlanSwarm(BaseModel):
    """A swarm the run needs: created when the daemon has none of that name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=NAME)
    runtime: str = Field(default="shell", min_length=1)
    count: int = Field(default=1, ge=0, le=5000)
    model: str | None = None
    skills: list[str] = Field(default_factory=list)
    strategy: str = DEFAULT_STRATEGY


class PlanTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NAME)
    input: str = Field(min_length=1)
    # Omitted: the plan's first swarm, or the default pool when the plan has none.
    swarm: str | None = None
    runtime: str | None = Field(default=None, min_length=1)
    priority: TaskPriority = TaskPriority.NORMAL
    depends_on: list[str] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    max_attempts: int = Field(default=3, ge=1, le=100)
    timeout: float | None = Field(default=None, gt=0, description="seconds per attempt")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    swarm: list[PlanSwarm] = Field(default_factory=list)
    task: list[PlanTask] = Field(min_length=1)

    def swarm_of(self, t: PlanTask) -> str | None:
        if t.swarm is not None:
            return t.swarm
        return self.swarm[0].name if self.swarm else None

    def spec(self, t: PlanTask, dep_ids: list[str]) -> dict[str, Any]:
        """``t`` as a ``task.submit`` item, its dependencies given as task ids."""
        spec: dict[str, Any] = {
            "input": t.input,
            "priority": t.priority.value,
            "skills": t.skills,
            "depends_on": dep_ids,
            "max_attempts": t.max_attempts,
            "swarm": self.swarm_of(t),
        }
        if t.timeout is not None:
            spec["timeout_s"] = t.timeout
        if t.runtime is not None:
            spec["runtime"] = t.runtime
        return spec


def load_plan(path: str | Path) -> Plan:
    """The plan in ``path``, or ``ConfigError`` (one line) saying what is wrong."""
    file = str(path)
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file", file=file) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{file}: cannot read it: {e}", file=file) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {e}", file=file) from None
    try:
        plan = Plan.model_validate(table)
    except ValidationError as e:
        # An unknown key first: it is usually a misspelling of the "missing" one.
        errors = sorted(e.errors(include_url=False), key=lambda r: r["type"] != "extra_forbidden")
        problems = [_problem(err) for err in errors]
        raise config_error(file, problems) from None
    _check_references(file, plan)
    return plan


def _problem(err: Any) -> dict[str, str]:
    loc = err["loc"]
    if err["type"] == "extra_forbidden":
        # Suggest the field meant: describe_error knows the config's sections, not ours.
        model: type[BaseModel] = Plan
        if len(loc) > 1:
            model = PlanSwarm if loc[0] == "swarm" else PlanTask
        text = f"unknown key {loc[-1]!r}"
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
        return {
            "key": key_path(loc),
            "problem": text + (f" (did you mean {close[0]!r}?)" if close else ""),
        }
    if err["type"] == "missing" and loc == ("task",):
        return {"key": "task", "problem": "a plan needs at least one [[task]]"}
    return {"key": key_path(loc), "problem": describe_error(err)}


def _fail(file: str, key: str, problem: str) -> ConfigError:
    return config_error(file, [{"key": key, "problem": problem}])


def _check_references(file: str, plan: Plan) -> None:
    """Unique names, known swarms and dependencies, no cycle."""
    swarms: set[str] = set()
    for i, s in enumerate(plan.swarm):
        if s.name in swarms:
            raise _fail(file, f"swarm[{i}].name", f"a second swarm named {s.name!r}")
        swarms.add(s.name)
    names: dict[str, int] = {}
    for i, t in enumerate(plan.task):
        if t.name in names:
            raise _fail(file, f"task[{i}].name", f"a second task named {t.name!r}")
        names[t.name] = i
        if t.swarm is not None and t.swarm not in swarms:
            known = ", ".join(sorted(swarms)) or "none: add a [[swarm]]"
            raise _fail(
                file, f"task[{i}].swarm", f"no [[swarm]] named {t.swarm!r} (swarms: {known})"
            )
    for i, t in enumerate(plan.task):
        for j, dep in enumerate(t.depends_on):
            if dep not in names:
                close = difflib.get_close_matches(dep, list(names), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise _fail(file, f"task[{i}].depends_on[{j}]", f"no task named {dep!r}{hint}")
            if dep == t.name:
                raise _fail(file, f"task[{i}].depends_on[{j}]", "a task cannot depend on itself")
    cycle = _cycle(plan)
    if cycle:
        i = names[cycle[0]]
        raise _fail(file, f"task[{i}].depends_on", f"a dependency cycle: {' -> '.join(cycle)}")


def _cycle(plan: Plan) -> list[str]:
    """One dependency cycle as a path of names (first == last), or []."""
    deps = {t.name: t.depends_on for t in plan.task}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for dep in deps[name]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return []

    for name in deps:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return []
