"""Budgets in SQLite: op handlers and reads (synchronous, on the database thread).

A reservation is one conditional UPDATE per budget that applies (``spent + reserved +
amount <= limit``) inside the op's one transaction: two reservations can never both
take the last of a budget. Every handler first starts new periods for budgets whose
period ended, so whatever reads a budget sees this period's spend.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.audit import AuditDraft
from core.errors import InvalidInput
from core.models import (
    MICRO_USD,
    Budget,
    BudgetPeriod,
    BudgetPeriodRecord,
    BudgetUnit,
    period_end,
    period_start,
)
from core.store import ops
from core.store.sqlite.tx import Tx

ACTOR = "budgets"


def _amount(unit: str, n: int) -> Decimal:
    return Decimal(n) / MICRO_USD if unit == "usd" else Decimal(n)


def budget(row: sqlite3.Row) -> Budget:
    period: BudgetPeriod = row["period"]
    start = datetime.fromisoformat(row["period_start"])
    return Budget(
        scope=row["scope"],
        unit=row["unit"],
        limit=_amount(row["unit"], row["limit_amount"]),
        spent=_amount(row["unit"], row["spent"]),
        reserved=_amount(row["unit"], row["reserved"]),
        period=period,
        period_start=start,
        reset_at=period_end(period, start),
    )


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _history(tx: Tx, row: sqlite3.Row, ended: datetime) -> None:
    tx.run(
        "INSERT INTO budget_history (scope, unit, limit_amount, spent, period, started_at, "
        "ended_at) VALUES (?,?,?,?,?,?,?)",
        (
            row["scope"],
            row["unit"],
            row["limit_amount"],
            row["spent"],
            row["period"],
            row["period_start"],
            ended.isoformat(),
        ),
    )


def _roll(tx: Tx, now: float) -> None:
    """New periods for budgets whose period ended: the old one is kept in the history."""
    at = _at(now)
    for row in tx.all("SELECT * FROM budgets WHERE period != 'none'"):
        end = period_end(row["period"], datetime.fromisoformat(row["period_start"]))
        if end is None or at < end:
            continue
        _history(tx, row, end)
        start = period_start(row["period"], at)
        tx.run(
            "UPDATE budgets SET spent = 0, period_start = ?, updated_at = ? "
            "WHERE scope = ? AND unit = ?",
            (start.isoformat(), at.isoformat(), row["scope"], row["unit"]),
        )
        tx.audit(
            AuditDraft(
                actor=ACTOR,
                action="budget.period",
                subject=row["scope"],
                result="reset",
                payload={
                    "unit": row["unit"],
                    "spent": str(_amount(row["unit"], row["spent"])),
                    "period": row["period"],
                    "started_at": row["period_start"],
                    "new_period_start": start.isoformat(),
                },
            )
        )


def _get(tx: Tx, scope: str, unit: str) -> Budget | None:
    row = tx.one("SELECT * FROM budgets WHERE scope = ? AND unit = ?", (scope, unit))
    return budget(row) if row else None


def set_budget(tx: Tx, op: ops.SetBudget) -> Budget:
    _roll(tx, op.now)
    at = _at(op.now)
    old = tx.one("SELECT * FROM budgets WHERE scope = ? AND unit = ?", (op.scope, op.unit))
    if old is not None and old["period"] != op.period:
        # A new period length starts a new period: the spend so far goes to the history.
        _history(tx, old, at)
    start = period_start(op.period, at).isoformat()
    if old is None or old["period"] != op.period:
        tx.run(
            "INSERT OR REPLACE INTO budgets (scope, unit, limit_amount, period, period_start, "
            "spent, reserved, updated_at) VALUES (?,?,?,?,?,0,?,?)",
            (
                op.scope,
                op.unit,
                op.limit,
                op.period,
                start,
                0 if old is None else old["reserved"],
                at.isoformat(),
            ),
        )
    else:
        tx.run(
            "UPDATE budgets SET limit_amount = ?, updated_at = ? WHERE scope = ? AND unit = ?",
            (op.limit, at.isoformat(), op.scope, op.unit),
        )
    out = _get(tx, op.scope, op.unit)
    assert out is not None
    return out


def clear_budget(tx: Tx, op: ops.ClearBudget) -> Budget:
    _roll(tx, op.now)
    row = tx.one("SELECT * FROM budgets WHERE scope = ? AND unit = ?", (op.scope, op.unit))
    if row is None:
        unit = " (tokens)" if op.unit == "tokens" else ""
        raise InvalidInput(
            f"no budget on {op.scope}{unit}: `godel budget show` lists them",
            scope=op.scope,
            unit=op.unit,
        )
    _history(tx, row, _at(op.now))
    tx.run("DELETE FROM budgets WHERE scope = ? AND unit = ?", (op.scope, op.unit))
    return budget(row)


def roll_budgets(tx: Tx, op: ops.RollBudgets) -> list[Budget]:
    _roll(tx, op.now)
    return [budget(r) for r in tx.all("SELECT * FROM budgets ORDER BY scope, unit")]


def _in(scopes: tuple[str, ...]) -> str:
    return ",".join("?" * len(scopes))


def reserve_budget(tx: Tx, op: ops.ReserveBudget) -> list[Budget] | ops.BudgetRefusal:
    _roll(tx, op.now)
    rows = tx.all(
        f"SELECT * FROM budgets WHERE scope IN ({_in(op.scopes)}) ORDER BY scope, unit",
        op.scopes,
    )
    held: list[tuple[str, str, int]] = []
    refusal: ops.BudgetRefusal | None = None
    for r in rows:
        amount = (op.usd or 0) if r["unit"] == "usd" else op.tokens
        cur = tx.run(
            "UPDATE budgets SET reserved = reserved + ? WHERE scope = ? AND unit = ? "
            "AND spent + reserved + ? <= limit_amount",
            (amount, r["scope"], r["unit"], amount),
        )
        if cur.rowcount == 0:
            refusal = ops.BudgetRefusal(budget(r), amount)
            break
        held.append((r["scope"], r["unit"], amount))
    payload: dict[str, Any] = {
        "reservation": op.reservation_id,
        "exec_id": op.exec_id,
        "task_id": op.task_id,
        "usd": None if op.usd is None else str(_amount("usd", op.usd)),
        "tokens": op.tokens,
        "scopes": list(op.scopes),
    }
    if refusal is not None:
        for scope, unit, amount in held:  # all or nothing: give back what was taken
            tx.run(
                "UPDATE budgets SET reserved = reserved - ? WHERE scope = ? AND unit = ?",
                (amount, scope, unit),
            )
        b = refusal.budget
        tx.audit(
            AuditDraft(
                actor=ACTOR,
                action="budget.reserve",
                subject=b.scope,
                result="refused",
                payload={**payload, "unit": b.unit, "limit": str(b.limit), "spent": str(b.spent)},
            )
        )
        return refusal
    tx.run(
        "INSERT INTO budget_reservations (id, exec_id, task_id, scopes, usd, tokens, held, "
        "created_at) VALUES (?,?,?,?,?,?,?,?)",
        (
            op.reservation_id,
            op.exec_id,
            op.task_id,
            json.dumps(list(op.scopes)),
            op.usd or 0,
            op.tokens,
            json.dumps(held),
            op.now,
        ),
    )
    tx.audit(
        AuditDraft(
            actor=ACTOR,
            action="budget.reserve",
            subject=op.exec_id or op.reservation_id,
            result="held",
            payload={**payload, "held": [f"{s} ({u})" for s, u, _ in held]},
        )
    )
    now_held = (_get(tx, s, u) for s, u, _ in held)
    return [x for x in now_held if x is not None]


def _settle(tx: Tx, row: sqlite3.Row, usd: int | None, tokens: int, now: float) -> list[Budget]:
    out = []
    for scope, unit, amount in json.loads(row["held"]):
        # An unknown cost leaves the estimate charged on a dollar budget.
        actual = (amount if usd is None else usd) if unit == "usd" else tokens
        tx.run(
            "UPDATE budgets SET reserved = max(0, reserved - ?), spent = spent + ?, "
            "updated_at = ? WHERE scope = ? AND unit = ?",
            (amount, actual, _at(now).isoformat(), scope, unit),
        )
        b = _get(tx, scope, unit)
        if b is not None:
            out.append(b)
    tx.run(
        "UPDATE budget_reservations SET settled_at = ?, actual_usd = ?, actual_tokens = ? "
        "WHERE id = ?",
        (now, usd, tokens, row["id"]),
    )
    return out


def settle_budget(tx: Tx, op: ops.SettleBudget) -> list[Budget]:
    _roll(tx, op.now)
    row = tx.one(
        "SELECT * FROM budget_reservations WHERE id = ? AND settled_at IS NULL",
        (op.reservation_id,),
    )
    if row is None:
        return []
    return _settle(tx, row, op.usd, op.tokens, op.now)


def expire_reservations(tx: Tx, op: ops.ExpireReservations) -> list[Budget]:
    _roll(tx, op.now)
    changed: dict[tuple[str, str], Budget] = {}
    for row in tx.all(
        "SELECT * FROM budget_reservations WHERE settled_at IS NULL AND created_at < ?",
        (op.before,),
    ):
        for b in _settle(tx, row, None, row["tokens"], op.now):
            changed[(b.scope, b.unit)] = b
        tx.audit(
            AuditDraft(
                actor=ACTOR,
                action="budget.expire",
                subject=row["exec_id"] or row["id"],
                result="charged estimate",
                payload={"reservation": row["id"], "task_id": row["task_id"]},
            )
        )
    return list(changed.values())


# --- reads -------------------------------------------------------------------------------


def list_budgets(conn: sqlite3.Connection) -> list[Budget]:
    return [budget(r) for r in conn.execute("SELECT * FROM budgets ORDER BY scope, unit")]


def budget_history(conn: sqlite3.Connection, limit: int) -> list[BudgetPeriodRecord]:
    out = []
    for r in conn.execute("SELECT * FROM budget_history ORDER BY id DESC LIMIT ?", (limit,)):
        unit: BudgetUnit = r["unit"]
        out.append(
            BudgetPeriodRecord(
                scope=r["scope"],
                unit=unit,
                limit=_amount(unit, r["limit_amount"]),
                spent=_amount(unit, r["spent"]),
                period=r["period"],
                started_at=datetime.fromisoformat(r["started_at"]),
                ended_at=datetime.fromisoformat(r["ended_at"]),
            )
        )
    return out
