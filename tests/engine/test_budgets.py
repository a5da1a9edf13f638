"""Budgets on a real engine and real SQLite: reserve and settle arithmetic, the race of
100 reservations against one small budget, each threshold's action, an unknown price,
a native agent stopped at its turn boundary, and period rollover on the fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from core.clock import FakeClock
from core.engine import Engine
from core.errors import BudgetExhausted, BudgetReserved, InvalidInput
from core.events import BudgetChanged, BudgetThreshold, TaskChanged
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    ExecResult,
    ExecStatus,
    StatusSource,
    TaskStatus,
    Usage,
    utcnow,
)
from core.runtimes.base import Capability
from tests.engine.conftest import MakeEngine, Match, make_swarm, next_event, submit, subscribe

MODEL = frozenset({Capability.MODEL})
# The scripted model's prices: $1 in, $2 out per million tokens.
ESTIMATE = Usage(input_tokens=8_000, output_tokens=2_000)  # = $0.012
ESTIMATE_USD = Decimal("0.012")


def fake_agent(model: str = "scripted", swarm: str | None = None) -> Agent:
    """An agent record as the service reads it (no process: reserve/settle need none)."""
    return Agent(
        id=f"native-{model}",
        runtime="native",
        model=model,
        swarm=swarm,
        workspace=Path("/tmp"),
        status=AgentStatus.IDLE,
        status_source=StatusSource.USER,
        status_at=utcnow(),
        created_at=utcnow(),
        spec=AgentSpec(runtime="native", model=model),
    )


def result(cost: Decimal | None, tokens: int = 0) -> ExecResult:
    return ExecResult(
        exec_id="x",
        status=ExecStatus.SUCCEEDED,
        exit_code=0,
        usage=Usage(input_tokens=tokens),
        cost_usd=cost,
    )


async def budget(engine: Engine, scope: str = "project", unit: str = "usd") -> tuple[str, ...]:
    for b in await engine.show_budgets():
        if b.scope == scope and b.unit == unit:
            return (str(b.limit), str(b.spent), str(b.reserved))
    raise AssertionError(f"no budget {scope}")


async def spend(engine: Engine, exec_id: str, cost: Decimal, agent: Agent | None = None) -> None:
    """One exec's reserve and settle through the service (no process needed)."""
    await engine.s.budgets.reserve(agent or fake_agent(), MODEL, exec_id, None)
    await engine.s.budgets.settle(exec_id, result(cost))


async def test_reserve_holds_the_estimate_and_settle_charges_the_actual(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine()
    await engine.set_budget("project", Decimal("1.00"), unit="usd", period="none", actor="t")
    await engine.set_budget(
        "model:scripted", Decimal(50_000), unit="tokens", period="none", actor="t"
    )
    await engine.s.budgets.reserve(fake_agent(), MODEL, "exec-1", None)
    assert await budget(engine) == ("1", "0", "0.012")
    assert await budget(engine, "model:scripted", "tokens") == ("50000", "0", "10000")
    await engine.s.budgets.settle("exec-1", result(Decimal("0.003"), tokens=1_500))
    assert await budget(engine) == ("1", "0.003", "0")
    assert await budget(engine, "model:scripted", "tokens") == ("50000", "1500", "0")
    # A settle that comes twice charges once.
    await engine.s.budgets.settle("exec-1", result(Decimal("0.003"), tokens=1_500))
    assert await budget(engine) == ("1", "0.003", "0")
    # A budget on another swarm is left alone.
    await engine.set_budget("swarm:other", Decimal(1), unit="usd", period="none", actor="t")
    await spend(engine, "exec-2", Decimal("0.001"), fake_agent(swarm="web"))
    assert await budget(engine, "swarm:other") == ("1", "0", "0")
    assert await budget(engine) == ("1", "0.004", "0")
    actions = [e.action for e in await engine.audit_list(subject="exec-1")]
    assert actions == ["budget.reserve", "budget.settle"]


async def test_100_concurrent_reservations_never_overspend(make_engine: MakeEngine) -> None:
    """The race: 100 execs reserve at once against $0.50; each settles its estimate."""
    engine = await make_engine()
    await engine.set_budget("project", Decimal("0.50"), unit="usd", period="none", actor="t")
    svc = engine.s.budgets

    async def one(i: int) -> bool:
        try:
            await svc.reserve(fake_agent(), MODEL, f"exec-{i}", None)
        except BudgetReserved:  # would fit once the others settle: a task would wait
            return False
        return True

    held = await asyncio.gather(*(one(i) for i in range(100)))
    n = sum(held)
    limit, spent, reserved = await budget(engine)
    assert n == int(Decimal("0.50") / ESTIMATE_USD) == 41  # what fits, no more
    assert Decimal(reserved) == n * ESTIMATE_USD <= Decimal(limit)
    await asyncio.gather(
        *(svc.settle(f"exec-{i}", result(ESTIMATE_USD)) for i in range(100) if held[i])
    )
    limit, spent, reserved = await budget(engine)
    overspend = Decimal(spent) - Decimal(limit)
    # Settled at their estimates: never past the limit (the bound is one reservation).
    assert overspend <= 0 and reserved == "0"
    refused = [
        e
        for e in await engine.audit_list()
        if e.action == "budget.reserve" and e.result == "refused"
    ]
    assert len(refused) == 100 - n


async def test_thresholds_notify_then_hold_then_fail_waiting_tasks(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine()
    await make_swarm(engine, "web", 1)  # shell: tasks run unless a budget holds them
    sub = subscribe(engine, "t", "budget.threshold", "task.changed")
    await engine.set_budget("swarm:web", Decimal("1.00"), unit="usd", period="none", actor="t")
    agent = fake_agent(swarm="web")

    await spend(engine, "e1", Decimal("0.55"), agent)
    ev = await next_event(sub, Match(BudgetThreshold, level="notice"))
    assert ev.scope == "swarm:web" and ev.threshold == 0.5
    await spend(engine, "e2", Decimal("0.25"), agent)
    await next_event(sub, Match(BudgetThreshold, level="warning"))

    # Under 90 % a task runs.
    (ok,) = await submit(engine, "web", "echo ran")
    await next_event(sub, Match(TaskChanged, task_id=ok, status="succeeded"))

    await spend(engine, "e3", Decimal("0.12"), agent)  # 92 %
    await next_event(sub, Match(BudgetThreshold, level="hold"))
    (held,) = await submit(engine, "web", "echo held")
    task = await engine.get_task(held)
    assert task.status is TaskStatus.READY
    assert task.waiting.startswith("held by budget swarm:web: $0.92 of $1.00 spent (92%)")
    # Another dispatch round still holds it; the hold is audited once.
    engine.ctx.wake_dispatcher()
    await engine.s.dispatcher.dispatch_once()
    assert (await engine.get_task(held)).status is TaskStatus.READY
    holds = [e for e in await engine.audit_list(subject=held) if e.action == "budget.hold"]
    assert len(holds) == 1

    # An estimate bigger than what is left is refused, and changes nothing.
    with pytest.raises(BudgetExhausted, match=r"does not fit"):
        await _reserve_big(engine, agent)
    assert await budget(engine, "swarm:web") == ("1", "0.92", "0")
    # 100 %: the waiting task fails with the reason.
    await engine.set_budget("swarm:web", Decimal("0.90"), unit="usd", period="none", actor="t")
    await next_event(sub, Match(BudgetThreshold, level="exhausted"))
    ev2 = await next_event(sub, Match(TaskChanged, task_id=held, status="failed"))
    assert ev2.error.startswith("budget exhausted: budget swarm:web: $0.92 of $0.90")
    # And a new exec in that scope is refused before it starts.
    with pytest.raises(BudgetExhausted, match=r"^budget exhausted: budget swarm:web"):
        await engine.s.budgets.reserve(agent, MODEL, "late", None)


async def _reserve_big(engine: Engine, agent: Agent) -> None:
    engine.s.budgets.estimate = Usage(input_tokens=200_000)  # $0.20: more than is left
    try:
        await engine.s.budgets.reserve(agent, MODEL, "big", None)
    finally:
        engine.s.budgets.estimate = ESTIMATE


async def test_an_unknown_price_under_a_dollar_budget_is_refused(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    await engine.set_budget("project", Decimal(5), unit="usd", period="none", actor="t")
    with pytest.raises(BudgetExhausted) as e:
        await engine.s.budgets.reserve(fake_agent("mystery"), MODEL, "exec-1", None)
    assert e.value.message == (
        "model 'mystery' has no known price, and project has a dollar budget: set "
        "input_per_mtok and output_per_mtok under [models.mystery] in .godel/config.toml, "
        "or use a token budget (godel budget set SCOPE N --tokens)"
    )
    (entry,) = await engine.audit_list(subject="exec-1")
    assert entry.action == "budget.reserve" and entry.result == "refused"
    # Under a token budget only, the same model may run.
    await engine.clear_budget("project", unit="usd", actor="t")
    await engine.set_budget("project", Decimal(10**6), unit="tokens", period="none", actor="t")
    await engine.s.budgets.reserve(fake_agent("mystery"), MODEL, "exec-2", None)


async def test_bad_budget_input_is_one_clear_error(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    with pytest.raises(InvalidInput, match=r"^unknown budget scope 'team:x'"):
        await engine.set_budget("team:x", Decimal(1), unit="usd", period="none", actor="t")
    with pytest.raises(InvalidInput, match=r"^a budget must be zero or more"):
        await engine.set_budget("project", Decimal(-1), unit="usd", period="none", actor="t")
    with pytest.raises(InvalidInput, match=r"^no budget on project"):
        await engine.clear_budget("project", unit="usd", actor="t")


async def test_a_native_agent_stops_at_the_turn_boundary(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    """100 % reached during an exec: the turn that ran finishes (its write happens), the
    next model call is refused, and the exec fails with "budget exhausted"."""
    engine = await make_engine()
    engine.s.budgets.estimate = Usage(input_tokens=10)
    await engine.set_budget("project", Decimal(50), unit="tokens", period="none", actor="t")
    sub = subscribe(engine, "t", "budget.threshold")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    agent = await engine.spawn_agent(
        AgentSpec(runtime="native", model="scripted", workdir=workspace), "test"
    )
    final = None
    async for ev in engine.exec(agent.id, "write out.txt: hello", actor="test"):
        if isinstance(ev, ExecResult):
            final = ev
    assert final is not None and final.status is ExecStatus.FAILED
    assert final.reason.startswith("budget exhausted: project at ")
    assert (workspace / "out.txt").read_text() == "hello"  # the first turn finished
    ev = await next_event(sub, Match(BudgetThreshold, level="exhausted"))
    assert ev.fraction >= 1.0
    actions = [e.action for e in await engine.audit_list(subject=agent.id)]
    assert "budget.stop" in actions
    _, spent, reserved = await budget(engine, unit="tokens")
    assert int(spent) == final.usage.total_tokens and reserved == "0"
    # The next exec is refused before it runs.
    with pytest.raises(BudgetExhausted, match=r"^budget exhausted"):
        async for _ in engine.exec(agent.id, "hello", actor="test"):
            pass


async def test_a_new_period_resets_spend_and_keeps_the_old_one(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine()
    b = await engine.set_budget("project", Decimal(1), unit="usd", period="daily", actor="t")
    assert b.reset_at is not None and b.reset_at > datetime.fromtimestamp(clock.time(), UTC)
    await spend(engine, "e1", Decimal("0.40"))
    assert (await budget(engine))[1] == "0.4"
    await clock.advance(
        (b.reset_at - datetime.fromtimestamp(clock.time(), UTC)).total_seconds() + 1
    )
    assert (await budget(engine))[1] == "0"
    (old,) = await engine.budget_history()
    assert old.spent == Decimal("0.4") and old.ended_at == b.reset_at
    assert [e.result for e in await engine.audit_list(subject="project")][-1] == "reset"


async def test_a_task_held_by_last_period_runs_once_the_period_ends_with_nothing_written(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    """Held at 92 % of a daily budget; the day ends and nothing else touches the budget:
    the dispatcher rolls the period over itself instead of holding the task forever."""
    engine = await make_engine()
    await make_swarm(engine, "web", 1)
    sub = subscribe(engine, "t", "task.changed")
    b = await engine.set_budget("swarm:web", Decimal(1), unit="usd", period="daily", actor="t")
    await spend(engine, "e1", Decimal("0.92"), fake_agent(swarm="web"))
    (held,) = await submit(engine, "web", "echo next day")
    await engine.s.dispatcher.dispatch_once()
    assert (await engine.get_task(held)).waiting.startswith("held by budget swarm:web")
    assert b.reset_at is not None
    await clock.advance(
        (b.reset_at - datetime.fromtimestamp(clock.time(), UTC)).total_seconds() + 1
    )
    engine.ctx.wake_dispatcher()
    await next_event(sub, Match(TaskChanged, task_id=held, status="succeeded"))


async def test_budget_changes_fold_into_the_views_as_the_store_has_them(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine()
    sub = subscribe(engine, "t", "budget.changed")
    await engine.set_budget("project", Decimal(2), unit="usd", period="weekly", actor="t")
    await engine.set_budget("swarm:x", Decimal(9), unit="tokens", period="none", actor="t")
    await spend(engine, "e1", Decimal("0.5"))
    await engine.clear_budget("swarm:x", unit="tokens", actor="t")
    await next_event(sub, Match(BudgetChanged, cleared=True))
    folded = engine.view_snapshot().spend.budgets
    stored = (await engine.ctx.store.view_snapshot()).spend.budgets
    assert folded == stored
    (b,) = folded
    assert (b.scope, b.spent, b.reserved, b.period) == ("project", Decimal("0.5"), 0, "weekly")
    assert b.reset_at is not None and b.reset_at.weekday() == 0  # Monday, 00:00 UTC


async def test_100_native_agents_racing_one_small_budget_overspend_at_most_one_reservation(
    make_engine: MakeEngine,
) -> None:
    """The race end to end: 100 native agents on the scripted model (real HTTP), 100 tasks
    at once, a $0.05 project budget (four reservations of $0.012). Work runs until the
    budget holds it; nothing is left reserved, and what was spent exceeds the limit by at
    most one reservation (the bound the reservations give)."""
    engine = await make_engine()
    await engine.set_budget("project", Decimal("0.05"), unit="usd", period="none", actor="t")
    await make_swarm(engine, "race", 100, runtime="native", model="scripted")
    sub = subscribe(engine, "t", "task.changed", "budget.changed")
    ids = await submit(engine, "race", *(f"write f{i}.txt: {i}" for i in range(100)))
    status = dict.fromkeys(ids, "ready")
    reserved = Decimal(1)

    async def settled() -> bool:
        # Nothing runs or is reserved, and every task not final is held by the budget.
        if reserved != 0 or "running" in status.values():
            return False
        waiting = [t for t, s in status.items() if s in ("ready", "queued")]
        tasks = [await engine.get_task(t) for t in waiting]
        return all(t.waiting.startswith("held by budget project") for t in tasks)

    async with asyncio.timeout(120):
        while not await settled():
            ev = await sub.get()
            if isinstance(ev, TaskChanged) and ev.task_id in status:
                status[ev.task_id] = ev.status
            elif isinstance(ev, BudgetChanged) and ev.budget.scope == "project":
                reserved = ev.budget.reserved
    limit, spent, left = await budget(engine)
    succeeded = sum(s == "succeeded" for s in status.values())
    failed = [await engine.get_task(t) for t, s in status.items() if s == "failed"]
    print(f"race: {succeeded} ran, {len(failed)} failed; spent ${spent} of ${limit}")
    assert left == "0"
    # Far more ran than the four reservations that fit at once: a task that found the
    # budget full of others' reservations waited for them, it did not fail.
    assert succeeded > 4
    assert all(t.error.startswith("budget exhausted") for t in failed)
    assert Decimal(spent) <= Decimal(limit) + ESTIMATE_USD
