"""``godel agent ...``: spawn, run, inspect, steer and kill agents."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from core.api.protocol import INVALID_PARAMS, METHOD_NOT_FOUND, RpcError
from core.api.shapes import AGENT_STATUSES, ENDED_STATUSES, AgentObject, ExecObject
from core.cli import render
from core.cli.common import (
    EXIT_ERROR,
    Ctx,
    call,
    echo_json,
    fail,
    json_option,
    pass_ctx,
    request,
    run,
    sync_command,
)

__all__ = ["agent"]

# How many of an agent's execs `agent get` shows.
RECENT_EXECS = 20


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
@sync_command
def agent_spawn(
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
    result = request(ctx, "agent.spawn", params)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"Spawned {render.runtime_label(result['runtime'])} agent: {result['id']}")


@agent.command("list")
@click.option("--swarm", help="Only the agents of this swarm.")
@click.option("--status", type=click.Choice(AGENT_STATUSES), help="Only agents in this status.")
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Include agents that have ended (stopped, lost, failed); hidden by default.",
)
@json_option
@pass_ctx
@sync_command
def agent_list(ctx: Ctx, swarm: str | None, status: str | None, all_: bool, as_json: bool) -> None:
    """List agents: swarm, status (with its source and age), task, tokens and cost.

    A cost of ``-`` is unknown (no price for the model, or no usage reported), not zero.
    """
    # Asking for an ended status asks for ended agents.
    params: dict[str, Any] = {"include_ended": all_ or status in ENDED_STATUSES}
    if swarm is not None:
        params["swarm"] = swarm
    if status is not None:
        params["status"] = status
    agents: list[AgentObject] = request(ctx, "agent.list", params)
    if as_json:
        echo_json(agents)
        return
    if not agents:
        click.echo(_no_agents(swarm, status, all_))
        return
    click.echo(render.table(render.AGENT_HEADERS, [render.agent_row(a) for a in agents]))


def _no_agents(swarm: str | None, status: str | None, all_: bool) -> str:
    if swarm is None and status is None:
        if all_:
            return "No agents. Spawn one with `godel agent spawn --runtime shell`."
        return (
            "No running agents (`--all` also shows ended ones). "
            "Spawn one with `godel agent spawn --runtime shell`."
        )
    what = f"No {status + ' ' if status else ''}agents{' in swarm ' + swarm if swarm else ''}"
    hidden = not all_ and status not in ENDED_STATUSES
    return what + (" (`--all` also shows ended ones)." if hidden else ".")


@agent.command("get")
@click.argument("agent_id")
@json_option
@pass_ctx
@sync_command
def agent_get(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """Show one agent (the object `agent list` shows) and, as text, its recent execs."""
    result: AgentObject = request(ctx, "agent.get", {"id": agent_id})
    if as_json:
        echo_json(result)
        return
    execs: list[ExecObject] | None
    try:
        execs = request(
            ctx, "exec.list", {"agent": result.get("id", agent_id), "limit": RECENT_EXECS}
        )
    except RpcError as e:
        # A daemon without exec.list (older than this client): show the agent anyway.
        if e.rpc_code not in (METHOD_NOT_FOUND, INVALID_PARAMS):
            raise
        execs = None
    click.echo(render.agent_detail(result, execs))


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
    from core.models import ExecResult  # the exec path renders events with pydantic anyway

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
        # Why it failed, unless the command's own exit code and stderr already say it.
        if result.status.value != "succeeded" and (result.reason or result.exit_code is None):
            failure = render.exec_failure(result.exec_id, result.status.value, result.reason)
            click.echo(f"godel: {failure}", err=True)
    if result.exit_code is None:
        sys.exit(EXIT_ERROR)
    sys.exit(result.exit_code if 0 <= result.exit_code < 256 else EXIT_ERROR)


@agent.command("logs")
@click.argument("agent_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the agent ends.")
@json_option
@pass_ctx
@sync_command
def agent_logs(ctx: Ctx, agent_id: str, follow: bool, as_json: bool) -> None:
    """Print an agent's stored output (stdout and stderr, in order)."""

    def on_stream(data: Any) -> None:
        if as_json:
            click.echo(json.dumps(data))
            return
        stream = sys.stderr if data.get("stream") == "stderr" else sys.stdout
        stream.write(data.get("data", ""))
        stream.flush()

    request(ctx, "agent.logs", {"id": agent_id, "follow": follow}, on_stream=on_stream)


@agent.command("kill")
@click.argument("agent_id")
@json_option
@pass_ctx
@sync_command
def agent_kill(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """End an agent and every process it started."""
    result = request(ctx, "agent.kill", {"id": agent_id})
    if as_json:
        echo_json(result)
    else:
        click.echo(f"Killed agent: {result['id']}")


@agent.command("restart")
@click.argument("agent_id")
@json_option
@pass_ctx
@sync_command
def agent_restart(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """Stop an agent and spawn one like it (same spec and swarm, a new id)."""
    result = request(ctx, "agent.restart", {"id": agent_id})
    if as_json:
        echo_json(result)
    else:
        click.echo(f"Restarted {agent_id} as {result['id']}")


@agent.command("steer")
@click.argument("agent_id")
@click.argument("message")
@pass_ctx
@sync_command
def agent_steer(ctx: Ctx, agent_id: str, message: str) -> None:
    """Tell an LLM agent's running exec something (delivered between its turns)."""
    result = request(ctx, "agent.steer", {"id": agent_id, "message": message})
    if not result["delivered"]:
        fail(f"agent {agent_id} is not running anything to steer")
    click.echo("Steered.")


@agent.command("abort")
@click.argument("agent_id")
@pass_ctx
@sync_command
def agent_abort(ctx: Ctx, agent_id: str) -> None:
    """Abort the agent's running exec; the agent stays."""
    result = request(ctx, "agent.abort", {"id": agent_id})
    click.echo("Aborted." if result["aborted"] else "Nothing was running.")


@agent.command("health")
@click.argument("agent_id")
@json_option
@pass_ctx
@sync_command
def agent_health(ctx: Ctx, agent_id: str, as_json: bool) -> None:
    """Probe an agent's process now."""
    result = request(ctx, "agent.health", {"id": agent_id})
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{result['state']}{': ' + result['detail'] if result.get('detail') else ''}")
    if result["state"] != "healthy":
        sys.exit(EXIT_ERROR)
