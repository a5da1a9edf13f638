"""``godel run PLAN.toml``: a plan run to completion, headless (docs/headless.md).

Exit codes: 0 every task succeeded; 1 a task failed or was cancelled (or the daemon went
away mid-run); 2 bad usage, a bad plan, or a plan the engine refuses before any task is
queued (unknown runtime, a swarm of that name with another runtime...); 3 a budget
stopped tasks (a failed task's error says ``budget exhausted``); 130 interrupted (Ctrl-C: the
run's unfinished tasks are cancelled).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.cli.common import Ctx, check_budget_option, fail, json_option, pass_ctx, run_home
from core.errors import USAGE_KINDS, GodelError
from core.paths import GodelPaths


@click.command("run")
@click.argument("plan_file", metavar="PLAN.toml")
@json_option
@click.option(
    "--max-parallel",
    type=click.IntRange(1),
    help="At most N of the run's tasks unfinished on the daemon at once (the rest are "
    "held back), so at most N run at once.",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, writable=True),
    help="Write what the run received to FILE (`godel replay FILE` plays it).",
)
@click.option(
    "--budget",
    metavar="DOLLARS",
    help="Set the project's budget to DOLLARS first (`godel budget set project DOLLARS`: "
    "it stays set; with --embedded on a temporary home it is the run's own).",
)
@click.option(
    "--embedded",
    is_flag=True,
    help="Run an engine in this process instead of the daemon: on --home/$GODEL_HOME "
    "when given, else on a temporary home removed afterwards.",
)
@pass_ctx
def run_plan(
    ctx: Ctx,
    plan_file: str,
    as_json: bool,
    max_parallel: int | None,
    record: str | None,
    budget: str | None,
    embedded: bool,
) -> None:
    """Run the swarms and tasks of PLAN.toml until every task is final.

    JSON lines on stdout with --json or when stdout is not a terminal; a live table
    otherwise. Exits 0 if all succeeded, 1 on task failures, 2 on a usage or plan
    error, 3 when a budget stopped the run, 130 when interrupted."""
    import asyncio

    from core.config.plan import load_plan

    try:
        plan = load_plan(plan_file)
    except GodelError as e:
        fail(e.message, 2)
    check_budget_option(budget)
    with run_home(ctx, embedded, "godel-run-") as paths:
        try:
            code = asyncio.run(_run(paths, plan, as_json, max_parallel, record, budget, embedded))
        except KeyboardInterrupt:  # before the run could cancel anything (starting up)
            fail("interrupted before any task was queued", 130)
    sys.exit(code)


async def _run(
    paths: GodelPaths,
    plan: object,
    as_json: bool,
    max_parallel: int | None,
    record: str | None,
    budget: str | None,
    embedded: bool,
) -> int:
    from core.cli.batch import Reporter, Run
    from core.cli.batch_backends import Backend, DaemonBackend, EmbeddedBackend
    from core.cli.batch_output import JsonLines, LiveTable
    from core.config.plan import Plan
    from core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
    from core.events.recording import ConsoleRecording

    assert isinstance(plan, Plan)
    recording: ConsoleRecording | None = None
    if record is not None:
        try:
            recording = ConsoleRecording(Path(record))
        except OSError as e:
            fail(f"cannot write the recording {record}: {e.strerror or e}", EXIT_USAGE)
    backend: Backend | None = None
    live: LiveTable | None = None
    run: Run | None = None
    try:
        try:
            backend = await (EmbeddedBackend.open(paths) if embedded else DaemonBackend.open(paths))
            reporter: Reporter
            if as_json or not sys.stdout.isatty():
                reporter = JsonLines()
            else:
                live = LiveTable([])
                reporter = live
            run = Run(
                backend, plan, reporter, max_parallel=max_parallel, record=recording, budget=budget
            )
            if live is not None:
                live.states = list(run.states.values())
            outcome = await run.execute()
        except GodelError as e:
            if live is not None:
                live.stop()
            submitted = run is not None and any(s.id is not None for s in run.states.values())
            if e.data.get("kind") in USAGE_KINDS and not submitted:
                fail(e.message, EXIT_USAGE)
            where = "; the run's queued tasks stay queued" if submitted else ""
            fail(f"{e.message}{where}", EXIT_FAILED)
        reporter.done(outcome)
        if outcome.exit_code == EXIT_INTERRUPTED:
            click.echo(
                f"godel: interrupted: cancelled {outcome.cancelled} unfinished task(s) of the run",
                err=True,
            )
        return outcome.exit_code
    finally:
        if backend is not None:
            await backend.close()
        if recording is not None:
            recording.close()
