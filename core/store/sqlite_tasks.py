"""The durable task queue and swarms, in SQLite (mixed into ``SqliteStore``).

Every state change of a task is one transaction. Completion is conditional on the lease
token, so a late result from an expired lease never overwrites the real one. In-flight
counts are counted from running leases, never kept as counters, so they cannot drift.
"""

from __future__ import annotations

import json
import random
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from core.errors import InvalidInput, QueueFull, SwarmError, TaskNotFound
from core.models import (
    ExecResult,
    ExecStatus,
    Lease,
    Swarm,
    Task,
    TaskPriority,
    TaskSpec,
    TaskStatus,
    new_id,
    utcnow,
)
from core.store.base import AuditDraft

T = TypeVar("T")

PRIORITIES = list(TaskPriority)
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
WARN_FRACTION = 0.90  # an event warns
REFUSE_FRACTION = 0.95  # submit is refused
ACTIVE = ("queued", "ready", "running")


def retry_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS style): U(0, min(max, base * 2^n))."""
    cap = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(cap / 2, cap)


def _failure_text(result: ExecResult) -> str:
    if result.reason:
        return result.reason
    if result.exit_code is not None:
        return f"{result.status.value}: exit code {result.exit_code}"
    return result.status.value


class TaskStoreMixin:
    """Queue operations. Expects ``_write``, ``db`` and ``_append_audit`` from the store."""

    overall_capacity: int = 100_000

    # provided by SqliteStore
    _write: Callable[..., Awaitable[Any]]
    _append_audit: Callable[..., Awaitable[Any]]

    @property
    def db(self) -> aiosqlite.Connection:
        raise NotImplementedError  # SqliteStore's property

    # rows -------------------------------------------------------------------------

    @staticmethod
    def _task(row: sqlite3.Row, deps: list[str] | None = None) -> Task:
        return Task(
            id=row["id"],
            input=row["input"],
            priority=PRIORITIES[row["priority"]],
            skills=json.loads(row["skills"]),
            depends_on=deps or [],
            max_attempts=row["max_attempts"],
            timeout_s=row["timeout_s"],
            swarm=row["swarm"],
            status=TaskStatus(row["status"]),
            attempts=row["attempts"],
            deps_pending=row["deps_pending"],
            not_before=row["not_before"],
            lease_agent=row["lease_agent"],
            lease_expires=row["lease_expires"],
            exec_id=row["exec_id"],
            result=ExecResult.model_validate_json(row["result"]) if row["result"] else None,
            error=row["error"],
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            finished_at=datetime.fromisoformat(row["finished_at"]) if row["finished_at"] else None,
        )

    @staticmethod
    def _swarm(row: sqlite3.Row) -> Swarm:
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
            created_at=datetime.fromisoformat(row["created_at"]),
        )

    # swarms -------------------------------------------------------------------------

    async def insert_swarm(self, swarm: Swarm, audit: AuditDraft | None = None) -> None:
        async def fn(db: aiosqlite.Connection) -> None:
            old = list(
                await db.execute_fetchall("SELECT status FROM swarms WHERE name = ?", (swarm.name,))
            )
            if old and old[0]["status"] == "active":
                raise SwarmError(f"a swarm named {swarm.name!r} already exists", swarm=swarm.name)
            await db.execute(
                "INSERT OR REPLACE INTO swarms (name, runtime, model, skills, strategy, "
                "min_agents, max_agents, target_per_agent, desired, capacity, status, "
                "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    swarm.name,
                    swarm.runtime,
                    swarm.model,
                    json.dumps(swarm.skills),
                    swarm.strategy,
                    swarm.min_agents,
                    swarm.max_agents,
                    swarm.target_per_agent,
                    swarm.desired,
                    swarm.capacity,
                    swarm.status,
                    swarm.created_at.isoformat(),
                ),
            )
            if audit:
                await self._append_audit(db, audit)

        await self._write(fn)

    async def get_swarm(self, name: str) -> Swarm | None:
        rows = list(await self.db.execute_fetchall("SELECT * FROM swarms WHERE name = ?", (name,)))
        return self._swarm(rows[0]) if rows else None

    async def list_swarms(self, *, include_destroyed: bool = False) -> list[Swarm]:
        sql = "SELECT * FROM swarms"
        if not include_destroyed:
            sql += " WHERE status = 'active'"
        rows = await self.db.execute_fetchall(sql + " ORDER BY created_at")
        return [self._swarm(r) for r in rows]

    async def update_swarm(
        self, name: str, audit: AuditDraft | None = None, **fields: Any
    ) -> Swarm:
        allowed = {"desired", "strategy", "min_agents", "max_agents", "status", "capacity"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update swarm fields {sorted(set(fields) - allowed)}")

        async def fn(db: aiosqlite.Connection) -> None:
            sets = ", ".join(f"{k} = ?" for k in fields)
            cur = await db.execute(
                f"UPDATE swarms SET {sets} WHERE name = ?", (*fields.values(), name)
            )
            if cur.rowcount == 0:
                raise SwarmError(f"swarm {name!r} not found", swarm=name)
            if audit:
                await self._append_audit(db, audit)

        await self._write(fn)
        swarm = await self.get_swarm(name)
        assert swarm is not None
        return swarm

    # submit ---------------------------------------------------------------------------

    async def submit_tasks(
        self,
        specs: Sequence[TaskSpec],
        *,
        swarm_capacity: int | None,
        audit_actor: str | None = None,
    ) -> tuple[list[Task], float]:
        """Insert tasks (one transaction); returns them and the queue's fill fraction.

        Refused with ``QueueFull`` when the swarm's or the overall queue would pass 95 %
        of its capacity. An unknown dependency is an error; a dependency that already
        failed for good fails the new task at once, with that reason.
        """
        if not specs:
            return [], 0.0
        swarm = specs[0].swarm
        if any(s.swarm != swarm for s in specs):
            raise InvalidInput("tasks submitted together must share one swarm")

        async def fn(db: aiosqlite.Connection) -> tuple[list[str], float]:
            rows = list(
                await db.execute_fetchall(
                    "SELECT count(*) AS n, sum(swarm IS ?) AS s FROM tasks "
                    "WHERE status IN ('queued','ready','running')",
                    (swarm,),
                )
            )
            in_swarm, overall = int(rows[0]["s"] or 0), int(rows[0]["n"] or 0)
            fill = 0.0
            for label, used, cap in (
                (f"swarm {swarm!r}" if swarm else "the default pool", in_swarm, swarm_capacity),
                ("the whole queue", overall, self.overall_capacity),
            ):
                if cap is None:
                    continue
                after = used + len(specs)
                fill = max(fill, after / cap)
                if after > cap * REFUSE_FRACTION:
                    raise QueueFull(
                        f"queue full: {label} holds {used} active tasks of a capacity of {cap} "
                        f"(submits are refused above {REFUSE_FRACTION:.0%}); retry once running "
                        "tasks finish, or raise the capacity",
                        scope=label,
                        active=used,
                        capacity=cap,
                        refuse_at=REFUSE_FRACTION,
                    )
            now_iso = utcnow().isoformat()
            ids: list[str] = []
            for spec in specs:
                task_id = new_id("task")
                pending = 0
                failed_dep: str | None = None
                for dep in dict.fromkeys(spec.depends_on):
                    st = list(
                        await db.execute_fetchall("SELECT status FROM tasks WHERE id = ?", (dep,))
                    )
                    if not st:
                        if dep in ids:
                            pending += 1
                            continue
                        raise TaskNotFound(f"dependency {dep!r} is not a task", task_id=dep)
                    status = st[0]["status"]
                    if status in ("failed", "dead", "cancelled"):
                        failed_dep = failed_dep or dep
                    elif status != "succeeded":
                        pending += 1
                status = "ready" if pending == 0 else "queued"
                error = ""
                if failed_dep is not None:
                    status, error = "failed", f"dependency {failed_dep} failed for good"
                await db.execute(
                    "INSERT INTO tasks (id, swarm, input, priority, skills, max_attempts, "
                    "timeout_s, status, deps_pending, error, created_at, updated_at, "
                    "finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        task_id,
                        spec.swarm,
                        spec.input,
                        spec.priority.rank,
                        json.dumps(spec.skills),
                        spec.max_attempts,
                        spec.timeout_s,
                        status,
                        pending,
                        error,
                        now_iso,
                        now_iso,
                        now_iso if status == "failed" else None,
                    ),
                )
                if spec.depends_on:
                    await db.executemany(
                        "INSERT OR IGNORE INTO task_deps (task_id, dep_id) VALUES (?, ?)",
                        [(task_id, d) for d in spec.depends_on],
                    )
                ids.append(task_id)
                if audit_actor is not None:
                    await self._append_audit(
                        db,
                        AuditDraft(
                            actor=audit_actor,
                            action="task.submit",
                            subject=task_id,
                            result=status,
                            payload={
                                "input": spec.input,
                                "priority": spec.priority.value,
                                "skills": spec.skills,
                                "depends_on": spec.depends_on,
                                "swarm": spec.swarm,
                            },
                        ),
                    )
            return ids, fill

        ids, fill = await self._write(fn)
        tasks = [await self.get_task(i) for i in ids]
        return [t for t in tasks if t is not None], fill

    async def get_task(self, task_id: str) -> Task | None:
        rows = list(await self.db.execute_fetchall("SELECT * FROM tasks WHERE id = ?", (task_id,)))
        if not rows:
            return None
        deps = [
            r["dep_id"]
            for r in await self.db.execute_fetchall(
                "SELECT dep_id FROM task_deps WHERE task_id = ?", (task_id,)
            )
        ]
        return self._task(rows[0], deps)

    async def list_tasks(
        self,
        *,
        swarm: str | None = None,
        status: TaskStatus | None = None,
        limit: int = 1000,
        any_swarm: bool = True,
    ) -> list[Task]:
        sql = "SELECT * FROM tasks WHERE 1=1"
        params: list[Any] = []
        if not any_swarm or swarm is not None:
            sql += " AND swarm IS ?"
            params.append(swarm)
        if status is not None:
            sql += " AND status = ?"
            params.append(status.value)
        sql += " ORDER BY rowid DESC LIMIT ?"
        params.append(limit)
        return [self._task(r) for r in await self.db.execute_fetchall(sql, params)]

    async def count_tasks(self, swarm: str | None = None, any_swarm: bool = True) -> dict[str, int]:
        sql = "SELECT status, count(*) AS n FROM tasks"
        params: list[Any] = []
        if not any_swarm or swarm is not None:
            sql += " WHERE swarm IS ?"
            params.append(swarm)
        rows = await self.db.execute_fetchall(sql + " GROUP BY status", params)
        return {r["status"]: r["n"] for r in rows}

    async def ready_by_priority(self, swarm: str | None) -> dict[str, int]:
        rows = await self.db.execute_fetchall(
            "SELECT priority, count(*) AS n FROM tasks WHERE status = 'ready' AND swarm IS ? "
            "GROUP BY priority",
            (swarm,),
        )
        return {PRIORITIES[r["priority"]].value: r["n"] for r in rows}

    # claim, heartbeat, complete ----------------------------------------------------------

    async def ready_tasks(self, swarm: str | None, limit: int, now: float) -> list[Task]:
        """Ready tasks in claim order: priority, then age (FIFO within a priority)."""
        rows = await self.db.execute_fetchall(
            "SELECT * FROM tasks WHERE status = 'ready' AND swarm IS ? AND not_before <= ? "
            "ORDER BY priority, rowid LIMIT ?",
            (swarm, now, limit),
        )
        return [self._task(r) for r in rows]

    async def claim(
        self,
        pairs: Sequence[tuple[str, str]],
        lease_s: float,
        audits: Sequence[AuditDraft | None] = (),
    ) -> list[Lease]:
        """Lease each (task, agent) pair whose task is still ready; one transaction.

        ``audits`` (one per pair, e.g. the routing decision) commit with their claim.
        """
        if not pairs:
            return []

        async def fn(db: aiosqlite.Connection) -> list[Lease]:
            now = time.time()
            out = []
            for i, (task_id, agent_id) in enumerate(pairs):
                token = secrets.token_hex(8)
                expires = now + lease_s
                rows = list(
                    await db.execute_fetchall(
                        "UPDATE tasks SET status = 'running', attempts = attempts + 1, "
                        "lease_token = ?, lease_agent = ?, lease_expires = ?, updated_at = ? "
                        "WHERE id = ? AND status = 'ready' RETURNING *",
                        (token, agent_id, expires, utcnow().isoformat(), task_id),
                    )
                )
                if not rows:
                    continue
                draft = audits[i] if i < len(audits) else None
                if draft is not None:
                    await self._append_audit(db, draft)
                out.append(
                    Lease(task=self._task(rows[0]), token=token, agent_id=agent_id, expires=expires)
                )
            return out

        leases: list[Lease] = await self._write(fn)
        return leases

    async def in_flight(self, agent_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Running leases per agent: the only source of in-flight counts."""
        rows = await self.db.execute_fetchall(
            "SELECT lease_agent, count(*) AS n FROM tasks WHERE status = 'running' "
            "GROUP BY lease_agent"
        )
        counts = {r["lease_agent"]: r["n"] for r in rows}
        if agent_ids is None:
            return counts
        return {a: counts.get(a, 0) for a in agent_ids}

    async def heartbeat(self, task_id: str, token: str, lease_s: float) -> bool:
        async def fn(db: aiosqlite.Connection) -> bool:
            cur = await db.execute(
                "UPDATE tasks SET lease_expires = ? WHERE id = ? AND lease_token = ? "
                "AND status = 'running'",
                (time.time() + lease_s, task_id, token),
            )
            return bool(cur.rowcount == 1)

        return bool(await self._write(fn))

    async def complete(
        self,
        task_id: str,
        token: str,
        result: ExecResult,
        *,
        ok: bool,
        retryable: bool = True,
        audit_actor: str = "dispatcher",
    ) -> TaskStatus | None:
        """Finish an attempt, if ``token`` still holds the lease; None if it does not.

        Success releases dependents; a failure is retried with backoff until the last
        attempt, then dead-lettered, and its dependents fail with that reason.
        """

        async def fn(db: aiosqlite.Connection) -> TaskStatus | None:
            rows = list(
                await db.execute_fetchall(
                    "SELECT attempts, max_attempts FROM tasks WHERE id = ? AND "
                    "lease_token = ? AND status = 'running'",
                    (task_id, token),
                )
            )
            if not rows:
                return None  # a late result from an expired or cancelled lease
            attempts, max_attempts = rows[0]["attempts"], rows[0]["max_attempts"]
            now_iso = utcnow().isoformat()
            if ok:
                status = TaskStatus.SUCCEEDED
            elif retryable and attempts < max_attempts:
                status = TaskStatus.READY
            else:
                status = TaskStatus.DEAD
            not_before = time.time() + retry_delay(attempts) if status is TaskStatus.READY else 0
            # lease_agent stays: it names the agent that ran the last attempt.
            await db.execute(
                "UPDATE tasks SET status = ?, exec_id = ?, result = ?, error = ?, not_before = ?, "
                "lease_token = NULL, lease_expires = NULL, updated_at = ?, "
                "finished_at = ? WHERE id = ?",
                (
                    status.value,
                    result.exec_id or None,
                    result.model_dump_json(),
                    "" if ok else _failure_text(result),
                    not_before,
                    now_iso,
                    now_iso if status.is_final else None,
                    task_id,
                ),
            )
            if status is TaskStatus.SUCCEEDED:
                await self._release_dependents(db, task_id)
            elif status is TaskStatus.DEAD:
                await self._fail_dependents(db, task_id, audit_actor)
            await self._append_audit(
                db,
                AuditDraft(
                    actor=audit_actor,
                    action="task.finish" if status.is_final else "task.retry",
                    subject=task_id,
                    result=status.value,
                    payload={
                        "attempt": attempts,
                        "exec_id": result.exec_id,
                        "exit_code": result.exit_code,
                        "reason": result.reason,
                    },
                ),
            )
            return status

        status: TaskStatus | None = await self._write(fn)
        return status

    async def _release_dependents(self, db: aiosqlite.Connection, task_id: str) -> None:
        await db.execute(
            "UPDATE tasks SET deps_pending = deps_pending - 1, updated_at = ? WHERE id IN "
            "(SELECT task_id FROM task_deps WHERE dep_id = ?) AND status = 'queued'",
            (utcnow().isoformat(), task_id),
        )
        await db.execute(
            "UPDATE tasks SET status = 'ready' WHERE status = 'queued' AND deps_pending <= 0 "
            "AND id IN (SELECT task_id FROM task_deps WHERE dep_id = ?)",
            (task_id,),
        )

    async def _fail_dependents(self, db: aiosqlite.Connection, task_id: str, actor: str) -> None:
        """A task failed for good: everything that waits on it, transitively, fails too."""
        frontier = [task_id]
        now_iso = utcnow().isoformat()
        while frontier:
            dep = frontier.pop()
            rows = await db.execute_fetchall(
                "SELECT t.id FROM tasks t JOIN task_deps d ON d.task_id = t.id "
                "WHERE d.dep_id = ? AND t.status IN ('queued', 'ready')",
                (dep,),
            )
            for r in rows:
                await db.execute(
                    "UPDATE tasks SET status = 'failed', error = ?, updated_at = ?, "
                    "finished_at = ? WHERE id = ?",
                    (f"dependency {dep} failed for good", now_iso, now_iso, r["id"]),
                )
                await self._append_audit(
                    db,
                    AuditDraft(
                        actor=actor,
                        action="task.finish",
                        subject=r["id"],
                        result="failed",
                        payload={"reason": f"dependency {dep} failed for good"},
                    ),
                )
                frontier.append(r["id"])

    async def rescue_expired(self, now: float, actor: str = "dispatcher") -> list[str]:
        """Running tasks whose lease ran out: a failed attempt (retry or dead letter)."""
        rows = await self.db.execute_fetchall(
            "SELECT id, lease_token, lease_agent FROM tasks WHERE status = 'running' "
            "AND lease_expires < ?",
            (now,),
        )
        rescued = []
        for r in rows:
            status = await self.complete(
                r["id"],
                r["lease_token"],
                ExecResult(
                    exec_id="",
                    status=ExecStatus.INTERRUPTED,
                    exit_code=None,
                    reason=f"lease expired on agent {r['lease_agent']}",
                ),
                ok=False,
                audit_actor=actor,
            )
            if status is not None:
                rescued.append(r["id"])
        return rescued

    async def requeue_agent(self, agent_id: str, reason: str, actor: str) -> list[str]:
        """An agent died: its running tasks go back to the queue at once.

        The attempt is not counted against the task: the agent failed, not the task.
        """

        async def fn(db: aiosqlite.Connection) -> list[str]:
            rows = await db.execute_fetchall(
                "SELECT id FROM tasks WHERE status = 'running' AND lease_agent = ?", (agent_id,)
            )
            ids = [r["id"] for r in rows]
            for task_id in ids:
                await db.execute(
                    "UPDATE tasks SET status = 'ready', attempts = max(0, attempts - 1), "
                    "lease_token = NULL, lease_agent = NULL, lease_expires = NULL, "
                    "not_before = 0, error = ?, updated_at = ? WHERE id = ?",
                    (reason, utcnow().isoformat(), task_id),
                )
                await self._append_audit(
                    db,
                    AuditDraft(
                        actor=actor,
                        action="task.requeue",
                        subject=task_id,
                        result="ready",
                        payload={"agent_id": agent_id, "reason": reason},
                    ),
                )
            return ids

        ids: list[str] = await self._write(fn)
        return ids

    async def cancel_task(self, task_id: str, actor: str) -> tuple[TaskStatus, str | None]:
        """Cancel a task that has not finished; returns (previous status, its agent)."""

        async def fn(db: aiosqlite.Connection) -> tuple[TaskStatus, str | None]:
            rows = list(
                await db.execute_fetchall(
                    "SELECT status, lease_agent FROM tasks WHERE id = ?", (task_id,)
                )
            )
            if not rows:
                raise TaskNotFound(f"task {task_id!r} not found", task_id=task_id)
            prev = TaskStatus(rows[0]["status"])
            if prev.is_final:
                raise InvalidInput(
                    f"task {task_id} is already {prev.value}", task_id=task_id, status=prev.value
                )
            now_iso = utcnow().isoformat()
            await db.execute(
                "UPDATE tasks SET status = 'cancelled', lease_token = NULL, lease_agent = NULL, "
                "lease_expires = NULL, error = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                (f"cancelled by {actor}", now_iso, now_iso, task_id),
            )
            await self._append_audit(
                db,
                AuditDraft(
                    actor=actor,
                    action="task.cancel",
                    subject=task_id,
                    payload={"previous": prev.value},
                ),
            )
            await self._fail_dependents(db, task_id, actor)
            return prev, rows[0]["lease_agent"]

        out: tuple[TaskStatus, str | None] = await self._write(fn)
        return out

    async def retry_task(self, task_id: str, actor: str) -> Task:
        """Put a finished, unsuccessful task back in the queue with fresh attempts."""

        async def fn(db: aiosqlite.Connection) -> None:
            rows = list(
                await db.execute_fetchall("SELECT status FROM tasks WHERE id = ?", (task_id,))
            )
            if not rows:
                raise TaskNotFound(f"task {task_id!r} not found", task_id=task_id)
            status = TaskStatus(rows[0]["status"])
            if status not in (TaskStatus.DEAD, TaskStatus.FAILED, TaskStatus.CANCELLED):
                raise InvalidInput(
                    f"task {task_id} is {status.value}; only dead, failed or cancelled tasks "
                    "can be retried",
                    task_id=task_id,
                )
            counted = await db.execute_fetchall(
                "SELECT count(*) AS n FROM task_deps d JOIN tasks t ON t.id = d.dep_id "
                "WHERE d.task_id = ? AND t.status != 'succeeded'",
                (task_id,),
            )
            pending = next(iter(counted))["n"]
            await db.execute(
                "UPDATE tasks SET status = ?, attempts = 0, deps_pending = ?, not_before = 0, "
                "error = '', finished_at = NULL, updated_at = ? WHERE id = ?",
                ("ready" if pending == 0 else "queued", pending, utcnow().isoformat(), task_id),
            )
            await self._append_audit(
                db, AuditDraft(actor=actor, action="task.retry.manual", subject=task_id)
            )

        await self._write(fn)
        task = await self.get_task(task_id)
        assert task is not None
        return task
