"""Capturing what an op changed in tasks and swarms, whichever op it was.

Temporary triggers on the write connection call back into Python (``Capture``) for every
task status change (or new task) and every swarm write, inside the op's transaction.
After each op the store takes what was captured as ``Changes`` (and discards it if the
op rolled back), and the journal publishes them as ``task.changed`` / ``swarm.changed``
events. No op handler can forget to announce a change, so a view folded from the
events always agrees with the store.

A callback rather than a temporary table: it costs one Python call per changed row, and
nothing at all for the ops (most of them) that change no task or swarm.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from core.store.base import Changes, TaskChange
from core.store.queue_rules import PRIORITIES
from core.store.sqlite import rows

_TASK_COLS = (
    "NEW.id, NEW.swarm, NEW.status, {previous}, NEW.lease_agent, {previous_agent}, "
    "NEW.attempts, NEW.priority, NEW.runtime, NEW.error, substr(NEW.input, 1, 200)"
)
SCHEMA = f"""
CREATE TEMP TRIGGER IF NOT EXISTS task_inserted AFTER INSERT ON main.tasks
BEGIN
    SELECT godel_task_changed({_TASK_COLS.format(previous="NULL", previous_agent="NULL")});
END;
CREATE TEMP TRIGGER IF NOT EXISTS task_status AFTER UPDATE OF status ON main.tasks
WHEN OLD.status IS NOT NEW.status
BEGIN
    SELECT godel_task_changed({
    _TASK_COLS.format(previous="OLD.status", previous_agent="OLD.lease_agent")
});
END;
CREATE TEMP TRIGGER IF NOT EXISTS swarm_inserted AFTER INSERT ON main.swarms
BEGIN SELECT godel_swarm_changed(NEW.name); END;
CREATE TEMP TRIGGER IF NOT EXISTS swarm_updated AFTER UPDATE ON main.swarms
BEGIN SELECT godel_swarm_changed(NEW.name); END;
"""


class Capture:
    """What the triggers reported since the last ``take`` (one write connection, used
    by one op at a time)."""

    def __init__(self) -> None:
        self.tasks: list[tuple[Any, ...]] = []
        self.swarms: list[str] = []

    def install(self, conn: sqlite3.Connection) -> None:
        conn.create_function("godel_task_changed", 11, self._task, deterministic=False)
        conn.create_function("godel_swarm_changed", 1, self._swarm, deterministic=False)
        conn.executescript(SCHEMA)

    def _task(self, *row: Any) -> None:
        self.tasks.append(row)

    def _swarm(self, name: str) -> None:
        if name not in self.swarms:
            self.swarms.append(name)

    def discard(self) -> None:
        """The op rolled back: nothing it reported happened."""
        self.tasks.clear()
        self.swarms.clear()

    def take(self, conn: sqlite3.Connection) -> Changes:
        """What the op just run changed (its swarms read as they now are)."""
        if not self.tasks and not self.swarms:
            return _NONE
        tasks, self.tasks = self.tasks, []
        names, self.swarms = self.swarms, []
        swarms = []
        for name in names:
            row = conn.execute("SELECT * FROM main.swarms WHERE name = ?", (name,)).fetchone()
            if row is not None:
                swarms.append(rows.swarm(row))
        return Changes(
            tasks=[
                TaskChange(
                    task_id=task_id,
                    swarm=swarm,
                    status=status,
                    previous=previous,
                    agent_id=agent_id,
                    previous_agent=previous_agent,
                    attempts=attempts,
                    priority=PRIORITIES[priority].value,
                    runtime=runtime,
                    error=error or "",
                    input=input_,
                )
                for (
                    task_id,
                    swarm,
                    status,
                    previous,
                    agent_id,
                    previous_agent,
                    attempts,
                    priority,
                    runtime,
                    error,
                    input_,
                ) in tasks
            ],
            swarms=swarms,
        )


_NONE = Changes()
