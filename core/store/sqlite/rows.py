"""Rows to domain models (and back), for every table the SQLite store reads."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    AuditEntry,
    ExecRecord,
    ExecResult,
    ExecStatus,
    LogLine,
    StatusSource,
    Swarm,
    Task,
    TaskStatus,
    Usage,
)
from core.store.queue_rules import PRIORITIES


def dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def agent(row: sqlite3.Row) -> Agent:
    return Agent(
        id=row["id"],
        runtime=row["runtime"],
        name=row["name"],
        model=row["model"],
        skills=json.loads(row["skills"]),
        workspace=Path(row["workspace"]),
        pid=row["pid"],
        pid_started_at=row["pid_started_at"],
        status=AgentStatus(row["status"]),
        status_source=StatusSource(row["status_source"]),
        status_reason=row["status_reason"],
        status_at=dt(row["status_at"]),
        created_at=dt(row["created_at"]),
        spec=AgentSpec.model_validate_json(row["spec"]),
        swarm=row["swarm"],
    )


def agent_values(a: Agent) -> tuple[Any, ...]:
    return (
        a.id,
        a.runtime,
        a.name,
        a.model,
        json.dumps(a.skills),
        str(a.workspace),
        a.pid,
        a.pid_started_at,
        a.status.value,
        a.status_source.value,
        a.status_reason,
        a.status_at.isoformat(),
        a.created_at.isoformat(),
        a.spec.model_dump_json(),
        a.swarm,
    )


def exec_record(row: sqlite3.Row) -> ExecRecord:
    return ExecRecord(
        id=row["id"],
        agent_id=row["agent_id"],
        input=row["input"],
        status=ExecStatus(row["status"]),
        exit_code=row["exit_code"],
        reason=row["reason"],
        started_at=dt(row["started_at"]),
        finished_at=dt(row["finished_at"]) if row["finished_at"] else None,
        actor=row["actor"],
        model=row["model"],
        usage=Usage(
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cache_read_tokens=row["cache_read_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
        ),
        cost_usd=None if row["cost_usd"] is None else Decimal(row["cost_usd"]),
    )


def log_line(r: sqlite3.Row) -> LogLine:
    return LogLine(
        seq=r["seq"],
        agent_id=r["agent_id"],
        exec_id=r["exec_id"],
        stream=r["stream"],
        at=dt(r["at"]),
        data=r["data"],
    )


def audit_entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"],
        ts=dt(row["ts"]),
        actor=row["actor"],
        action=row["action"],
        subject=row["subject"],
        payload=json.loads(row["payload"]),
        result=row["result"],
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


def task(row: sqlite3.Row, deps: list[str] | None = None) -> Task:
    return Task(
        id=row["id"],
        input=row["input"],
        priority=PRIORITIES[row["priority"]],
        skills=json.loads(row["skills"]),
        depends_on=deps or [],
        max_attempts=row["max_attempts"],
        timeout_s=row["timeout_s"],
        swarm=row["swarm"],
        runtime=row["runtime"],
        status=TaskStatus(row["status"]),
        attempts=row["attempts"],
        deps_pending=row["deps_pending"],
        not_before=row["not_before"],
        lease_agent=row["lease_agent"],
        lease_expires=row["lease_expires"],
        exec_id=row["exec_id"],
        result=ExecResult.model_validate_json(row["result"]) if row["result"] else None,
        error=row["error"],
        created_at=dt(row["created_at"]),
        updated_at=dt(row["updated_at"]),
        finished_at=dt(row["finished_at"]) if row["finished_at"] else None,
    )


def swarm(row: sqlite3.Row) -> Swarm:
    return Swarm(
        name=row["name"],
        runtime=row["runtime"],
        model=row["model"],
        skills=json.loads(row["skills"]),
        strategy=row["strategy"],
        min_agents=row["min_agents"],
        max_agents=row["max_agents"],
        target_per_agent=row["target_per_agent"],
        desired=row["desired"],
        capacity=row["capacity"],
        status=row["status"],
        created_at=dt(row["created_at"]),
    )


def swarm_values(s: Swarm) -> tuple[Any, ...]:
    return (
        s.name,
        s.runtime,
        s.model,
        json.dumps(s.skills),
        s.strategy,
        s.min_agents,
        s.max_agents,
        s.target_per_agent,
        s.desired,
        s.capacity,
        s.status,
        s.created_at.isoformat(),
    )
