"""The read side's starting point from SQLite: every view as the store holds it now
(the daemon then folds events onto it; a test checks the two always agree)."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

from core.models import AgentStatus, StatusSource, Usage
from core.store.queue_rules import PRIORITIES
from core.store.sqlite import budgets, rows
from core.views import ACTIVE_TASK_STATUSES, RECENT_TASKS, Views, ViewSnapshot
from core.views.cells import AgentCell, SpendCell, TaskCell

_USAGE = "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd"


def _usage(r: sqlite3.Row) -> tuple[Usage, Decimal | None]:
    usage = Usage(
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        cache_read_tokens=r["cache_read_tokens"],
        cache_write_tokens=r["cache_write_tokens"],
    )
    return usage, None if r["cost_usd"] is None else Decimal(r["cost_usd"])


def _task_cell(r: sqlite3.Row) -> TaskCell:
    return TaskCell(
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
    """Filled into the same cells the fold keeps, with the same arithmetic (a view read
    from the store and one folded from events can only differ by what they were fed)."""
    views = Views()
    agents = views.agents
    for r in conn.execute("SELECT * FROM agents ORDER BY created_at, id"):
        # No breaker fields: breakers live in the daemon's memory and start closed with
        # it, so the cell's defaults (closed, no detail) are right here; they change
        # only through ``agent.health`` events.
        agents[r["id"]] = AgentCell(
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
    by = views.spend_by
    cols = f"e.id, e.agent_id, e.status, e.model, {_USAGE}, a.swarm, a.runtime"
    for r in conn.execute(f"SELECT {cols} FROM execs e JOIN agents a ON a.id = e.agent_id"):
        agent = agents.get(r["agent_id"])
        if agent is None:
            continue
        agent.spend.execs += 1
        if r["status"] == "running":
            agent.current_exec = r["id"]
            continue
        usage, cost = _usage(r)
        agent.spend.add(usage, cost)
        for cell in (
            views.spend_total,
            by["swarm"].setdefault(r["swarm"] or "", SpendCell()),
            by["runtime"].setdefault(r["runtime"], SpendCell()),
            by["model"].setdefault(r["model"] or "", SpendCell()),
        ):
            cell.execs += 1
            cell.add(usage, cost)
    for r in conn.execute("SELECT swarm, status, count(*) AS n FROM tasks GROUP BY swarm, status"):
        views.task_counts.setdefault(r["swarm"] or "", {})[r["status"]] = r["n"]
    marks = ",".join("?" * len(ACTIVE_TASK_STATUSES))
    for r in conn.execute(
        f"SELECT * FROM tasks WHERE status IN ({marks}) ORDER BY id", tuple(ACTIVE_TASK_STATUSES)
    ):
        t = views.tasks_active[r["id"]] = _task_cell(r)
        if t.status == "running" and t.lease_agent in agents:
            agents[t.lease_agent].current_task = t.id
    recent = [
        _task_cell(r)
        for r in conn.execute(
            f"SELECT * FROM tasks WHERE status NOT IN ({marks}) "
            "ORDER BY finished_at DESC, rowid DESC LIMIT ?",
            (*ACTIVE_TASK_STATUSES, RECENT_TASKS),
        )
    ]
    views.tasks_recent.extend(reversed(recent))
    for r in conn.execute("SELECT * FROM budgets"):
        b = budgets.budget(r)
        views.budgets[(b.scope, b.unit)] = b
    for r in conn.execute("SELECT * FROM swarms WHERE status = 'active' ORDER BY created_at, name"):
        swarm = rows.swarm(r)
        views.swarms[swarm.name] = swarm
        views.strategies[swarm.name] = swarm.strategy
    return views.snapshot()
