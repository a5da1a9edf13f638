"""``godel do "<intent>"``: a plan's tasks run by agents in worktrees, gated and merged
(docs/do.md). There is no planner yet: the tasks come from ``--plan FILE``.

Exit codes as ``godel run``: 0 every task merged; 1 a task failed, was not merged or was
not run; 2 bad usage, a bad plan, or not a git repository; 3 a budget stopped a task;
130 interrupted.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from core.cli.common import Ctx, fail, json_option, pass_ctx
from core.errors import GodelError

if TYPE_CHECKING:
    from core.cli.do_run import DoReport
    from core.paths import GodelPaths
    from core.work.plan import DoPlan

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@click.command("do")
@click.argument("intent")
@click.option(
    "--agents",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="At most N tasks (and so N agents) at once.",
)
@click.option(
    "--budget",
    metavar="DOLLARS",
    help="Set the project's budget to DOLLARS first (`godel budget set project`).",
)
@click.option(
    "--strategy",
    type=click.Choice(["careful", "fast", "balanced"]),
    default="careful",
    show_default=True,
    help="careful: merge one branch at a time, gated; fast (and balanced, for now): "
    "merge the non-overlapping branches together, gate once.",
)
@click.option("--runtime", default="shell", show_default=True, help="The agents' runtime.")
@click.option("--model", help="The agents' model.")
@click.option(
    "--gate",
    "gate",
    metavar="COMMAND",
    help="Run in each task's worktree and after each merge (e.g. 'make test').",
)
@click.option("--plan", "plan_file", metavar="FILE", help="The tasks, as JSON (docs/do.md).")
@click.option("--dry-run", is_flag=True, help="Print the plan and exit.")
@json_option
@pass_ctx
def do(
    ctx: Ctx,
    intent: str,
    agents: int,
    budget: str | None,
    strategy: str,
    runtime: str,
    model: str | None,
    gate: str | None,
    plan_file: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Run INTENT's tasks in git worktrees of the current repository and merge them.

    Exits 0 if every task was merged, 1 otherwise, 2 on a usage, plan or repository
    error, 3 when a budget stopped a task, 130 when interrupted."""
    import asyncio
    from pathlib import Path

    from core.work.plan import load_do_plan
    from core.work.worktrees import open_repo

    try:
        asyncio.run(open_repo(Path.cwd()))
    except GodelError as e:
        fail(e.message, EXIT_USAGE)
    if plan_file is None:
        fail("no planner yet: pass --plan FILE (a JSON list of tasks; see docs/do.md)", EXIT_USAGE)
    try:
        plan = load_do_plan(plan_file)
    except GodelError as e:
        fail(e.message, EXIT_USAGE)
    if budget is not None:
        from decimal import Decimal, InvalidOperation

        try:
            ok = Decimal(budget).is_finite() and Decimal(budget) >= 0
        except InvalidOperation:
            ok = False
        if not ok:
            fail(f"--budget takes an amount of dollars (e.g. 10.00), got {budget!r}", EXIT_USAGE)
    if dry_run:
        _print_plan(plan, runtime, as_json)
        sys.exit(0)
    merge = "careful" if strategy == "careful" else "fast"
    try:
        code = asyncio.run(
            _run(ctx.paths, plan, intent, agents, budget, merge, runtime, model, gate, as_json)
        )
    except KeyboardInterrupt:
        fail("interrupted: agents killed; unmerged worktrees and branches are kept", 130)
    sys.exit(code)


def _print_plan(plan: DoPlan, runtime: str, as_json: bool) -> None:
    import json

    # Nothing here prices a plan before it runs; a shell agent has no price at all.
    cost = (
        f"unknown (runtime {runtime} has no price)"
        if runtime == "shell"
        else "unknown (godel do does not estimate a plan's cost yet)"
    )
    levels = plan.levels()
    if as_json:
        tasks = [t.model_dump() | {"level": i} for i, lv in enumerate(levels) for t in lv]
        click.echo(json.dumps({"tasks": tasks, "cost": cost}))
        return
    for i, level in enumerate(levels):
        for t in level:
            deps = f" after {', '.join(t.depends_on)}" if t.depends_on else ""
            files = f" files: {', '.join(t.files)}" if t.files else ""
            click.echo(f"{i + 1}. {t.name}{deps}: {t.input}{files}")
    click.echo(f"cost: {cost}")


async def _run(
    paths: GodelPaths,
    plan: DoPlan,
    intent: str,
    agents: int,
    budget: str | None,
    strategy: str,
    runtime: str,
    model: str | None,
    gate: str | None,
    as_json: bool,
) -> int:
    import os
    import time
    from pathlib import Path

    from core.cli.batch_backends import DaemonBackend
    from core.cli.do_run import DoRun, open_worktrees

    run_id = f"do-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        worktrees = await open_worktrees(Path.cwd(), run_id)
    except GodelError as e:
        fail(e.message, EXIT_USAGE)
    backend = await DaemonBackend.open(paths)
    try:
        if budget is not None:
            await backend.call("budget.set", {"scope": "project", "amount": budget})

        def say(line: str) -> None:
            if not as_json:
                click.echo(line)

        run = DoRun(
            backend,
            worktrees,
            plan,
            intent=intent,
            agents=agents,
            strategy="careful" if strategy == "careful" else "fast",
            runtime=runtime,
            model=model,
            gate=gate,
            say=say,
        )
        try:
            report = await run.execute()
        except GodelError as e:
            fail(e.message, 1)
    finally:
        await backend.close()
    if as_json:
        click.echo(report.model_dump_json())
    else:
        _print_report(report)
    return report.exit_code


def _print_report(r: DoReport) -> None:
    click.echo("")
    click.echo(
        f"run {r.run}: {r.base} {r.base_before[:12]} -> {r.base_after[:12]} "
        f"({r.strategy}, {r.elapsed_s:.1f}s)"
    )
    for t in r.tasks:
        gate = t.gate.summary() if t.gate else "-"
        tokens = str(t.tokens) if t.tokens is not None else "-"
        cost = f"${t.cost_usd}" if t.cost_usd is not None else "-"
        state = "merged" if t.merged else "NOT merged"
        click.echo(
            f"  {t.task}: {state}; branch {t.branch or '-'}; files {', '.join(t.files) or '-'}; "
            f"gate {gate}; tokens {tokens}; cost {cost}"
        )
        if not t.merged:
            click.echo(f"    why: {t.reason}")
    for o in r.overlaps:
        click.echo(f"  overlap: {o.describe()}")
    click.echo(f"{r.outcome} (exit {r.exit_code})")
