"""The durable task queue in SQLite: op handlers and reads.

Every state change of a task is one transaction. Completion is conditional on the lease
token, so a late result from an expired lease never overwrites the real one. In-flight
counts are counted from running leases, never kept as counters, so they cannot drift.
Synchronous: everything here runs on the store's database thread.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from core.audit import AuditDraft
from core.errors import InvalidInput, QueueFull, TaskNotFound
from core.models import (
    ExecResult,
    ExecStatus,
    Lease,
    Task,
    TaskStatus,
    new_id,
    utcnow,
)
from core.store import ops
from core.store.base import Taker
from core.store.queue_rules import (
    ACTIVE,
    FINAL_FAILURES,
    PRIORITIES,
    REFUSE_FRACTION,
    failure_text,
    final_failure_text,
    retry_delay,
)
from core.store.sqlite import rows
from core.store.sqlite.tx import Tx

_ACTIVE_SQL = "('queued','ready','running')"

# --- submit ------------------------------------------------------------------------------


def submit_tasks(tx: Tx, op: ops.SubmitTasks) -> ops.Submitted:
    specs = op.specs
    if not specs:
        return ops.Submitted([], 0.0)
    swarm = specs[0].swarm
    if any(s.swarm != swarm for s in specs):
        raise InvalidInput("tasks submitted together must share one swarm")
    row = tx.one(
        f"SELECT count(*) AS n, sum(swarm IS ?) AS s FROM tasks WHERE status IN {_ACTIVE_SQL}",
        (swarm,),
    )
    assert row is not None
    in_swarm, overall = int(row["s"] or 0), int(row["n"] or 0)
    fill = 0.0
    for label, used, cap in (
        (f"swarm {swarm!r}" if swarm else "the default pool", in_swarm, op.swarm_capacity),
        ("the whole queue", overall, op.overall_capacity),
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
    now = utcnow()
    now_iso = now.isoformat()
    made: list[Task] = []
    ids: set[str] = set()
    for spec in specs:
        task_id = new_id("task")
        pending = 0
        failed_dep: str | None = None
        deps = list(dict.fromkeys(spec.depends_on))
        for dep in deps:
            found = tx.one("SELECT status FROM tasks WHERE id = ?", (dep,))
            if found is None:
                if dep in ids:
                    pending += 1
                    continue
                raise TaskNotFound(f"dependency {dep!r} is not a task", task_id=dep)
            if found["status"] in FINAL_FAILURES:
                failed_dep = failed_dep or dep
            elif found["status"] != "succeeded":
                pending += 1
        status = TaskStatus.READY if pending == 0 else TaskStatus.QUEUED
        error = ""
        if failed_dep is not None:
            status, error = TaskStatus.FAILED, f"dependency {failed_dep} failed for good"
        tx.run(
            "INSERT INTO tasks (id, swarm, input, priority, skills, max_attempts, "
            "timeout_s, status, deps_pending, error, created_at, updated_at, "
            "finished_at, runtime) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                task_id,
                spec.swarm,
                spec.input,
                spec.priority.rank,
                json.dumps(spec.skills),
                spec.max_attempts,
                spec.timeout_s,
                status.value,
                pending,
                error,
                now_iso,
                now_iso,
                now_iso if status is TaskStatus.FAILED else None,
                spec.runtime,
            ),
        )
        if deps:
            tx.many(
                "INSERT OR IGNORE INTO task_deps (task_id, dep_id) VALUES (?, ?)",
                [(task_id, d) for d in deps],
            )
        ids.add(task_id)
        made.append(
            Task(
                id=task_id,
                input=spec.input,
                priority=spec.priority,
                skills=spec.skills,
                depends_on=deps,
                max_attempts=spec.max_attempts,
                timeout_s=spec.timeout_s,
                swarm=spec.swarm,
                runtime=spec.runtime,
                status=status,
                deps_pending=pending,
                error=error,
                created_at=now,
                updated_at=now,
                finished_at=now if status is TaskStatus.FAILED else None,
            )
        )
        tx.audit(
            AuditDraft(
                actor=op.actor,
                action="task.submit",
                subject=task_id,
                result=status.value,
                payload={
                    "input": spec.input,
                    "priority": spec.priority.value,
                    "skills": spec.skills,
                    "depends_on": spec.depends_on,
                    "swarm": spec.swarm,
                    "runtime": spec.runtime,
                },
            )
        )
    return ops.Submitted(made, fill)


# --- claim, heartbeat, complete ----------------------------------------------------------


def claim_tasks(tx: Tx, op: ops.ClaimTasks) -> list[Lease]:
    out = []
    now_iso = utcnow().isoformat()
    expires = op.now + op.lease_s
    for claim in op.claims:
        token = secrets.token_hex(8)
        row = tx.one(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, "
            "lease_token = ?, lease_agent = ?, lease_expires = ?, updated_at = ? "
            "WHERE id = ? AND status = 'ready' RETURNING *",
            (token, claim.agent_id, expires, now_iso, claim.task_id),
        )
        if row is None:
            continue
        if claim.audit is not None:
            tx.audit(claim.audit)
        out.append(
            Lease(task=rows.task(row), token=token, agent_id=claim.agent_id, expires=expires)
        )
    return out


def heartbeat(tx: Tx, op: ops.Heartbeat) -> bool:
    cur = tx.run(
        "UPDATE tasks SET lease_expires = ? WHERE id = ? AND lease_token = ? "
        "AND status = 'running'",
        (op.now + op.lease_s, op.task_id, op.token),
    )
    return cur.rowcount == 1


def complete_task(tx: Tx, op: ops.CompleteTask) -> TaskStatus | None:
    return _complete(tx, op.task_id, op.token, op.result, op.ok, op.retryable, op.actor, op.now)


def _complete(
    tx: Tx,
    task_id: str,
    token: str,
    result: ExecResult,
    ok: bool,
    retryable: bool,
    actor: str,
    now: float,
) -> TaskStatus | None:
    row = tx.one(
        "SELECT attempts, max_attempts FROM tasks WHERE id = ? AND lease_token = ? "
        "AND status = 'running'",
        (task_id, token),
    )
    if row is None:
        return None  # a late result from an expired or cancelled lease
    attempts, max_attempts = row["attempts"], row["max_attempts"]
    if ok:
        status = TaskStatus.SUCCEEDED
    elif retryable and attempts < max_attempts:
        status = TaskStatus.READY
    else:
        status = TaskStatus.FAILED
    not_before = now + retry_delay(attempts) if status is TaskStatus.READY else 0
    if ok:
        error = ""
    elif status is TaskStatus.FAILED:
        error = final_failure_text(result, attempts, retryable)
    else:
        error = failure_text(result)
    now_iso = utcnow().isoformat()
    # lease_agent stays: it names the agent that ran the last attempt.
    tx.run(
        "UPDATE tasks SET status = ?, exec_id = ?, result = ?, error = ?, not_before = ?, "
        "lease_token = NULL, lease_expires = NULL, updated_at = ?, "
        "finished_at = ? WHERE id = ?",
        (
            status.value,
            result.exec_id or None,
            result.model_dump_json(),
            error,
            not_before,
            now_iso,
            now_iso if status.is_final else None,
            task_id,
        ),
    )
    if status is TaskStatus.SUCCEEDED:
        _release_dependents(tx, task_id)
    elif status is TaskStatus.FAILED:
        _fail_dependents(tx, task_id, actor)
    tx.audit(
        AuditDraft(
            actor=actor,
            action="task.finish" if status.is_final else "task.retry",
            subject=task_id,
            result=status.value,
            payload={
                "attempt": attempts,
                "exec_id": result.exec_id,
                "exit_code": result.exit_code,
                "reason": result.reason,
            },
        )
    )
    return status


def _release_dependents(tx: Tx, task_id: str) -> None:
    tx.run(
        "UPDATE tasks SET deps_pending = deps_pending - 1, updated_at = ? WHERE id IN "
        "(SELECT task_id FROM task_deps WHERE dep_id = ?) AND status = 'queued'",
        (utcnow().isoformat(), task_id),
    )
    tx.run(
        "UPDATE tasks SET status = 'ready' WHERE status = 'queued' AND deps_pending <= 0 "
        "AND id IN (SELECT task_id FROM task_deps WHERE dep_id = ?)",
        (task_id,),
    )


def _fail_dependents(tx: Tx, task_id: str, actor: str) -> None:
    """A task failed for good: everything that waits on it, transitively, fails too."""
    frontier = [task_id]
    now_iso = utcnow().isoformat()
    while frontier:
        dep = frontier.pop()
        found = tx.all(
            "SELECT t.id FROM tasks t JOIN task_deps d ON d.task_id = t.id "
            "WHERE d.dep_id = ? AND t.status IN ('queued', 'ready')",
            (dep,),
        )
        for r in found:
            reason = f"dependency {dep} failed for good"
            tx.run(
                "UPDATE tasks SET status = 'failed', error = ?, updated_at = ?, "
                "finished_at = ? WHERE id = ?",
                (reason, now_iso, now_iso, r["id"]),
            )
            tx.audit(
                AuditDraft(
                    actor=actor,
                    action="task.finish",
                    subject=r["id"],
                    result="failed",
                    payload={"reason": reason},
                )
            )
            frontier.append(r["id"])


def rescue_expired(tx: Tx, op: ops.RescueExpired) -> list[str]:
    found = tx.all(
        "SELECT id, lease_token, lease_agent FROM tasks WHERE status = 'running' "
        "AND lease_expires < ?",
        (op.now,),
    )
    rescued = []
    for r in found:
        expired = ExecResult(
            exec_id="",
            status=ExecStatus.INTERRUPTED,
            exit_code=None,
            reason=f"lease expired on agent {r['lease_agent']}",
        )
        if _complete(tx, r["id"], r["lease_token"], expired, False, True, op.actor, op.now):
            rescued.append(r["id"])
    return rescued


def requeue_agent(tx: Tx, op: ops.RequeueAgent) -> list[str]:
    found = tx.all(
        "SELECT id FROM tasks WHERE status = 'running' AND lease_agent = ?", (op.agent_id,)
    )
    now_iso = utcnow().isoformat()
    ids = [r["id"] for r in found]
    for task_id in ids:
        tx.run(
            "UPDATE tasks SET status = 'ready', attempts = max(0, attempts - 1), "
            "lease_token = NULL, lease_agent = NULL, lease_expires = NULL, "
            "not_before = 0, error = ?, updated_at = ? WHERE id = ?",
            (op.reason, now_iso, task_id),
        )
        tx.audit(
            AuditDraft(
                actor=op.actor,
                action="task.requeue",
                subject=task_id,
                result="ready",
                payload={"agent_id": op.agent_id, "reason": op.reason},
            )
        )
    return ids


def _cancel(tx: Tx, task_id: str, actor: str) -> tuple[TaskStatus, str | None]:
    row = tx.one("SELECT status, lease_agent FROM tasks WHERE id = ?", (task_id,))
    if row is None:
        raise TaskNotFound(f"task {task_id!r} not found", task_id=task_id)
    prev = TaskStatus(row["status"])
    if prev.is_final:
        raise InvalidInput(
            f"task {task_id} is already {prev.value}", task_id=task_id, status=prev.value
        )
    now_iso = utcnow().isoformat()
    tx.run(
        "UPDATE tasks SET status = 'cancelled', lease_token = NULL, lease_agent = NULL, "
        "lease_expires = NULL, error = ?, updated_at = ?, finished_at = ? WHERE id = ?",
        (f"cancelled by {actor}", now_iso, now_iso, task_id),
    )
    tx.audit(
        AuditDraft(
            actor=actor, action="task.cancel", subject=task_id, payload={"previous": prev.value}
        )
    )
    _fail_dependents(tx, task_id, actor)
    agent: str | None = row["lease_agent"] if prev is TaskStatus.RUNNING else None
    return prev, agent


def cancel_task(tx: Tx, op: ops.CancelTask) -> tuple[TaskStatus, str | None]:
    return _cancel(tx, op.task_id, op.actor)


def cancel_swarm_tasks(tx: Tx, op: ops.CancelSwarmTasks) -> list[tuple[str, str | None]]:
    found = tx.all(
        f"SELECT id FROM tasks WHERE swarm = ? AND status IN {_ACTIVE_SQL} ORDER BY rowid",
        (op.swarm,),
    )
    out = []
    for r in found:
        # An earlier cancel in this loop may have failed it as a dependent already.
        still = tx.one("SELECT status FROM tasks WHERE id = ?", (r["id"],))
        if still is None or still["status"] not in ACTIVE:
            continue
        _, agent = _cancel(tx, r["id"], op.actor)
        out.append((r["id"], agent))
    return out


def fail_waiting_tasks(tx: Tx, op: ops.FailWaitingTasks) -> list[str]:
    now_iso = utcnow().isoformat()
    failed = []
    for task_id, reason in op.failures:
        cur = tx.run(
            "UPDATE tasks SET status = 'failed', error = ?, updated_at = ?, finished_at = ? "
            "WHERE id = ? AND status IN ('queued', 'ready')",
            (reason, now_iso, now_iso, task_id),
        )
        if cur.rowcount == 0:
            continue  # claimed or cancelled meanwhile
        tx.audit(
            AuditDraft(
                actor=op.actor,
                action="task.finish",
                subject=task_id,
                result="failed",
                payload={"reason": reason},
            )
        )
        _fail_dependents(tx, task_id, op.actor)
        failed.append(task_id)
    return failed


def retry_task(tx: Tx, op: ops.RetryTask) -> Task:
    row = tx.one("SELECT status FROM tasks WHERE id = ?", (op.task_id,))
    if row is None:
        raise TaskNotFound(f"task {op.task_id!r} not found", task_id=op.task_id)
    status = TaskStatus(row["status"])
    if status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        raise InvalidInput(
            f"task {op.task_id} is {status.value}; only failed or cancelled tasks can be retried",
            task_id=op.task_id,
        )
    counted = tx.one(
        "SELECT count(*) AS n FROM task_deps d JOIN tasks t ON t.id = d.dep_id "
        "WHERE d.task_id = ? AND t.status != 'succeeded'",
        (op.task_id,),
    )
    pending = counted["n"] if counted else 0
    tx.run(
        "UPDATE tasks SET status = ?, attempts = 0, deps_pending = ?, not_before = 0, "
        "error = '', finished_at = NULL, updated_at = ? WHERE id = ?",
        ("ready" if pending == 0 else "queued", pending, utcnow().isoformat(), op.task_id),
    )
    tx.audit(AuditDraft(actor=op.actor, action="task.retry.manual", subject=op.task_id))
    task = get_task(tx.conn, op.task_id)
    assert task is not None
    return task


# --- reads -------------------------------------------------------------------------------


def get_task(conn: sqlite3.Connection, task_id: str) -> Task | None:
    row = conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        return None
    deps = [
        r["dep_id"]
        for r in conn.execute("SELECT dep_id FROM task_deps WHERE task_id = ?", (task_id,))
    ]
    return rows.task(row, deps)


def list_tasks(
    conn: sqlite3.Connection,
    swarm: str | None,
    status: TaskStatus | None,
    limit: int,
    any_swarm: bool,
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
    return [rows.task(r) for r in conn.execute(sql, params)]


def count_tasks(conn: sqlite3.Connection, swarm: str | None, any_swarm: bool) -> dict[str, int]:
    sql = "SELECT status, count(*) AS n FROM tasks"
    params: list[Any] = []
    if not any_swarm or swarm is not None:
        sql += " WHERE swarm IS ?"
        params.append(swarm)
    return {r["status"]: r["n"] for r in conn.execute(sql + " GROUP BY status", params)}


def ready_by_priority(conn: sqlite3.Connection, swarm: str | None) -> dict[str, int]:
    cur = conn.execute(
        "SELECT priority, count(*) AS n FROM tasks WHERE status = 'ready' AND swarm IS ? "
        "GROUP BY priority",
        (swarm,),
    )
    return {PRIORITIES[r["priority"]].value: r["n"] for r in cur}


def ready_tasks(
    conn: sqlite3.Connection,
    swarm: str | None,
    limit: int,
    now: float,
    takers: Collection[Taker] | None,
    exclude: Sequence[str] = (),
) -> list[Task]:
    sql = "SELECT * FROM tasks WHERE status = 'ready' AND swarm IS ? AND not_before <= ?"
    params: list[Any] = [swarm, now]
    if exclude:
        sql += " AND id NOT IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(list(exclude)))
    if takers is not None:
        # Only tasks one of the pool's agents could take (its runtime, all its skills):
        # the others must not hold the first places of every round while the tasks
        # behind them starve. Most tasks name neither: no JSON walk for them.
        sql += (
            " AND ((tasks.runtime IS NULL AND tasks.skills = '[]') OR EXISTS ("
            " SELECT 1 FROM json_each(?) AS ag"
            " WHERE (tasks.runtime IS NULL OR tasks.runtime = json_extract(ag.value, '$[0]'))"
            " AND NOT EXISTS (SELECT 1 FROM json_each(tasks.skills) AS need"
            " WHERE need.value NOT IN"
            " (SELECT value FROM json_each(json_extract(ag.value, '$[1]'))))))"
        )
        params.append(json.dumps(sorted([rt, sorted(skills)] for rt, skills in set(takers))))
    sql += " ORDER BY priority, rowid LIMIT ?"
    params.append(limit)
    return [rows.task(r) for r in conn.execute(sql, params)]


def in_flight(conn: sqlite3.Connection, agent_ids: Sequence[str] | None) -> dict[str, int]:
    cur = conn.execute(
        "SELECT lease_agent, count(*) AS n FROM tasks WHERE status = 'running' GROUP BY lease_agent"
    )
    counts = {r["lease_agent"]: r["n"] for r in cur}
    if agent_ids is None:
        return counts
    return {a: counts.get(a, 0) for a in agent_ids}
