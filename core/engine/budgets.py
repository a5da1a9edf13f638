"""The budget service: limits on spend that really stop work.

Before an exec on a runtime with a model (native, pi), an estimate is reserved in the
store against every budget that applies (project, the agent's swarm, the task, its
runtime, its model), all or nothing; after the exec, the real usage and cost are
settled and the rest released. Thresholds of a budget's settled spend:

- 50 %: a ``budget.threshold`` event ("notice"); 75 %: the same at level "warning";
- 90 %: the dispatcher starts no new task in that scope (``task get`` says why);
- 100 %: a running agent's next model call is refused (the native runtime asks before
  each turn; pi at the end of each tool-calling turn, then aborts pi: at most one more
  call), its exec ends failed with "budget exhausted", and tasks waiting in that scope
  fail with the same reason.

Every decision is on the audit log. The service keeps a copy of every budget, refreshed
from each commit (the engine is the store's only writer), so that the dispatcher and
the turn check read no store.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal

from core.audit import AuditDraft
from core.engine.context import EngineContext
from core.errors import BudgetExhausted, BudgetReserved, InvalidInput, LLMUnavailable
from core.events import BudgetChanged, BudgetThreshold
from core.llm.catalog_types import ModelPrices
from core.llm.prices import cost
from core.models import (
    MICRO_USD,
    Agent,
    Budget,
    BudgetPeriod,
    BudgetPeriodRecord,
    BudgetUnit,
    ExecResult,
    Task,
    Usage,
    new_id,
    parse_budget_scope,
)
from core.runtimes.base import Capability
from core.store import ops

log = logging.getLogger("godel.budgets")

# What one exec is estimated to use before it runs: a few turns of a coding agent. The
# estimate only has to bound what is in flight; the real figure is settled after.
ESTIMATE = Usage(input_tokens=8_000, output_tokens=2_000)
THRESHOLDS: tuple[tuple[float, str], ...] = (
    (0.5, "notice"),
    (0.75, "warning"),
    (0.9, "hold"),
    (1.0, "exhausted"),
)
HOLD_AT = 0.9
MAX_TOKENS_LIMIT = 10**15


def scopes_of(
    *,
    swarm: str | None,
    task_id: str | None,
    runtime: str | None,
    model: str | None,
) -> tuple[str, ...]:
    """Every scope that work with these traits counts against, widest first."""
    out = ["project"]
    if swarm:
        out.append(f"swarm:{swarm}")
    if task_id:
        out.append(f"task:{task_id}")
    if runtime:
        out.append(f"runtime:{runtime}")
    if model:
        out.append(f"model:{model}")
    return tuple(out)


def store_amount(unit: BudgetUnit, amount: Decimal) -> int:
    """An amount in store units: micro-dollars (rounded up) or whole tokens."""
    if unit == "usd":
        return int((amount * MICRO_USD).to_integral_value(rounding="ROUND_CEILING"))
    return int(amount)


def show_amount(unit: str, amount: Decimal) -> str:
    return f"${amount:.2f}" if unit == "usd" else f"{int(amount):,} tokens"


def describe(b: Budget) -> str:
    """One line, e.g. "budget swarm:web: $0.93 of $1.00 spent (93%)"."""
    return (
        f"budget {b.scope}: {show_amount(b.unit, b.spent)} of {show_amount(b.unit, b.limit)} "
        f"spent ({b.fraction:.0%})"
    )


@dataclass
class _Held:
    """An exec the service watches: the scopes it counts against, its reservation."""

    scopes: tuple[str, ...]
    reservation: str | None


class BudgetService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._budgets: dict[tuple[str, str], Budget] = {}
        self._execs: dict[str, _Held] = {}  # exec id -> what it counts against
        self._held_tasks: set[str] = set()  # tasks whose hold is on the audit log
        # Tasks whose exec found the budget full of others' reservations: held until one
        # of them settles (then each tries again), so they neither fail nor spin.
        self._reserve_wait: dict[str, str] = {}
        self._settle_waiters: list[asyncio.Future[None]] = []
        self.estimate = ESTIMATE  # what each exec reserves (tests make it small)

    # lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Reservations left open by a daemon that died are charged their estimate (their
        execs died with it); then the copy of every budget is loaded."""
        now = self.ctx.clock.time()
        await self._commit(ops.ExpireReservations(before=now, now=now))
        await self.show()

    # set, clear, show -----------------------------------------------------------------

    async def set(
        self,
        scope: str,
        amount: Decimal,
        *,
        unit: BudgetUnit,
        period: BudgetPeriod,
        actor: str,
    ) -> Budget:
        try:
            parse_budget_scope(scope)
        except ValueError as e:
            raise InvalidInput(str(e), scope=scope) from None
        if not amount.is_finite() or amount < 0:
            raise InvalidInput(f"a budget must be zero or more, got {amount}", amount=str(amount))
        if unit == "tokens" and (amount != amount.to_integral_value() or amount > MAX_TOKENS_LIMIT):
            raise InvalidInput(
                f"a token budget is a whole number of tokens, got {amount}", amount=str(amount)
            )
        limit = store_amount(unit, amount)
        budget = await self.ctx.journal.commit(
            ops.SetBudget(scope, unit, limit, period, now=self.ctx.clock.time()),
            audit=AuditDraft(
                actor=actor,
                action="budget.set",
                subject=scope,
                payload={"unit": unit, "limit": str(amount), "period": period},
            ),
            events=lambda b: [BudgetChanged(budget=b)],
        )
        await self._crossed(self._budgets.get((budget.scope, budget.unit)), budget)
        self._budgets[(budget.scope, budget.unit)] = budget
        self.ctx.wake_dispatcher()  # a raised limit may free held tasks
        return budget

    async def clear(self, scope: str, *, unit: BudgetUnit, actor: str) -> Budget:
        budget = await self.ctx.journal.commit(
            ops.ClearBudget(scope, unit, now=self.ctx.clock.time()),
            audit=AuditDraft(
                actor=actor, action="budget.clear", subject=scope, payload={"unit": unit}
            ),
            events=lambda b: [BudgetChanged(budget=b, cleared=True)],
        )
        self._budgets.pop((budget.scope, budget.unit), None)
        self.ctx.wake_dispatcher()
        return budget

    async def show(self) -> list[Budget]:
        """Every budget, this period's figures (a period that ended is reset first)."""
        budgets = await self.ctx.journal.commit(ops.RollBudgets(now=self.ctx.clock.time()))
        self._budgets = {(b.scope, b.unit): b for b in budgets}
        return budgets

    async def history(self, limit: int = 100) -> list[BudgetPeriodRecord]:
        return await self.ctx.store.budget_history(limit)

    def budgets(self) -> list[Budget]:
        return list(self._budgets.values())

    # reserve and settle -------------------------------------------------------------------

    async def reserve(
        self,
        agent: Agent,
        capabilities: frozenset[Capability],
        exec_id: str,
        task_id: str | None,
    ) -> None:
        """Reserve this exec's estimate, or raise ``BudgetExhausted`` (audited)."""
        if Capability.MODEL not in capabilities:
            return  # no model, nothing billable
        scopes = scopes_of(
            swarm=agent.swarm, task_id=task_id, runtime=agent.runtime, model=agent.model
        )
        await self._reserve(scopes, agent.model, exec_id, task_id)

    async def reserve_call(self, call_id: str, model: str) -> None:
        """Reserve for a model call the engine makes itself, outside any agent (godel do's
        planner), against the project and ``model:MODEL``; settle it with ``settle``."""
        scopes = scopes_of(swarm=None, task_id=None, runtime=None, model=model)
        await self._reserve(scopes, model, call_id, None)

    async def _reserve(
        self, scopes: tuple[str, ...], model: str | None, exec_id: str, task_id: str | None
    ) -> None:
        held = _Held(scopes, None)
        self._execs[exec_id] = held
        applicable = self._applicable(scopes)
        if not applicable:
            return
        prices = self._prices(model)
        usd = cost(self.estimate, prices)
        dollars = [b for b in applicable if b.unit == "usd"]
        if usd is None and dollars:
            self._execs.pop(exec_id, None)
            model = model or "(none)"
            message = (
                f"model {model!r} has no known price, and {dollars[0].scope} has a dollar "
                f"budget: set input_per_mtok and output_per_mtok under [models.{model}] in "
                ".godel/config.toml, or use a token budget (godel budget set SCOPE N --tokens)"
            )
            await self._refused(exec_id, task_id, dollars[0], message)
            raise BudgetExhausted(message, scope=dollars[0].scope, model=model)
        reservation = new_id("rsv")
        out = await self._commit(
            ops.ReserveBudget(
                reservation,
                scopes,
                None if usd is None else store_amount("usd", usd),
                self.estimate.total_tokens,
                now=self.ctx.clock.time(),
                exec_id=exec_id,
                task_id=task_id,
            )
        )
        if isinstance(out, ops.BudgetRefusal):
            self._execs.pop(exec_id, None)
            b = out.budget
            need = Decimal(out.amount) / MICRO_USD if b.unit == "usd" else Decimal(out.amount)
            if b.reserved > 0 and b.spent + need <= b.limit:
                # It fits in what is left once the execs holding reservations settle:
                # the work waits for them, it is not refused for good.
                why = (
                    f"waits for reserved spend to settle: {describe(b)}, "
                    f"{show_amount(b.unit, b.reserved)} reserved by running execs; this "
                    f"exec's estimate of {show_amount(b.unit, need)} fits once they settle"
                )
                if task_id is not None:
                    self._reserve_wait[task_id] = why
                raise BudgetReserved(why, scope=b.scope, unit=b.unit)
            raise BudgetExhausted(
                f"budget exhausted: {describe(b)}, {show_amount(b.unit, b.reserved)} reserved; "
                f"this exec's estimate of {show_amount(b.unit, need)} does not fit. Raise it "
                f"with `godel budget set {b.scope} AMOUNT`",
                scope=b.scope,
                unit=b.unit,
            )
        held.reservation = reservation

    async def settle(self, exec_id: str, result: ExecResult | None) -> None:
        """Charge what the exec used (None: it never ran) and release the rest."""
        held = self._execs.pop(exec_id, None)
        if held is None or held.reservation is None:
            return
        usage = result.usage if result is not None else Usage()
        spent = result.cost_usd if result is not None else Decimal(0)
        await self._commit(
            ops.SettleBudget(
                held.reservation,
                None if spent is None else store_amount("usd", spent),
                usage.total_tokens,
                now=self.ctx.clock.time(),
            ),
            AuditDraft(
                actor="budgets",
                action="budget.settle",
                subject=exec_id,
                payload={
                    "reservation": held.reservation,
                    "tokens": usage.total_tokens,
                    "cost_usd": None if spent is None else str(spent),
                },
            ),
        )
        for waiter in self._settle_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._settle_waiters.clear()
        if self._reserve_wait:
            self._reserve_wait.clear()  # room was released: the waiting tasks try again
            self.ctx.wake_dispatcher()

    async def settled(self) -> None:
        """Until the next reservation settles (after ``BudgetReserved``: try again then)."""
        waiter = asyncio.get_running_loop().create_future()
        self._settle_waiters.append(waiter)
        await waiter

    # the checks ------------------------------------------------------------------------

    async def turn_gate(
        self, agent_id: str, exec_id: str, usage: Usage, spent: Decimal | None
    ) -> str | None:
        """Asked by a runtime before each model call with what the exec used so far: why
        the call is refused (a budget it counts against is exhausted), or None."""
        held = self._execs.get(exec_id)
        if held is None:
            return None
        for b in self._applicable(held.scopes):
            own = usage.total_tokens if b.unit == "tokens" else (spent or Decimal(0))
            if b.spent + own < b.limit:
                continue
            reason = f"budget exhausted: {b.scope} at {show_amount(b.unit, b.spent + own)} of " + (
                f"{show_amount(b.unit, b.limit)} (including this exec so far)"
            )
            await self.ctx.journal.audit(
                AuditDraft(
                    actor="budgets",
                    action="budget.stop",
                    subject=agent_id,
                    result="refused",
                    payload={"exec_id": exec_id, "scope": b.scope, "unit": b.unit},
                )
            )
            return reason
        return None

    def hold_reason(self, task: Task) -> tuple[str, bool] | None:
        """Why ``task`` may not be dispatched now, and whether it fails (100 %) rather than
        waits (90 %); None if no budget holds it."""
        waiting = self._reserve_wait.get(task.id)
        if waiting is not None:
            return waiting, False
        scopes = scopes_of(swarm=task.swarm, task_id=task.id, runtime=task.runtime, model=None)
        worst = max(self._applicable(scopes), key=lambda b: b.fraction, default=None)
        if worst is None or worst.fraction < HOLD_AT:
            return None
        if worst.fraction >= 1.0:
            return f"budget exhausted: {describe(worst)}", True
        return (
            f"held by {describe(worst)}: no new dispatch at 90 %; raise it with "
            f"`godel budget set {worst.scope} AMOUNT`",
            False,
        )

    async def admit(self, tasks: list[Task]) -> list[Task]:
        """The dispatcher's check: the tasks that may start; those in an exhausted scope
        fail, those in a held one wait (each hold audited once)."""
        if not self._budgets:
            return tasks
        now = self.ctx.clock.time()
        if any(b.reset_at is not None and b.reset_at.timestamp() <= now for b in self.budgets()):
            # A period ended with nothing written since: roll it over first, or yesterday's
            # spend would hold (or fail) today's tasks.
            await self.show()
        ok, doomed = [], []
        for t in tasks:
            hold = self.hold_reason(t)
            if hold is None:
                ok.append(t)
            elif hold[1]:
                doomed.append((t.id, hold[0]))
            elif t.id not in self._held_tasks:
                self._held_tasks.add(t.id)
                await self.ctx.journal.audit(
                    AuditDraft(
                        actor="budgets",
                        action="budget.hold",
                        subject=t.id,
                        result="held",
                        payload={"reason": hold[0]},
                    )
                )
        if doomed:
            await self.ctx.journal.commit(ops.FailWaitingTasks(tuple(doomed), actor="budgets"))
        return ok

    # internals ---------------------------------------------------------------------------

    def _applicable(self, scopes: tuple[str, ...]) -> list[Budget]:
        return [b for b in self._budgets.values() if b.scope in scopes]

    def _prices(self, model: str | None) -> ModelPrices | None:
        if model is None:
            return None
        try:
            return self.ctx.models.prices(model)
        except LLMUnavailable:
            return None

    async def _refused(self, exec_id: str, task_id: str | None, b: Budget, why: str) -> None:
        await self.ctx.journal.audit(
            AuditDraft(
                actor="budgets",
                action="budget.reserve",
                subject=exec_id,
                result="refused",
                payload={"task_id": task_id, "scope": b.scope, "reason": why},
            )
        )

    async def _commit(
        self,
        op: ops.Op[list[Budget]] | ops.Op[list[Budget] | ops.BudgetRefusal],
        audit: AuditDraft | None = None,
    ) -> list[Budget] | ops.BudgetRefusal:
        """Commit a budget op; its changed budgets are announced, and thresholds they
        crossed are announced and audited."""
        out: list[Budget] | ops.BudgetRefusal = await self.ctx.journal.commit(
            op,  # type: ignore[arg-type]
            audit=audit or (),
            events=lambda r: (
                [] if isinstance(r, ops.BudgetRefusal) else [BudgetChanged(budget=b) for b in r]
            ),
        )
        if isinstance(out, list):
            for b in out:
                await self._crossed(self._budgets.get((b.scope, b.unit)), b)
                self._budgets[(b.scope, b.unit)] = b
        return out

    async def _crossed(self, before: Budget | None, after: Budget) -> None:
        was = before.fraction if before is not None and before.limit == after.limit else 0.0
        now = after.fraction
        for threshold, level in THRESHOLDS:
            if not was < threshold <= now:
                continue
            message = (
                f"{describe(after)}: "
                + {
                    "notice": "half the budget is spent",
                    "warning": "three quarters of the budget are spent",
                    "hold": "no new task in this scope is dispatched",
                    "exhausted": "running agents stop at their next turn; waiting tasks fail",
                }[level]
            )
            await self.ctx.journal.audit(
                AuditDraft(
                    actor="budgets",
                    action="budget.threshold",
                    subject=after.scope,
                    result=level,
                    payload={"unit": after.unit, "fraction": round(now, 4), "message": message},
                ),
                events=[
                    BudgetThreshold(
                        scope=after.scope,
                        unit=after.unit,
                        level=level,
                        threshold=threshold,
                        fraction=round(now, 4),
                        message=message,
                    )
                ],
            )
            if level in ("hold", "exhausted"):
                self.ctx.wake_dispatcher()  # fail what waits in an exhausted scope
