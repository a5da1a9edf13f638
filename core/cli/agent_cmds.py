"""``godel agent ...``: spawn, run, inspect, steer and kill agents."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from core.cli import render
from core.cli.common import (
    EXIT_ERROR,
    Ctx,
    async_command,
    call,
    echo_json,
    fail,
    json_option,
    pass_ctx,
    run,
)
from core.models import Agent, ExecResult, LogLine

__all__ = ["agent"]


@click.group()
def agent() -> None:
    """Spawn, run, inspect and kill agents."""


def _skills(value: str | None) -> list[str]:
    return [s.strip() for s in (value or "").split(",") if s.strip()]


@agent.command("spawn")
@click.option(
    "--runtime", "-r", required=True, help="Runtime to run the agent on (see `godel runtime list`)."
)
@click.option("--name", help="A unique name for the agent while it lives.")
@click.option("--model", help="Model for LLM runtimes.")
@click.option("--skills", help="Comma-separated skills, e.g. python,tests.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, resolve_path=True),
    help="Use this directory as the workspace.",
)
@json_option
@pass_ctx
@async_command
async def agent_spawn(
    ctx: Ctx,
    runtime: str,
    name: str | None,
    model: str | None,
    skills: str | None,
    workdir: str | None,
    as_json: bool,
) -> None:
    """Spawn an agent and wait until it is ready."""
    params: dict[str, Any] = {"runtime": runtime, "skills": _skills(skills)}
    if name:
        params["name"] = name
    if model:
        params["model"] = model
    if workdir:
        params["workdir"] = workdir
    result = await call(ctx, "agent.spawn", params)
    agent = Agent.model_validate(result)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"Spawned {render.runtime_label(agent.runtime)} agent: {agent.id}")


@agent.command("list")
@click.option("--live", is_flag=True, help="Only agents that have not ended.")
@json_option
@pass_ctx
@async_command
async def agent_list(ctx: Ctx, live: bool, as_json: bool) -> None:
    """List agents with their status and where that status came from."""
    result = await call(ctx, "agent.list", {"include_ended": not live})
    if as_json:
        echo_json(result)
        return
    agents = [Agent.model_validate(a) for a in result]
    if not agents:
        click.echo("No agents. Spawn one with `godel agent spawn --runtime shell`.")
        return
    click.echo(render.table(render.AGENT_HEADERS, [render.agent_row(a) for a in agents]))


@agent.command("get")
@click.argument("agent_id")
@json_option
@pass_ctx
@async_command
async def agent_get(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """Show one agent and its recent execs."""
    from core.models import ExecRecord

    result = await call(ctx, "agent.get", {"id": agent_id})
    if as_json:
        echo_json(result)
        return
    agent = Agent.model_validate(result["agent"])
    execs = [ExecRecord.model_validate(x) for x in result["execs"]]
    click.echo(render.agent_detail(agent, execs))


@agent.command("exec")
@click.argument("agent_id")
@click.argument("command")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds before the command is killed.",
)
@json_option
@pass_ctx
def agent_exec(ctx: Ctx, agent_id: str, command: str, timeout: float | None, as_json: bool) -> None:
    """Run COMMAND on an agent, streaming its output; exit with its exit code.

    For a shell agent COMMAND is a shell command; for an LLM agent (pi, native) it is the
    prompt: the answer goes to stdout, tool calls and their output to stderr, then the
    tokens and cost. With --json, print one JSON object per line: every event, then the
    result.
    """
    last_char = {"stdout": "\n"}

    def on_stream(data: Any) -> None:
        if as_json:
            click.echo(json.dumps(data))
            return
        stream_name, text = render.exec_event_text(data)
        if not text:
            return
        if stream_name == "stderr" and last_char["stdout"] != "\n":
            sys.stdout.write("\n")  # keep tool lines off the end of a streamed answer
            last_char["stdout"] = "\n"
        stream = sys.stderr if stream_name == "stderr" else sys.stdout
        stream.write(text)
        stream.flush()
        if stream_name == "stdout":
            last_char["stdout"] = text[-1]

    params: dict[str, Any] = {"id": agent_id, "input": command}
    if timeout is not None:
        params["timeout"] = timeout
    raw = run(call(ctx, "agent.exec", params, on_stream=on_stream))
    result = ExecResult.model_validate(raw)
    if as_json:
        click.echo(json.dumps(raw))
    else:
        if last_char["stdout"] != "\n":
            sys.stdout.write("\n")
            sys.stdout.flush()
        summary = render.exec_summary(result)
        if summary:
            click.echo(summary, err=True)
        if result.status.value not in ("succeeded", "failed") or (
            result.status.value == "failed" and result.exit_code is None
        ):
            click.echo(f"godel: exec {result.status.value}: {result.reason}", err=True)
    if result.exit_code is None:
        sys.exit(EXIT_ERROR)
    sys.exit(result.exit_code if 0 <= result.exit_code < 256 else EXIT_ERROR)


@agent.command("logs")
@click.argument("agent_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the agent ends.")
@json_option
@pass_ctx
@async_command
async def agent_logs(ctx: Ctx, agent_id: str, follow: bool, as_json: bool) -> None:
    """Print an agent's stored output (stdout and stderr, in order)."""

    def on_stream(data: Any) -> None:
        if as_json:
            click.echo(json.dumps(data))
            return
        line = LogLine.model_validate(data)
        stream = sys.stderr if line.stream == "stderr" else sys.stdout
        stream.write(line.data)
        stream.flush()

    await call(ctx, "agent.logs", {"id": agent_id, "follow": follow}, on_stream=on_stream)


@agent.command("kill")
@click.argument("agent_id")
@json_option
@pass_ctx
@async_command
async def agent_kill(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """End an agent and every process it started."""
    result = await call(ctx, "agent.kill", {"id": agent_id})
    if as_json:
        echo_json(result)
    else:
        click.echo(f"Killed agent: {result['id']}")


@agent.command("steer")
@click.argument("agent_id")
@click.argument("message")
@pass_ctx
@async_command
async def agent_steer(ctx: Ctx, agent_id: str, message: str) -> None:
    """Tell an LLM agent's running exec something (delivered between its turns)."""
    result = await call(ctx, "agent.steer", {"id": agent_id, "message": message})
    if not result["delivered"]:
        fail(f"agent {agent_id} is not running anything to steer")
    click.echo("Steered.")


@agent.command("abort")
@click.argument("agent_id")
@pass_ctx
@async_command
async def agent_abort(ctx: Ctx, agent_id: str) -> None:
    """Abort the agent's running exec; the agent stays."""
    result = await call(ctx, "agent.abort", {"id": agent_id})
    click.echo("Aborted." if result["aborted"] else "Nothing was running.")


@agent.command("health")
@click.argument("agent_id")
@json_option
@pass_ctx
@async_command
async def agent_health(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """Probe an agent's process now."""
    result = await call(ctx, "agent.health", {"id": agent_id})
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{result['state']}{': ' + result['detail'] if result.get('detail') else ''}")
    if result["state"] != "healthy":
        sys.exit(EXIT_ERROR)
