"""Swarms in SQLite: op handlers and reads (synchronous, on the database thread)."""

from __future__ import annotations

import sqlite3

from core.errors import SwarmError
from core.models import Swarm
from core.store import ops
from core.store.sqlite import rows
from core.store.sqlite.tx import Tx


def insert_swarm(tx: Tx, op: ops.InsertSwarm) -> None:
    old = tx.one("SELECT status FROM swarms WHERE name = ?", (op.swarm.name,))
    if old is not None and old["status"] == "active":
        raise SwarmError(f"a swarm named {op.swarm.name!r} already exists", swarm=op.swarm.name)
    tx.run(
        "INSERT OR REPLACE INTO swarms (name, runtime, model, skills, strategy, "
        "min_agents, max_agents, target_per_agent, desired, capacity, status, "
        "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        rows.swarm_values(op.swarm),
    )


def update_swarm(tx: Tx, op: ops.UpdateSwarm) -> Swarm:
    sets = ", ".join(f"{k} = ?" for k in op.changes)
    row = tx.one(
        f"UPDATE swarms SET {sets} WHERE name = ? RETURNING *", (*op.changes.values(), op.name)
    )
    if row is None:
        raise SwarmError(f"swarm {op.name!r} not found", swarm=op.name)
    return rows.swarm(row)


# --- reads -------------------------------------------------------------------------------


def get_swarm(conn: sqlite3.Connection, name: str) -> Swarm | None:
    row = conn.execute("SELECT * FROM swarms WHERE name = ?", (name,)).fetchone()
    return rows.swarm(row) if row else None


def list_swarms(conn: sqlite3.Connection, include_destroyed: bool) -> list[Swarm]:
    sql = "SELECT * FROM swarms"
    if not include_destroyed:
        sql += " WHERE status = 'active'"
    return [rows.swarm(r) for r in conn.execute(sql + " ORDER BY created_at")]
