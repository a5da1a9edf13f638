"""The CLI's renderers of the daemon's JSON: the agent listing, costs, unknown fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.api.shapes import AGENT_STATUSES, ENDED_STATUSES, LogLine
from core.cli import render
from core.models import AgentStatus

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def agent(**over: Any) -> Any:
    a: dict[str, Any] = {
        "id": "native-3f9a1c",
        "name": "builder",
        "runtime": "native",
        "model": "scripted",
        "swarm": "web",
        "skills": ["python"],
        "status": "busy",
        "status_source": "probe",
        "status_reason": "",
        "status_at": "2026-11-27T11:59:57Z",
        "pid": 4242,
        "workspace": "/tmp/ws",
        "created_at": "2026-11-27T11:00:00.123456Z",
        "current_task": "task-0123456789ab",
        "current_exec": "x-1",
        "tokens": {"input": 1000, "output": 384, "cache_read": 0, "cache_write": 0, "total": 1384},
        "cost_usd": "0.001408",
        "cost_unknown_execs": 0,
        "execs": 2,
    }
    a.update(over)
    return a


def test_agent_row_has_swarm_status_source_and_age_task_tokens_cost() -> None:
    assert render.AGENT_HEADERS == (
        "ID",
        "NAME",
        "SWARM",
        "RUNTIME",
        "STATUS",
        "TASK",
        "TOKENS",
        "COST",
    )
    assert render.agent_row(agent(), NOW) == (
        "native-3f9a1c",
        "builder",
        "web",
        "native",
        "busy (probe, 3s)",
        "task-0123456789ab",
        "1,384",
        "$0.001408",
    )


def test_unknown_cost_is_a_dash_never_zero_and_a_partial_one_a_lower_bound() -> None:
    row = render.agent_row(agent(cost_usd=None, swarm=None, current_task=None), NOW)
    assert row[2] == "-" and row[5] == "-" and row[7] == "-"
    assert render.agent_row(agent(cost_usd="0"), NOW)[7] == "$0"
    partial = agent(cost_usd="1.25", cost_unknown_execs=1)
    assert render.agent_row(partial, NOW)[7] == "≥$1.25"


def test_fields_a_daemon_does_not_send_show_as_question_marks() -> None:
    old: Any = {
        "id": "shell-000001",
        "runtime": "shell",
        "status": "idle",
        "status_source": "spawn",
    }
    row = render.agent_row(old, NOW)
    assert row == ("shell-000001", "?", "?", "shell", "idle (spawn, ?)", "?", "?", "?")
    detail = render.agent_detail(old, None, NOW)
    assert "Status:     idle (source: spawn, ? ago)" in detail
    assert "Cost:       ?" in detail
    assert "Breaker:    ?" in detail


def test_agent_detail_shows_the_breaker_in_one_line() -> None:
    a: Any = {
        **agent(),
        "breaker": "open",
        "breaker_at": "2026-11-27T11:58:00Z",
        "health_detail": "5 consecutive failures; open for 30s",
    }
    text = render.agent_detail(a, [], NOW)
    assert "Breaker:    open (2m ago): 5 consecutive failures; open for 30s" in text
    closed: Any = {**agent(), "breaker": "closed", "breaker_at": None, "health_detail": ""}
    assert "Breaker:    closed\n" in render.agent_detail(closed, [], NOW)


def test_usd() -> None:
    assert render.usd("0.001408") == "$0.001408"
    assert render.usd("1.500000") == "$1.5"
    assert render.usd("12") == "$12"
    assert render.usd(None) == "-"
    assert render.usd("not a number") == "?"


def test_agent_detail_shows_tokens_cost_and_recent_execs() -> None:
    execs: Any = [
        {
            "id": "x-1",
            "agent_id": "native-3f9a1c",
            "input": "run: echo hi",
            "status": "succeeded",
            "exit_code": 0,
            "started_at": "2026-11-27T11:58:00Z",
        }
    ]
    text = render.agent_detail(agent(), execs, NOW)
    assert "Status:     busy (source: probe, 3s ago)" in text
    assert "Swarm:      web" in text and "Task:       task-0123456789ab" in text
    assert "Tokens:     1,384 (1,000 in, 384 out" in text
    assert "Cost:       $0.001408" in text
    assert "Created:    2026-11-27 11:00:00 UTC" in text
    assert "x-1" in text and "succeeded" in text and "2m ago" in text


def test_agent_statuses_match_the_model() -> None:
    assert tuple(s.value for s in AgentStatus) == AGENT_STATUSES
    assert tuple(s.value for s in AgentStatus if s.is_terminal) == ENDED_STATUSES


def test_audit_row_and_verify_summary() -> None:
    e: Any = {
        "seq": 7,
        "ts": "2026-11-27T11:00:00+00:00",
        "actor": "cli",
        "action": "agent.spawn",
        "subject": "shell-1",
        "result": "ok",
    }
    assert render.audit_row(e) == (
        "7",
        "2026-11-27 11:00:00",
        "cli",
        "agent.spawn",
        "shell-1",
        "ok",
    )
    ok: Any = {"ok": True, "checked": 3, "first_bad_seq": None, "problem": ""}
    assert render.verify_summary(ok) == "audit chain intact: 3 entries verified"
    bad: Any = {"ok": False, "checked": 2, "first_bad_seq": 3, "problem": "its hash does not match"}
    assert render.verify_summary(bad) == ("audit chain broken at entry 3: its hash does not match")


def _task(**over: object) -> dict[str, object]:
    task: dict[str, object] = {
        "id": "task-1",
        "input": "make test",
        "priority": "high",
        "skills": ["py"],
        "depends_on": [],
        "max_attempts": 3,
        "timeout_s": None,
        "swarm": "ci",
        "runtime": "shell",
        "status": "failed",
        "attempts": 3,
        "deps_pending": 0,
        "not_before": 0.0,
        "lease_agent": "shell-1",
        "lease_expires": None,
        "exec_id": "exec-1",
        "result": {
            "kind": "result",
            "exec_id": "exec-1",
            "status": "failed",
            "exit_code": 2,
            "output": "out\n",
            "usage": {},
            "cost_usd": None,
            "reason": "exit code 2",
            "duration_s": 1.5,
        },
        "error": "failed after 3 attempts: exit code 2",
        "created_at": "2026-11-27T12:00:00Z",
        "updated_at": "2026-11-27T12:00:05Z",
        "finished_at": "2026-11-27T12:00:05Z",
        "waiting": "",
        "stranded": False,
    }
    task.update(over)
    return task


def line(stream: str, data: str) -> LogLine:
    return {
        "seq": 1,
        "agent_id": "a",
        "exec_id": "exec-1",
        "stream": stream,
        "at": "",
        "data": data,
    }


def test_a_task_row_and_detail_from_the_daemons_json() -> None:
    now = datetime(2026, 11, 27, 12, 1, tzinfo=UTC)
    row = render.task_row(_task(), now)  # type: ignore[arg-type]
    assert row == ("task-1", "failed", "high", "ci", "shell-1", "3/3", "1m", "make test")
    text = render.task_detail(
        _task(),  # type: ignore[arg-type]
        [line("stdout", "out\n"), line("stderr", "boom\n")],
        now,
    )
    assert "Status:      failed (failed after 3 attempts: exit code 2)" in text
    assert "Last result: failed, exit 2, 1.50s (exec exec-1)" in text
    assert "Reason:" not in text  # the status line says it already
    assert text.endswith("Stdout:\n  out\nStderr:\n  boom")
    waiting = render.task_detail(
        _task(status="ready", result=None, waiting="all busy (2 agents, 2 tasks in flight)"),  # type: ignore[arg-type]
        None,
        now,
    )
    assert "Waiting:     all busy (2 agents, 2 tasks in flight)" in waiting
