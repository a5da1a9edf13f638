"""``godel do "<intent>"``: a plan's tasks run by agents in worktrees, gated and merged
(docs/do.md). There is no planner yet: the tasks come from ``--plan FILE``.

Exit codes as ``godel run``: 0 every task merged; 1 a task failed, was not merged or was
not run; 2 bad usage, a bad plan, or not a git repository; 3 a budget stopped a task;
130 interrupted.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from core.cli.common import Ctx, fail, json_option, pass_ctx
from core.errors import GodelError

if TYPE_CHECKING:
    from core.config import DoSettings
    from core.engine.doruns import DoReport
    from core.paths import GodelPaths
    from core.work.plan import DoPlan

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# Errors in what the run was asked (as `godel run`'s): exit 2.
USAGE_KINDS = frozenset(
    {"config_error", "invalid_input", "unknown_runtime", "home_error", "llm_unavailable"}
)


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
    help="careful: merge one branch at a time, gated; fast (and balanced, for now): "
    "merge the non-overlapping branches together, gate once.  [default: [do] strategy, "
    "else careful]",
)
@click.option("--runtime", help="The agents' runtime.  [default: [do] runtime, else shell]")
@click.option("--model", help="The agents' model.  [default: [do] model]")
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
    import shutil
    import tempfile
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
    model = model or settings.model
    gate = gate or settings.gate
    if budget is None and settings.budget is not None:
        budget = str(settings.budget)
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
    request: dict[str, Any] = {
        "intent": intent,
        "repo": str(Path.cwd().resolve()),
        "plan": plan.model_dump(),
        "agents": agents,
        "strategy": "careful" if strategy == "careful" else "fast",
        "runtime": runtime,
        "model": model,
        "gate": gate,
        "worktrees": settings.worktrees.model_dump(mode="json"),
    }
    home_given = click.get_current_context().find_root().params.get("home") is not None
    paths, temp_home = ctx.paths, None
    if embedded and not home_given:
        from core.paths import GodelPaths

        temp_home = tempfile.mkdtemp(prefix="godel-do-")
        paths = GodelPaths.resolve(temp_home)
    try:
        code = asyncio.run(_run(paths, request, budget, as_json, embedded, record))
    except KeyboardInterrupt:
        fail("interrupted: agents killed; unmerged worktrees and branches are kept", 130)
    finally:
        if temp_home is not None:
            shutil.rmtree(temp_home, ignore_errors=True)
    sys.exit(code)


def _settings() -> DoSettings:
    """The ``[do]`` settings that apply here (one-line ``ConfigError`` if a file is bad)."""
    from core.config import load_config
    from core.runtimes.registry import known_runtime_names

    return load_config(known_runtime_names()).config.do


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
            fail(e.message, EXIT_USAGE if e.data.get("kind") in USAGE_KINDS else 1)

        def on_stream(data: Any) -> None:
            nonlocal last_seq
            if not isinstance(data, dict):
                return
            last_seq = max(last_seq, int(data.get("seq") or 0))
            if as_json:
                click.echo(json.dumps(data))
            else:
                line = _event_line(data)
                if line is not None:
                    click.echo(line)

        try:
            raw = await backend.call("do.run", request, on_stream)
        except GodelError as e:
            fail(e.message, EXIT_USAGE if e.data.get("kind") in USAGE_KINDS else 1)
    finally:
        if recorder is not None:
            await recorder.stop(until_seq=last_seq)
        if backend is not None:
            await backend.close()
    from core.engine.doruns import DoReport

    report = DoReport.model_validate(raw)
    if not as_json:
        _print_report(report)
    return report.exit_code


def _event_line(e: dict[str, Any]) -> str | None:
    """The line printed for a ``do.*`` event (None: nothing to print)."""
    kind = e.get("type")
    if kind == "do.step":
        return str(e.get("line", ""))
    if kind == "do.started":
        gate = f", gate `{e['gate']}`" if e.get("gate") else ", no gate"
        return (
            f"run {e['run']}: {e['intent']!r} in {e['repo']} on {e['base']} "
            f"({e['strategy']}, at most {e['agents']} at once{gate})"
        )
    if kind == "do.planned":
        tasks = e.get("tasks") or []
        levels = 1 + max((int(t.get("level", 0)) for t in tasks), default=0)
        spent = ""
        if e.get("tokens") is not None:
            spent = f"; planning took {e['tokens']} tokens"
            spent += f", ${e['cost_usd']}" if e.get("cost_usd") is not None else ", cost unknown"
        return f"plan ({e['source']}): {len(tasks)} tasks in {levels} levels{spent}"
    return None


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
