"""``godel budget ...``: limits on spend, per scope and period, that stop work."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

import click

from core.api.shapes import BudgetObject
from core.cli import render
from core.cli.common import Ctx, echo_json, fail, json_option, pass_ctx, request, sync_command
from core.models import parse_budget_scope

__all__ = ["budget"]

HEADERS = ["SCOPE", "LIMIT", "SPENT", "RESERVED", "USED", "PERIOD", "RESETS"]
HISTORY_HEADERS = ["SCOPE", "LIMIT", "SPENT", "PERIOD", "FROM", "TO"]


def _scope(scope: str) -> str:
    try:
        return parse_budget_scope(scope)
    except ValueError as e:
        fail(str(e))


def _amount(text: str, tokens: bool) -> Decimal:
    try:
        amount = Decimal(text.removeprefix("$"))
    except InvalidOperation:
        fail(f"the amount must be a number, got {text!r} (e.g. 10.00, or 500000 with --tokens)")
    if not amount.is_finite() or amount < 0:
        fail(f"the amount must be zero or more, got {text}")
    if tokens and amount != amount.to_integral_value():
        fail(f"a token budget is a whole number of tokens, got {text}")
    return amount


def _money(unit: str, value: str) -> str:
    d = Decimal(value)
    if unit != "usd":
        return f"{int(d):,}"
    # Cents, unless that would show a small spend as $0.00 (a budget's 1 % of $0.50 is
    # $0.005): then to the micro-dollar, as the store keeps it.
    if d == d.quantize(Decimal("0.01")) or abs(d) >= 1:
        return f"${d:.2f}"
    return "$" + f"{d:.6f}".rstrip("0")


def _when(value: str | None) -> str:
    if not value:
        return "never"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M UTC")


def budget_row(b: BudgetObject) -> list[str]:
    unit = b["unit"]
    limit, spent = Decimal(b["limit"]), Decimal(b["spent"])
    used = f"{spent / limit:.0%}" if limit > 0 else "100%"
    return [
        b["scope"] + (" (tokens)" if unit == "tokens" else ""),
        _money(unit, b["limit"]),
        _money(unit, b["spent"]),
        _money(unit, b["reserved"]),
        used,
        b["period"],
        _when(b["reset_at"]),
    ]


@click.group()
def budget() -> None:
    """Limits on spend: at 90 % no new task starts, at 100 % agents stop."""


# "-5" is an amount to refuse in one line, not an unknown option.
@budget.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("scope")
@click.argument("amount")
@click.option("--tokens", is_flag=True, help="AMOUNT is tokens, not US dollars.")
@click.option(
    "--period",
    type=click.Choice(["none", "daily", "weekly", "monthly"]),
    default="none",
    show_default=True,
    help="Spend resets at each period's start (UTC).",
)
@json_option
@pass_ctx
@sync_command
def budget_set(ctx: Ctx, scope: str, amount: str, tokens: bool, period: str, as_json: bool) -> None:
    """Limit SCOPE (project, swarm:NAME, task:ID, runtime:NAME, model:NAME) to AMOUNT."""
    value = _amount(amount, tokens)
    params = {"scope": _scope(scope), "amount": str(value), "tokens": tokens, "period": period}
    result = request(ctx, "budget.set", params)
    if as_json:
        echo_json(result)
        return
    click.echo(render.table(HEADERS, [budget_row(result)]))


@budget.command("clear")
@click.argument("scope")
@click.option("--tokens", is_flag=True, help="Clear the token budget, not the dollar one.")
@json_option
@pass_ctx
@sync_command
def budget_clear(ctx: Ctx, scope: str, tokens: bool, as_json: bool) -> None:
    """Remove the budget on SCOPE (its spend is kept in the history)."""
    result = request(ctx, "budget.clear", {"scope": _scope(scope), "tokens": tokens})
    if as_json:
        echo_json(result)
        return
    click.echo(f"cleared budget {result['scope']}")


@budget.command("show")
@json_option
@pass_ctx
@sync_command
def budget_show(ctx: Ctx, as_json: bool) -> None:
    """Every budget: limit, spent, reserved, % used, period and when it resets."""
    result = request(ctx, "budget.show")
    if as_json:
        echo_json(result)
        return
    if not result:
        click.echo("no budgets (set one: godel budget set project 10.00)")
        return
    click.echo(render.table(HEADERS, [budget_row(b) for b in result]))


@budget.command("history")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@json_option
@pass_ctx
@sync_command
def budget_history(ctx: Ctx, limit: int, as_json: bool) -> None:
    """Finished periods and cleared budgets, newest first."""
    result = request(ctx, "budget.history", {"limit": limit})
    if as_json:
        echo_json(result)
        return
    if not result:
        click.echo("no finished budget periods yet")
        return
    rows = [
        [
            h["scope"] + (" (tokens)" if h["unit"] == "tokens" else ""),
            _money(h["unit"], h["limit"]),
            _money(h["unit"], h["spent"]),
            h["period"],
            _when(h["started_at"]),
            _when(h["ended_at"]),
        ]
        for h in result
    ]
    click.echo(render.table(HISTORY_HEADERS, rows))
