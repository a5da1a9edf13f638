"""The engine's JSON-RPC methods. Each is a thin mapping onto one ``Engine`` call."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core import __version__
from core.api.jsonrpc import JSON, CallContext, Emit, NoParams, RpcMethods
from core.engine import Engine
from core.federation.metrics import CONTENT_TYPE
from core.federation.routing import strategy_names
from core.models import AgentSpec, ExecResult, SwarmSpec, TaskSpec, TaskStatus


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentRef(_Params):
    id: str = Field(min_length=1, description="agent id or name")


class ListAgentsParams(_Params):
    include_ended: bool = True


class ExecParams(_Params):
    id: str = Field(min_length=1)
    input: str
    timeout: float | None = Field(default=None, gt=0)


class SteerParams(_Params):
    id: str = Field(min_length=1)
    message: str = Field(min_length=1)


class LogsParams(_Params):
    id: str = Field(min_length=1)
    after_seq: int = Field(default=0, ge=0)
    follow: bool = False


class AuditListParams(_Params):
    after_seq: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, ge=1)
    subject: str | None = None


class TaskRef(_Params):
    id: str = Field(min_length=1)


class TaskSubmitParams(_Params):
    tasks: list[TaskSpec] = Field(min_length=1, max_length=10_000)


class TaskListParams(_Params):
    swarm: str | None = None
    status: TaskStatus | None = None
    limit: int = Field(default=100, ge=1, le=100_000)


class SwarmStrategyParams(_Params):
    name: str = Field(min_length=1)
    strategy: str = Field(min_length=1)


class SwarmRef(_Params):
    name: str = Field(min_length=1)


class SwarmScaleParams(_Params):
    name: str = Field(min_length=1)
    count: int = Field(ge=0, le=5000)


class ConfigReloadParams(_Params):
    cwd: str | None = None


def build_methods(
    engine: Engine, *, started_at: float, request_stop: Callable[[str, str], None]
) -> RpcMethods:
    rpc = RpcMethods()

    @rpc.method("daemon.status")
    async def daemon_status(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Daemon pid, version, home, uptime and agent counts by status."""
        agents = await engine.list_agents()
        counts: dict[str, int] = {}
        for a in agents:
            counts[a.status.value] = counts.get(a.status.value, 0) + 1
        return {
            "running": True,
            "pid": os.getpid(),
            "version": __version__,
            "home": str(engine.paths.home),
            "socket": str(engine.paths.socket),
            "uptime_s": round(time.time() - started_at, 3),
            "agents": counts,
        }

    @rpc.method("daemon.stop")
    async def daemon_stop(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Stop every agent and the daemon (after this response is sent)."""
        request_stop("stop requested", ctx.actor)
        return {"stopping": True, "pid": os.getpid()}

    @rpc.method("agent.spawn", AgentSpec)
    async def agent_spawn(p: AgentSpec, ctx: CallContext, emit: Emit) -> JSON:
        """Spawn an agent on a runtime; returns it once ready."""
        return await engine.spawn_agent(p, ctx.actor)

    @rpc.method("agent.list", ListAgentsParams)
    async def agent_list(p: ListAgentsParams, ctx: CallContext, emit: Emit) -> JSON:
        """Every agent the store knows, with status and the status's source."""
        return await engine.list_agents(include_ended=p.include_ended)

    @rpc.method("agent.get", AgentRef)
    async def agent_get(p: AgentRef, ctx: CallContext, emit: Emit) -> JSON:
        """One agent and its recent execs."""
        agent = await engine.get_agent(p.id)
        execs = await engine.list_execs(agent.id, limit=20)
        return {"agent": agent, "execs": execs}

    @rpc.method("agent.exec", ExecParams, streaming=True)
    async def agent_exec(p: ExecParams, ctx: CallContext, emit: Emit) -> JSON:
        """Run input on an agent; streams output chunks; returns the ExecResult."""
        result: ExecResult | None = None
        async for ev in engine.exec(p.id, p.input, actor=ctx.actor, timeout=p.timeout):
            if isinstance(ev, ExecResult):
                result = ev
            else:
                await emit(ev)
        return result

    @rpc.method("agent.abort", AgentRef)
    async def agent_abort(p: AgentRef, ctx: CallContext, emit: Emit) -> JSON:
        """Abort the agent's running exec, keeping the agent."""
        return {"aborted": await engine.abort(p.id, ctx.actor)}

    @rpc.method("agent.steer", SteerParams)
    async def agent_steer(p: SteerParams, ctx: CallContext, emit: Emit) -> JSON:
        """Deliver a message to the agent's running exec (LLM runtimes with steer)."""
        return {"delivered": await engine.steer(p.id, p.message, ctx.actor)}

    @rpc.method("model.list")
    async def model_list(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Configured models: provider, API, upstream id, prices, whether the key is set."""
        return engine.model_info()

    @rpc.method("agent.kill", AgentRef)
    async def agent_kill(p: AgentRef, ctx: CallContext, emit: Emit) -> JSON:
        """End the agent and every process it started."""
        return await engine.kill_agent(p.id, ctx.actor)

    @rpc.method("agent.health", AgentRef)
    async def agent_health(p: AgentRef, ctx: CallContext, emit: Emit) -> JSON:
        """Probe the agent's process now."""
        return await engine.health(p.id)

    @rpc.method("agent.logs", LogsParams, streaming=True)
    async def agent_logs(p: LogsParams, ctx: CallContext, emit: Emit) -> JSON:
        """Stream stored output (and, with follow, new output until the agent ends)."""
        last = p.after_seq
        async for line in engine.logs(p.id, after_seq=p.after_seq, follow=p.follow):
            last = line.seq
            await emit(line)
        return {"last_seq": last}

    @rpc.method("task.submit", TaskSubmitParams)
    async def task_submit(p: TaskSubmitParams, ctx: CallContext, emit: Emit) -> JSON:
        """Queue tasks (one transaction); refused with -32012 when the queue is full."""
        return await engine.submit_tasks(p.tasks, ctx.actor)

    @rpc.method("task.list", TaskListParams)
    async def task_list(p: TaskListParams, ctx: CallContext, emit: Emit) -> JSON:
        """Tasks, newest first."""
        return await engine.list_tasks(swarm=p.swarm, status=p.status, limit=p.limit)

    @rpc.method("task.get", TaskRef)
    async def task_get(p: TaskRef, ctx: CallContext, emit: Emit) -> JSON:
        """One task with its last result."""
        return await engine.get_task(p.id)

    @rpc.method("task.cancel", TaskRef)
    async def task_cancel(p: TaskRef, ctx: CallContext, emit: Emit) -> JSON:
        """Cancel a queued or running task (a running one is aborted on its agent)."""
        return await engine.cancel_task(p.id, ctx.actor)

    @rpc.method("task.retry", TaskRef)
    async def task_retry(p: TaskRef, ctx: CallContext, emit: Emit) -> JSON:
        """Queue a dead, failed or cancelled task again with fresh attempts."""
        return await engine.retry_task(p.id, ctx.actor)

    @rpc.method("swarm.create", SwarmSpec)
    async def swarm_create(p: SwarmSpec, ctx: CallContext, emit: Emit) -> JSON:
        """Create a swarm and spawn its agents."""
        swarm, agents, errors = await engine.create_swarm(p, ctx.actor)
        return {"swarm": swarm, "agents": agents, "failures": errors}

    @rpc.method("swarm.list")
    async def swarm_list(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Active swarms with their agent and task counts."""
        return await engine.list_swarms()

    @rpc.method("swarm.status", SwarmRef)
    async def swarm_status(p: SwarmRef, ctx: CallContext, emit: Emit) -> JSON:
        """A swarm, its agents, task counts, ready tasks by priority."""
        return await engine.swarm_status(p.name)

    @rpc.method("swarm.scale", SwarmScaleParams)
    async def swarm_scale(p: SwarmScaleParams, ctx: CallContext, emit: Emit) -> JSON:
        """Spawn or stop agents until the swarm has ``count``."""
        swarm, errors = await engine.scale_swarm(p.name, p.count, ctx.actor)
        return {"swarm": swarm, "failures": errors}

    @rpc.method("swarm.strategy", SwarmStrategyParams)
    async def swarm_strategy(p: SwarmStrategyParams, ctx: CallContext, emit: Emit) -> JSON:
        """Change a swarm's routing strategy now."""
        return await engine.set_strategy(p.name, p.strategy, ctx.actor)

    @rpc.method("route.explain", TaskRef)
    async def route_explain(p: TaskRef, ctx: CallContext, emit: Emit) -> JSON:
        """Every candidate's score breakdown for a task, now; and its past decisions."""
        return await engine.explain_route(p.id)

    @rpc.method("route.strategies")
    async def route_strategies(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """The routing strategies this engine knows."""
        return strategy_names()

    @rpc.method("swarm.destroy", SwarmRef)
    async def swarm_destroy(p: SwarmRef, ctx: CallContext, emit: Emit) -> JSON:
        """Stop every agent of the swarm and cancel its unfinished tasks."""
        stopped, cancelled = await engine.destroy_swarm(p.name, ctx.actor)
        return {"stopped": stopped, "cancelled_tasks": cancelled}

    @rpc.method("metrics.get")
    async def metrics_get(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Prometheus text exposition of the engine's metrics."""
        return {"content_type": CONTENT_TYPE, "text": (await engine.metrics_text()).decode()}

    @rpc.method("runtime.list")
    async def runtime_list(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Registered runtimes and their declared capabilities."""
        return engine.runtimes()

    @rpc.method("audit.list", AuditListParams)
    async def audit_list(p: AuditListParams, ctx: CallContext, emit: Emit) -> JSON:
        """Audit entries in order."""
        return await engine.audit_list(after_seq=p.after_seq, limit=p.limit, subject=p.subject)

    @rpc.method("audit.verify")
    async def audit_verify(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Recompute the hash chain; names the first bad entry."""
        return await engine.audit_verify()

    @rpc.method("audit.export", streaming=True)
    async def audit_export(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Stream every audit entry (for JSON lines export); the export itself is audited."""
        n = 0
        async for entry in engine.audit_entries():
            await emit(entry)
            n += 1
        await engine.record(ctx.actor, "audit.export", "audit", entries=n)
        return {"entries": n}

    @rpc.method("config.show")
    async def config_show(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """The daemon's effective config, its source files and digest."""
        return _config(engine)

    @rpc.method("config.reload", ConfigReloadParams)
    async def config_reload(p: ConfigReloadParams, ctx: CallContext, emit: Emit) -> JSON:
        """Reload config files and apply what changed; lists what needs a restart."""
        reload = await engine.reload_config(ctx.actor, cwd=Path(p.cwd) if p.cwd else None)
        return {**_config(engine), "reload": reload}

    @rpc.method("rpc.discover")
    async def discover(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Every method with its parameter schema."""
        return [
            {
                "name": m.name,
                "doc": m.doc,
                "streaming": m.streaming,
                "params": m.params.model_json_schema(),
            }
            for m in sorted(rpc.methods.values(), key=lambda m: m.name)
        ]

    return rpc


def _config(engine: Engine) -> dict[str, Any]:
    c = engine.config
    return {
        "config": c.config.model_dump(mode="json"),
        "sources": [str(s) for s in c.sources],
        "digest": c.digest,
    }
