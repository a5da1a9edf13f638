"""Capturing what an op changed in tasks and swarms, whichever op it was.

Temporary triggers on the write connection append one row per task status change (or
new task) and per swarm write to temp tables, inside the op's own transaction (so a
rolled-back op leaves none). After each op the store drains them into ``Changes``, and
the journal publishes them as ``task.changed`` / ``swarm.changed`` events. No op
handler can forget to announce a change, so a view folded from the events always
agrees with the store.
"""

from __future__ import annotations

import sqlite3

from core.store.base import Changes, TaskChange
from core.store.queue_rules import PRIORITIES
from core.store.sqlite import rows

SCHEMA = """
CREATE TEMP TABLE IF NOT EXISTS task_changes (
    task_id TEXT, swarm TEXT, status TEXT, previous TEXT, agent_id TEXT,
    attempts INTEGER, priority INTEGER, runtime TEXT, error TEXT, input TEXT
);
CREATE TEMP TABLE IF NOT EXISTS swarm_changes (name TEXT);
CREATE TEMP TRIGGER IF NOT EXISTS task_inserted AFTER INSERT ON main.tasks
BEGIN
    INSERT INTO task_changes VALUES (NEW.id, NEW.swarm, NEW.status, NULL, NEW.lease_agent,
        NEW.attempts, NEW.priority, NEW.runtime, NEW.error, substr(NEW.input, 1, 200));
END;
CREATE TEMP TRIGGER IF NOT EXISTS task_status AFTER UPDATE OF status ON main.tasks
WHEN OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO task_changes VALUES (NEW.id, NEW.swarm, NEW.status, OLD.status,
        coalesce(NEW.lease_agent, OLD.lease_agent), NEW.attempts, NEW.priority,
        NEW.runtime, NEW.error, substr(NEW.input, 1, 200));
END;
CREATE TEMP TRIGGER IF NOT EXISTS swarm_inserted AFTER INSERT ON main.swarms
BEGIN INSERT INTO swarm_changes VALUES (NEW.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS swarm_updated AFTER UPDATE ON main.swarms
BEGIN INSERT INTO swarm_changes VALUES (NEW.name); END;
"""


def install(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def drain(conn: sqlite3.Connection) -> Changes:
    """What the op just run changed (read and cleared inside its transaction)."""
    tasks = conn.execute("SELECT * FROM temp.task_changes ORDER BY rowid").fetchall()
    names = conn.execute("SELECT DISTINCT name FROM temp.swarm_changes").fetchall()
    if not tasks and not names:
        return Changes()
    if tasks:
        conn.execute("DELETE FROM temp.task_changes")
    swarms = []
    if names:
        conn.execute("DELETE FROM temp.swarm_changes")
        for (name,) in names:
            row = conn.execute("SELECT * FROM main.swarms WHERE name = ?", (name,)).fetchone()
            if row is not None:
                swarms.append(rows.swarm(row))
    return Changes(
        tasks=[
            TaskChange(
                task_id=r["task_id"],
                swarm=r["swarm"],
                status=r["status"],
                previous=r["previous"],
                agent_id=r["agent_id"],
                attempts=r["attempts"],
                priority=PRIORITIES[r["priority"]].value,
                runtime=r["runtime"],
                error=r["error"] or "",
                input=r["input"],
            )
            for r in tasks
        ],
        swarms=swarms,
    )
