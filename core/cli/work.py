"""``godel task ...`` and ``godel swarm ...``: the queue and the swarms, from the CLI."""

from __future__ import annotations

import secrets
import sys
from typing import Any

import click

from core.api.shapes import (
    DEFAULT_STRATEGY,
    TASK_PRIORITIES,
    TASK_STATUSES,
    ExecShowObject,
    TaskObject,
)
from core.cli import render
from core.cli.common import (
    Ctx,
    async_command,
    call,
    echo_json,
    json_option,
    pass_ctx,
    request,
    sync_command,
)


def _csv(value: str | None) -> list[str]:
    return [s.strip() for s in (value or "").split(",") if s.strip()]


@click.group()
def task() -> None:
    """Submit, inspect, cancel and retry queued tasks."""


@task.command("submit")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--priority",
    "-p",
    type=click.Choice(TASK_PRIORITIES),
    default="normal",
    show_default=True,
)
@click.option("--skills", help="Skills an agent needs, comma-separated.")
@click.option("--depends-on", help="Task ids that must succeed first, comma-separated.")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per attempt.")
@click.option("--swarm", help="Queue in this swarm (default: the default pool).")
@click.option(
    "--runtime",
    "-r",
    help="Only agents of this runtime may take it (e.g. shell, so a command never reaches "
    "an LLM agent).",
)
@click.option("--wait", is_flag=True, help="Block until the tasks are final (as `task wait`).")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="With --wait: give up after S seconds (exit 124).",
)
@json_option
@pass_ctx
@async_command
async def task_submit(
    ctx: Ctx,
    inputs: tuple[str, ...],
    priority: str,
    skills: str | None,
    depends_on: str | None,
    max_attempts: int,
    timeout: float | None,
    swarm: str | None,
    runtime: str | None,
    wait: bool,
    wait_timeout: float | None,
    as_json: bool,
) -> None:
    """Queue one task per INPUT (a command for shell agents, a prompt for LLM agents).

    With --wait, block until they are final, then exit 0 if all succeeded, 1 if any
    failed or was cancelled; --json then prints the final tasks."""
    specs: list[dict[str, Any]] = []
    for text in inputs:
        spec: dict[str, Any] = {
            "input": text,
            "priority": priority,
            "skills": _csv(skills),
            "depends_on": _csv(depends_on),
            "max_attempts": max_attempts,
            "swarm": swarm,
        }
        if timeout is not None:
            spec["timeout_s"] = timeout
        if runtime is not None:
            spec["runtime"] = runtime
        specs.append(spec)
    result = await call(ctx, "task.submit", {"tasks": specs})
    _warn_stranded(result)
    if as_json and not wait:
        echo_json(result)
        return
    if not as_json:
        for t in result:
            click.echo(f"Queued task: {t['id']} ({t['status']})")
    if wait:
        from core.cli.waiting import wait_tasks  # asyncio: only for a wait

        sys.exit(await wait_tasks(ctx, [t["id"] for t in result], wait_timeout, as_json))


def _warn_stranded(tasks: list[dict[str, Any]]) -> None:
    """One warning on stderr per distinct reason no agent present can take a task (it
    is queued all the same: an agent may come later)."""
    why: dict[str, list[str]] = {}
    for t in tasks:
        if t.get("stranded"):
            why.setdefault(t.get("waiting") or "no agent can take it", []).append(t["id"])
    for text, ids in why.items():
        which = ids[0] if len(ids) == 1 else f"{len(ids)} tasks"
        click.echo(f"warning: {which}: {text}", err=True)


@task.command("list")
@click.option("--swarm")
@click.option("--status", type=click.Choice(TASK_STATUSES))
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@pass_ctx
@sync_command
def task_list(ctx: Ctx, swarm: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List tasks, newest first."""
    params: dict[str, Any] = {"limit": limit, "swarm": swarm}
    if status:
        params["status"] = status
    result = request(ctx, "task.list", params)
    if as_json:
        echo_json(result)
        return
    tasks: list[TaskObject] = result
    if not tasks:
        click.echo('No tasks. Queue one with `godel task submit "echo hi"`.')
        return
    click.echo(render.table(render.TASK_HEADERS, [render.task_row(t) for t in tasks]))
    if len(tasks) == limit:
        click.echo(f"(the newest {limit}; there may be more: --limit N)", err=True)


@task.command("get")
@click.argument("task_id")
@json_option
@pass_ctx
@sync_command
def task_get(ctx: Ctx, task_id: str, as_json: bool) -> None:
    """Show a task: why it waits, or how its last attempt ended (reason, stdout, stderr)."""
    result = request(ctx, "task.get", {"id": task_id})
    if as_json:
        echo_json(result)
        return
    output = None
    if result.get("exec_id"):
        # The last attempt's output, every stream (the task keeps its stdout only).
        shown: ExecShowObject = request(ctx, "exec.get", {"id": result["exec_id"]})
        output = shown["output"]
    click.echo(render.task_detail(result, output))


@task.command("wait")
@click.argument("task_ids", nargs=-1, required=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Give up after S seconds (exit 124); the tasks keep running.",
)
@json_option
@pass_ctx
@async_command
async def task_wait(
    ctx: Ctx, task_ids: tuple[str, ...], timeout: float | None, as_json: bool
) -> None:
    """Block until every TASK_ID is final, showing progress on a terminal.

    Exits 0 if all succeeded, 1 if any failed or was cancelled, 124 on --timeout.
    --json prints the final tasks. Never starts a stopped daemon."""
    from core.cli.waiting import wait_tasks  # asyncio: only for a wait

    sys.exit(await wait_tasks(ctx, list(task_ids), timeout, as_json))


@task.command("cancel")
@click.argument("task_id")
@pass_ctx
@async_command
async def task_cancel(ctx: Ctx, task_id: str) -> None:
    """Cancel a queued or running task (a running one is aborted on its agent)."""
    result = await call(ctx, "task.cancel", {"id": task_id})
    click.echo(f"Cancelled task: {result['id']}")


@task.command("retry")
@click.argument("task_id")
@pass_ctx
@async_command
async def task_retry(ctx: Ctx, task_id: str) -> None:
    """Queue a failed or cancelled task again, with fresh attempts."""
    result = await call(ctx, "task.retry", {"id": task_id})
    click.echo(f"Requeued task: {result['id']} ({result['status']})")


# swarms ---------------------------------------------------------------------------


@click.group()
def swarm() -> None:
    """Create, scale, inspect and destroy swarms of agents."""


def _swarm_options(fn: Any) -> Any:
    for opt in reversed(
        [
            click.option("--runtime", "-r", default="shell", show_default=True),
            click.option(
                "--count", "-n", type=click.IntRange(0, 5000), default=1, show_default=True
            ),
            click.option("--model", help="Model for LLM runtimes (default: defaults.model)."),
            click.option("--skills", help="Skills of every agent, comma-separated."),
            click.option("--min", "min_agents", type=click.IntRange(0, 5000)),
            click.option("--max", "max_agents", type=click.IntRange(1, 5000)),
            click.option(
                "--strategy",
                default=DEFAULT_STRATEGY,
                show_default=True,
                help="Routing strategy (see docs/architecture.md#federation).",
            ),
            click.option(
                "--target-per-agent",
                type=click.IntRange(1),
                default=1,
                show_default=True,
                help="Ready or running tasks per agent the autoscaler aims for.",
            ),
            click.option(
                "--capacity",
                type=click.IntRange(1),
                default=10_000,
                show_default=True,
                help="Active tasks the swarm's queue holds (refused above 95 %).",
            ),
            json_option,
        ]
    ):
        fn = opt(fn)
    return fn


async def _create(
    ctx: Ctx,
    name: str,
    runtime: str,
    count: int,
    model: str | None,
    skills: str | None,
    min_agents: int | None,
    max_agents: int | None,
    strategy: str,
    target_per_agent: int,
    capacity: int,
    as_json: bool,
) -> None:
    params: dict[str, Any] = {
        "name": name,
        "runtime": runtime,
        "count": count,
        "skills": _csv(skills),
        "strategy": strategy,
        "capacity": capacity,
        "target_per_agent": target_per_agent,
    }
    for key, value in (("model", model), ("min_agents", min_agents), ("max_agents", max_agents)):
        if value is not None:
            params[key] = value
    result = await call(ctx, "swarm.create", params)
    if as_json:
        echo_json(result)
    else:
        agents = result["agents"]
        click.echo(
            f"Created swarm {name}: {len(agents)} {runtime} agents, "
            f"{len(result['failures'])} failures"
        )
        for err in result["failures"][:5]:
            click.echo(f"  failed: {err}", err=True)
    if result["failures"]:
        sys.exit(1)


@swarm.command("create")
@click.argument("name")
@_swarm_options
@pass_ctx
@async_command
async def swarm_create(ctx: Ctx, name: str, **kw: Any) -> None:
    """Create swarm NAME with --count agents on --runtime."""
    await _create(ctx, name, **kw)


@swarm.command("spawn")
@_swarm_options
@pass_ctx
@async_command
async def swarm_spawn(ctx: Ctx, **kw: Any) -> None:
    """Create a swarm with a generated name (e.g. `godel swarm spawn --count 50`)."""
    await _create(ctx, f"swarm-{secrets.token_hex(3)}", **kw)


@swarm.command("scale")
@click.argument("name")
@click.argument("count", type=click.IntRange(0, 5000))
@json_option
@pass_ctx
@async_command
async def swarm_scale(ctx: Ctx, name: str, count: int, as_json: bool) -> None:
    """Spawn or stop agents until swarm NAME has COUNT."""
    result = await call(ctx, "swarm.scale", {"name": name, "count": count})
    if as_json:
        echo_json(result)
    else:
        failures = result["failures"]
        click.echo(f"Scaled swarm {name} to {count} agents, {len(failures)} failures")
        for err in failures[:5]:
            click.echo(f"  failed: {err}", err=True)
    if result["failures"]:
        sys.exit(1)


@swarm.command("status")
@click.argument("name")
@json_option
@pass_ctx
@sync_command
def swarm_status(ctx: Ctx, name: str, as_json: bool) -> None:
    """A swarm: its agents by status, its tasks by status, ready tasks by priority."""
    result = request(ctx, "swarm.status", {"name": name})
    if as_json:
        echo_json(result)
        return
    click.echo(render.swarm_detail(result))


@swarm.command("list")
@json_option
@pass_ctx
@sync_command
def swarm_list(ctx: Ctx, as_json: bool) -> None:
    """Active swarms."""
    result = request(ctx, "swarm.list")
    if as_json:
        echo_json(result)
        return
    if not result:
        click.echo("No swarms. Create one with `godel swarm create NAME --count 3`.")
        return
    click.echo(render.table(render.SWARM_HEADERS, [render.swarm_row(s) for s in result]))


@swarm.command("strategy")
@click.argument("name")
@click.argument("strategy")
@pass_ctx
@async_command
async def swarm_strategy(ctx: Ctx, name: str, strategy: str) -> None:
    """Change swarm NAME's routing STRATEGY now (see `godel route strategies`)."""
    await call(ctx, "swarm.strategy", {"name": name, "strategy": strategy})
    click.echo(f"Swarm {name} now routes with {strategy}")


@swarm.command("destroy")
@click.argument("name")
@json_option
@pass_ctx
@async_command
async def swarm_destroy(ctx: Ctx, name: str, as_json: bool) -> None:
    """Stop every agent of swarm NAME and cancel its unfinished tasks."""
    result = await call(ctx, "swarm.destroy", {"name": name})
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"Destroyed swarm {name}: {len(result['stopped'])} agents stopped, "
        f"{result['cancelled_tasks']} tasks cancelled"
    )


@click.group()
def route() -> None:
    """Explain routing decisions and list strategies."""


@route.command("explain")
@click.argument("task_id")
@json_option
@pass_ctx
@sync_command
def route_explain(ctx: Ctx, task_id: str, as_json: bool) -> None:
    """Score every candidate agent for TASK_ID now, and show how it was routed before."""
    result = request(ctx, "route.explain", {"id": task_id})
    if as_json:
        echo_json(result)
        return
    click.echo(render.route_explain_text(result))


@route.command("strategies")
@json_option
@pass_ctx
@sync_command
def route_strategies(ctx: Ctx, as_json: bool) -> None:
    """List the routing strategies."""
    result = request(ctx, "route.strategies")
    if as_json:
        echo_json(result)
    else:
        click.echo("\n".join(result))
