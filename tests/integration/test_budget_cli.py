"""``godel budget`` through the real CLI and daemon: set, show, clear, history with
``--json``; bad input is one line naming the problem."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Godel


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["team:x", "1"],
            "godel: unknown budget scope 'team:x': use project, swarm:NAME, task:ID, "
            "runtime:NAME or model:NAME",
        ),
        (["swarm:", "1"], "godel: budget scope 'swarm:' needs a name after 'swarm:'"),
        (["project", "-5"], "godel: the amount must be zero or more, got -5"),
        (
            ["project", "ten"],
            "godel: the amount must be a number, got 'ten' (e.g. 10.00, or 500000 with --tokens)",
        ),
        (
            ["project", "1.5", "--tokens"],
            "godel: a token budget is a whole number of tokens, got 1.5",
        ),
    ],
)
def test_bad_input_is_one_line(godel: Godel, args: list[str], line: str) -> None:
    r = godel.run("budget", "set", *args)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [line]


def test_set_show_clear_and_history(godel: Godel) -> None:
    r = godel.run("budget", "set", "project", "10.00", "--period", "daily", check=True)
    assert r.stdout.splitlines()[0].split() == [
        "SCOPE",
        "LIMIT",
        "SPENT",
        "RESERVED",
        "USED",
        "PERIOD",
        "RESETS",
    ]
    assert r.stdout.splitlines()[1].split()[:6] == [
        "project",
        "$10.00",
        "$0.00",
        "$0.00",
        "0%",
        "daily",
    ]
    godel.run("budget", "set", "swarm:web", "500000", "--tokens", check=True)
    shown = json.loads(godel.run("budget", "show", "--json", check=True).stdout)
    assert [(b["scope"], b["unit"], b["limit"], b["period"]) for b in shown] == [
        ("project", "usd", "10", "daily"),
        ("swarm:web", "tokens", "500000", "none"),
    ]
    assert shown[0]["reset_at"] is not None and shown[1]["reset_at"] is None
    r = godel.run("budget", "clear", "swarm:web")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "godel: no budget on swarm:web: `godel budget show` lists them"
    ]
    godel.run("budget", "clear", "swarm:web", "--tokens", check=True)
    history = json.loads(godel.run("budget", "history", "--json", check=True).stdout)
    assert [(h["scope"], h["unit"], h["spent"]) for h in history] == [("swarm:web", "tokens", "0")]
    audit = json.loads(godel.run("audit", "list", "--json", check=True).stdout)
    assert [e["action"] for e in audit if e["action"].startswith("budget.")] == [
        "budget.set",
        "budget.set",
        "budget.clear",
    ]
