"""``godel do "<intent>"``: a plan's tasks run by agents in worktrees, gated and merged
(docs/do.md). The tasks come from ``--plan FILE``, else the engine's planner asks a model.

Exit codes as ``godel run``: 0 every task merged; 1 a task failed, was not merged or was
not run; 2 bad usage, a bad plan, or not a git repository; 3 a budget stopped a task;
130 interrupted.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from core.cli.common import Ctx, check_budget_option, fail, json_option, pass_ctx, run_home
from core.cli.do_render import event_line, report_lines
from core.errors import EXIT_INTERRUPTED, EXIT_USAGE, GodelError, run_exit_code

if TYPE_CHECKING:
    from core.config import DoSettings
    from core.paths import GodelPaths
    from core.work.plan import DoPlan
    from core.work.planner import PlanResult


@click.command("do")
@click.argument("intent")
@click.option(
    "--agents",
    type=click.IntRange(1),
    help="At most N tasks (and so N agents) at once.  [default: [do] agents, else 1]",
)
@click.option(
    "--budget",
    metavar="DOLLARS",
    help="Set the project's budget to DOLLARS first (`godel budget set project`).  "
    "[default: [do] budget, else none set]",
)
@click.option(
    "--strategy",
    type=click.Choice(["careful", "fast", "balanced"]),
    help="careful: merge one branch at a time, gated after each; fast: merge the "
    "non-overlapping branches together, gate once; balanced: fast, then what fast left "
    "(overlaps, or a batch whose gate failed) one at a time, gated.  [default: [do] "
    "strategy, else careful]",
)
@click.option("--runtime", help="The agents' runtime.  [default: [do] runtime, else shell]")
@click.option("--model", help="The agents' model, and the planner's.  [default: [do] model]")
@click.option(
    "--planner-model",
    help="The model that plans the intent.  [default: --model, else [do] planner_model, "
    "else [do] model]",
)
@click.option(
    "--gate",
    "gate",
    metavar="COMMAND",
    help="Run in each task's worktree and after each merge (e.g. 'make test').  "
    "[default: [do] gate]",
)
@click.option("--plan", "plan_file", metavar="FILE", help="The tasks, as JSON (docs/do.md).")
@click.option("--dry-run", is_flag=True, help="Print the plan and exit.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False, writable=True),
    help="Write what the engine published during the run to FILE (`godel replay FILE`).",
)
@click.option(
    "--embedded",
    is_flag=True,
    help="Run an engine in this process instead of the daemon (on --home/$GODEL_HOME when "
    "given, else on a temporary home removed afterwards).",
)
@json_option
@pass_ctx
def do(
    ctx: Ctx,
    intent: str,
    agents: int | None,
    budget: str | None,
    strategy: str | None,
    runtime: str | None,
    model: str | None,
    planner_model: str | None,
    gate: str | None,
    plan_file: str | None,
    dry_run: bool,
    record: str | None,
    embedded: bool,
    as_json: bool,
) -> None:
    """Run INTENT's tasks in git worktrees of the current repository and merge them.

    Defaults come from the [do] section of the repository's .godel/config.toml
    (docs/do.md); the options override it.

    Each line printed is a step the engine published (do.step events; every do.* event
    as a JSON line with --json, the last, do.finished, carrying the report). Exits 0 if
    every task was merged, 1 otherwise, 2 on a usage, plan or repository error, 3 when
    a budget stopped a task, 130 when interrupted."""
    import asyncio
    from pathlib import Path

    from core.work.plan import load_do_plan
    from core.work.worktrees import open_repo

    try:
        asyncio.run(open_repo(Path.cwd()))
        settings = _settings()
    except GodelError as e:
        fail(e.message, EXIT_USAGE)
    agents = agents or settings.agents
    strategy = strategy or settings.strategy
    runtime = runtime or settings.runtime
    # An explicit --model plans too; the config's planner_model only fills in for it.
    planner_model = planner_model or model or settings.planner_model or settings.model
    model = model or settings.model
    gate = gate or settings.gate
    if budget is None and settings.budget is not None:
        budget = str(settings.budget)
    plan: DoPlan | None = None
    if plan_file is not None:
        try:
            plan = load_do_plan(plan_file)
        except GodelError as e:
            fail(e.message, EXIT_USAGE)
    check_budget_option(budget)
    if plan is None and planner_model is None:
        fail(
            "nothing to plan with: pass --plan FILE (docs/do.md), or a model to plan with "
            "(--model, or [do] planner_model in .godel/config.toml)",
            EXIT_USAGE,
        )
    repo = str(Path.cwd().resolve())
    if dry_run and plan is not None:
        estimate, why = asyncio.run(_estimate_if_running(ctx.paths, plan, runtime, model))
        _print_plan(plan, runtime, as_json, None, estimate, why)
        sys.exit(0)
    request: dict[str, Any] = {
        "intent": intent,
        "repo": repo,
        "plan": plan.model_dump() if plan is not None else None,
        "planner_model": planner_model,
        "agents": agents,
        "strategy": strategy,
        "runtime": runtime,
        "model": model,
        "gate": gate,
        "worktrees": settings.worktrees.model_dump(mode="json"),
    }
    with run_home(ctx, embedded, "godel-do-") as paths:
        try:
            if dry_run:  # no plan file: the planner's plan
                ask = {"intent": intent, "repo": repo, "model": planner_model}
                code = asyncio.run(_dry_run(paths, ask, runtime, model, as_json, embedded))
            else:
                code = asyncio.run(_run(paths, request, budget, as_json, embedded, record))
        except KeyboardInterrupt:
            fail(
                "interrupted: the run stops and its agents are killed; unmerged worktrees and "
                "branches are kept",
                EXIT_INTERRUPTED,
            )
    sys.exit(code)


def _settings() -> DoSettings:
    """The ``[do]`` settings that apply here (one-line ``ConfigError`` if a file is bad)."""
    from core.config import load_config
    from core.runtimes.registry import known_runtime_names

    return load_config(known_runtime_names()).config.do


async def _dry_run(
    paths: GodelPaths,
    ask: dict[str, Any],
    runtime: str,
    model: str | None,
    as_json: bool,
    embedded: bool,
) -> int:
    """Ask the engine's planner for a plan (``do.plan``) and what running it should cost
    (``do.estimate``), print them, run nothing."""
    from core.cli.batch_backends import Backend, DaemonBackend, EmbeddedBackend
    from core.work.planner import PlanResult

    backend: Backend | None = None
    try:
        backend = await (EmbeddedBackend.open(paths) if embedded else DaemonBackend.open(paths))
        result = PlanResult.model_validate(await backend.call("do.plan", ask))
        estimate = await backend.call(
            "do.estimate",
            {"plan": result.plan.model_dump(), "runtime": runtime, "model": model},
        )
    except GodelError as e:
        fail(e.message, run_exit_code(e))
    finally:
        if backend is not None:
            await backend.close()
    _print_plan(result.plan, runtime, as_json, result, estimate, None)
    return 0


async def _estimate_if_running(
    paths: GodelPaths, plan: DoPlan, runtime: str, model: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """``do.estimate`` from the daemon if one runs (a dry run starts none), else why not."""
    from core.api.client import DaemonNotRunning, connect

    if _all_shell(plan, runtime):
        return None, None
    try:
        client = await connect(paths, autostart=False)
    except DaemonNotRunning:
        return None, "no daemon runs to measure past execs from (godel daemon start)"
    try:
        params = {"plan": plan.model_dump(), "runtime": runtime, "model": model}
        return await client.call("do.estimate", params), None
    except GodelError as e:
        return None, e.message
    finally:
        await client.close()


def _all_shell(plan: DoPlan, runtime: str) -> bool:
    return all((t.runtime or runtime) == "shell" for t in plan.tasks)


def _running_cost(
    plan: DoPlan, runtime: str, estimate: dict[str, Any] | None, why: str | None
) -> str:
    """The dry run's line on what running the plan should cost, with its basis."""
    if _all_shell(plan, runtime):
        return "none (shell agents have no price)"
    if estimate is None:
        return f"unknown: {why or 'not estimated'}"
    unknown = [t for t in estimate["tasks"] if t["usd"] is None]
    if unknown:
        return f"unknown: {unknown[0]['basis']} (task {unknown[0]['task']})"
    bases = sorted({t["basis"] for t in estimate["tasks"] if t.get("model")})
    return (
        f"about ${estimate['total_usd']}, one exec per task ({'; '.join(bases)}); "
        "a retry after a failed gate adds an exec"
    )


def _print_plan(
    plan: DoPlan,
    runtime: str,
    as_json: bool,
    planned: PlanResult | None,
    estimate: dict[str, Any] | None,
    why: str | None,
) -> None:
    import json

    running = _running_cost(plan, runtime, estimate, why)
    planning = None
    if planned is not None:
        spent = f"${planned.cost_usd}" if planned.cost_usd is not None else "cost unknown"
        tries = f", {planned.attempts} tries" if planned.attempts > 1 else ""
        planning = f"{spent} ({planned.usage.total_tokens} tokens, model {planned.model}{tries})"
    levels = plan.levels()
    if as_json:
        tasks = [t.model_dump() | {"level": i} for i, lv in enumerate(levels) for t in lv]
        made = None
        if planned is not None:
            made = {
                "model": planned.model,
                "tokens": planned.usage.total_tokens,
                "cost_usd": None if planned.cost_usd is None else str(planned.cost_usd),
                "attempts": planned.attempts,
            }
        shown = {"tasks": tasks, "planning": made, "running_cost": running, "estimate": estimate}
        click.echo(json.dumps(shown))
        return
    for i, level in enumerate(levels):
        for t in level:
            deps = f" after {', '.join(t.depends_on)}" if t.depends_on else ""
            files = f" files: {', '.join(t.files)}" if t.files else ""
            own = f" [{t.runtime}]" if t.runtime and t.runtime != runtime else ""
            first, *rest = t.input.splitlines() or [""]
            more = f" (+{len(rest)} lines)" if rest else ""
            click.echo(f"{i + 1}. {t.name}{own}{deps}: {first}{more}{files}")
    if planning is not None:
        click.echo(f"planning cost: {planning}")
    click.echo(f"running cost: {running}")


async def _run(
    paths: GodelPaths,
    request: dict[str, Any],
    budget: str | None,
    as_json: bool,
    embedded: bool,
    record: str | None,
) -> int:
    """Run the plan on the daemon (or an engine here): print each ``do.step`` line the
    engine streams back (each ``do.*`` event as a JSON line with --json)."""
    import json

    from core.cli.batch_backends import Backend, DaemonBackend, EmbeddedBackend
    from core.cli.recorder import Recorder

    backend: Backend | None = None
    recorder: Recorder | None = None
    last_seq = 0
    try:
        try:
            backend = await (EmbeddedBackend.open(paths) if embedded else DaemonBackend.open(paths))
            if record is not None:
                recorder = await Recorder.start(backend, record)
            if budget is not None:
                await backend.call("budget.set", {"scope": "project", "amount": budget})
        except GodelError as e:
            fail(e.message, run_exit_code(e))

        def on_stream(data: Any) -> None:
            nonlocal last_seq
            if not isinstance(data, dict):
                return
            last_seq = max(last_seq, int(data.get("seq") or 0))
            if as_json:
                click.echo(json.dumps(data))
            else:
                line = event_line(data)
                if line is not None:
                    click.echo(line)

        try:
            raw = await backend.call("do.run", request, on_stream)
        except GodelError as e:
            fail(e.message, run_exit_code(e))
    finally:
        if recorder is not None:
            await recorder.stop(until_seq=last_seq)
        if backend is not None:
            await backend.close()
    if not as_json:
        _print_report(raw)
    return int(raw["exit_code"])


def _print_report(report: dict[str, Any]) -> None:
    for line in report_lines(report):
        click.echo(line)
