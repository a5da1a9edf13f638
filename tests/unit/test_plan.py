"""``core.config.plan``: a run's plan, and the one line that refuses a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config.plan import load_plan
from core.errors import ConfigError


def test_a_plan_loads_with_defaults_and_maps_to_submit_items(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[[swarm]]\nname = "s"\n'
        '[[task]]\nname = "a"\ninput = "echo a"\n'
        '[[task]]\nname = "b"\ninput = "echo b"\ndepends_on = ["a"]\ntimeout = 5\n'
        'priority = "high"\nruntime = "shell"\n'
    )
    plan = load_plan(path)
    assert plan.swarm[0].runtime == "shell" and plan.swarm[0].count == 1
    a, b = plan.task
    assert plan.spec(a, []) == {
        "input": "echo a",
        "priority": "normal",
        "skills": [],
        "depends_on": [],
        "max_attempts": 3,
        "swarm": "s",  # the plan's first swarm
    }
    spec = plan.spec(b, ["task-1"])
    assert spec["depends_on"] == ["task-1"] and spec["timeout_s"] == 5
    assert spec["priority"] == "high" and spec["runtime"] == "shell"


@pytest.mark.parametrize(
    "text, line",
    [
        ("", "task: a plan needs at least one [[task]]"),
        ("[[task]]\nname = 'a'\n", "task[0].input: is required"),
        (
            "[[task]]\nname = 'a'\ninput = 'x'\nswarm = 'w'\n",
            "task[0].swarm: no [[swarm]] named 'w'",
        ),
        ("[[task]]\nname = 'a'\ninput = 'x'\npriority = 'asap'\n", "task[0].priority:"),
        (
            "[[task]]\nname = 'a'\ninput = 'x'\n[[task]]\nname = 'a'\ninput = 'y'\n",
            "task[1].name: a second task named 'a'",
        ),
        (
            "[[task]]\nname = 'a'\ninput = 'x'\ndepends_on = ['a']\n",
            "task[0].depends_on[0]: a task cannot depend on itself",
        ),
        (
            "[[swarm]]\nname = 's'\ncuont = 2\n[[task]]\nname = 'a'\ninput = 'x'\n",
            "swarm[0].cuont: unknown key 'cuont' (did you mean 'count'?)",
        ),
        ("[[task]\n", "not valid TOML"),
    ],
)
def test_a_bad_plan_is_one_line_naming_the_key(tmp_path: Path, text: str, line: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_plan(path)
    assert e.value.message.startswith(f"{path}: {line}"), e.value.message
    assert "\n" not in e.value.message
