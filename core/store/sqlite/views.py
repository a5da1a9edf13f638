"""The read side's starting point from SQLite: every view as the store holds it now
(the daemon then folds events onto it; a test checks the two always agree)."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

from core.models import AgentStatus, StatusSource, Usage
from core.store.queue_rules import PRIORITIES
from core.store.sqlite import rows
from core.views import ACTIVE_TASK_STATUSES, RECENT_TASKS, AgentRow, TaskRow, Views, ViewSnapshot
from core.views.rows import RouterState, Spend, SpendState, SpendTotals

_USAGE = "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd"


def _usage(r: sqlite3.Row) -> tuple[Usage, Decimal | None]:
    usage = Usage(
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        cache_read_tokens=r["cache_read_tokens"],
        cache_write_tokens=r["cache_write_tokens"],
    )
    return usage, None if r["cost_usd"] is None else Decimal(r["cost_usd"])


def _task_row(r: sqlite3.Row) -> TaskRow:
    return TaskRow(
        id=r["id"],
        swarm=r["swarm"],
        status=r["status"],
        lease_agent=r["lease_agent"],
        attempts=r["attempts"],
        priority=PRIORITIES[r["priority"]].value,
        runtime=r["runtime"],
        error=r["error"] or "",
        input=r["input"][:200],
    )


def view_snapshot(conn: sqlite3.Connection) -> ViewSnapshot:
    agents: dict[str, AgentRow] = {}
    for r in conn.execute("SELECT * FROM agents ORDER BY created_at, id"):
        agents[r["id"]] = AgentRow(
            id=r["id"],
            name=r["name"],
            runtime=r["runtime"],
            model=r["model"],
            swarm=r["swarm"],
            skills=json.loads(r["skills"]),
            status=AgentStatus(r["status"]),
            status_source=StatusSource(r["status_source"]),
            status_reason=r["status_reason"],
            status_at=rows.dt(r["status_at"]),
            pid=r["pid"],
            workspace=r["workspace"],
            created_at=rows.dt(r["created_at"]),
        )
    spend = SpendState()
    cols = f"e.id, e.agent_id, e.status, e.model, {_USAGE}, a.swarm, a.runtime"
    for r in conn.execute(f"SELECT {cols} FROM execs e JOIN agents a ON a.id = e.agent_id"):
        agent = agents.get(r["agent_id"])
        if agent is None:
            continue
        agent.execs += 1
        if r["status"] == "running":
            agent.current_exec = r["id"]
            continue
        usage, cost = _usage(r)
        agent.add(usage, cost)
        spent: list[Spend] = [
            spend.total,
            spend.by_swarm.setdefault(r["swarm"] or "", SpendTotals()),
            spend.by_runtime.setdefault(r["runtime"], SpendTotals()),
            spend.by_model.setdefault(r["model"] or "", SpendTotals()),
        ]
        for sp in spent:
            sp.execs += 1
            sp.add(usage, cost)
    counts: dict[str, dict[str, int]] = {}
    for r in conn.execute("SELECT swarm, status, count(*) AS n FROM tasks GROUP BY swarm, status"):
        counts.setdefault(r["swarm"] or "", {})[r["status"]] = r["n"]
    marks = ",".join("?" * len(ACTIVE_TASK_STATUSES))
    active = [
        _task_row(r)
        for r in conn.execute(
            f"SELECT * FROM tasks WHERE status IN ({marks}) ORDER BY id",
            tuple(ACTIVE_TASK_STATUSES),
        )
    ]
    for t in active:
        if t.status == "running" and t.lease_agent in agents:
            agents[t.lease_agent].current_task = t.id
    recent = [
        _task_row(r)
        for r in conn.execute(
            f"SELECT * FROM tasks WHERE status NOT IN ({marks}) "
            "ORDER BY finished_at DESC, rowid DESC LIMIT ?",
            (*ACTIVE_TASK_STATUSES, RECENT_TASKS),
        )
    ]
    recent.reverse()
    swarm_list = [
        rows.swarm(r)
        for r in conn.execute(
            "SELECT * FROM swarms WHERE status = 'active' ORDER BY created_at, name"
        )
    ]

    views = Views(
        ViewSnapshot(
            seq=0,
            agents=list(agents.values()),
            tasks_by_status=counts,
            tasks_active=active,
            tasks_recent=recent,
            router=RouterState(strategies={s.name: s.strategy for s in swarm_list}),
            spend=spend,
        )
    )
    for s in swarm_list:
        views.swarms[s.name] = s
    return views.snapshot()
