"""The engine's JSON-RPC methods. Each is a thin mapping onto one ``Engine`` call."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from core import __version__
from core.api.jsonrpc import JSON, CallContext, Emit, NoParams, RpcMethods
from core.api.read_methods import REF_MAX, register_read_methods
from core.engine import Engine
from core.engine.doruns import DoRequest
from core.errors import StoreError
from core.events import Event
from core.federation.metrics import CONTENT_TYPE
from core.federation.routing import strategy_names
from core.models import AgentSpec, ExecResult, SwarmSpec, TaskSpec, TaskStatus
from core.work.plan import DoPlan


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentRef(_Params):
    id: str = Field(min_length=1, max_length=REF_MAX, description="agent id or name")


class ExecParams(_Params):
    id: str = Field(min_length=1, max_length=REF_MAX)
    input: str
    timeout: float | None = Field(default=None, gt=0)


class SteerParams(_Params):
    id: str = Field(min_length=1, max_length=REF_MAX)
    message: str = Field(min_length=1)


class LogsParams(_Params):
    id: str = Field(min_length=1, max_length=REF_MAX)
    after_seq: int = Field(default=0, ge=0)
    follow: bool = False


class AuditListParams(_Params):
    after_seq: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, ge=1)
    subject: str | None = None


class BackupParams(_Params):
    path: str = Field(min_length=1, max_length=4096, description="absolute path to write")
    force: bool = Field(default=False, description="overwrite an existing file")


class TaskRef(_Params):
    id: str = Field(min_length=1, max_length=REF_MAX)


class ExecGetParams(_Params):
    id: str = Field(min_length=1, max_length=REF_MAX, description="exec id")
    limit: int = Field(default=10_000, ge=1, le=100_000, description="output lines at most")


class ExecListParams(_Params):
    agent: str = Field(min_length=1, max_length=REF_MAX, description="agent id or live name")
    limit: int = Field(default=20, ge=1, le=10_000)


class TaskSubmitParams(_Params):
    tasks: list[TaskSpec] = Field(min_length=1, max_length=10_000)


class TaskWaitParams(_Params):
    ids: list[str] = Field(min_length=1, max_length=10_000)
    timeout: float | None = Field(default=None, gt=0, description="seconds; none: no limit")


class TaskListParams(_Params):
    swarm: str | None = None
    status: TaskStatus | None = None
    limit: int = Field(default=100, ge=1, le=100_000)


class SwarmStrategyParams(_Params):
    name: str = Field(min_length=1, max_length=REF_MAX)
    strategy: str = Field(min_length=1)


class SwarmRef(_Params):
    name: str = Field(min_length=1, max_length=REF_MAX)


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)]


class _CallerKeys(BaseModel):
    """The calling shell's API keys, sent by the CLI with requests that spawn agents.

    ``SecretStr``, so no repr, log line or error message can show a value; the engine
    uses them for the spawns of this call (a swarm keeps its model's key in memory for
    its later spawns) and never stores, audits or publishes them."""

    api_keys: dict[EnvName, SecretStr] = Field(
        default_factory=dict,
        max_length=64,
        description="values of the variables named by providers' api_key_env, from the "
        "caller's environment",
    )

    def keys(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.api_keys.items()}


class AgentRestartParams(AgentRef, _CallerKeys):
    pass


class AgentSpawnParams(AgentSpec, _CallerKeys):
    def spec(self) -> AgentSpec:
        return AgentSpec.model_validate(self.model_dump(exclude={"api_keys"}))


class SwarmCreateParams(SwarmSpec, _CallerKeys):
    def spec(self) -> SwarmSpec:
        return SwarmSpec.model_validate(self.model_dump(exclude={"api_keys"}))


class ModelListParams(_Params):
    keys_set: list[EnvName] = Field(
        default_factory=list,
        max_length=256,
        description="key variables set in the caller's shell (names only)",
    )


class SwarmScaleParams(_Params, _CallerKeys):
    name: str = Field(min_length=1, max_length=REF_MAX)
    count: int = Field(ge=0, le=5000)


class ConfigReloadParams(_Params, _CallerKeys):
    cwd: str | None = Field(default=None, description="the caller's directory")
    user_file: str | None = Field(
        default=None, description="the caller's user config file ($GODEL_CONFIG or default)"
    )


class BudgetSetParams(_Params):
    scope: str = Field(
        min_length=1, max_length=REF_MAX, description="project, swarm:NAME, task:ID, ..."
    )
    amount: Decimal = Field(ge=0, description="dollars, or tokens with tokens=true")
    tokens: bool = False
    period: Literal["none", "daily", "weekly", "monthly"] = "none"


class BudgetClearParams(_Params):
    scope: str = Field(min_length=1, max_length=REF_MAX)
    tokens: bool = False


class DoRunParams(DoRequest, _CallerKeys):
    """``do.run``: a ``godel do`` plan to run (``core.engine.doruns.DoRequest``)."""

    def request(self) -> DoRequest:
        return DoRequest.model_validate(self.model_dump(exclude={"api_keys"}))


class DoPlanParams(_CallerKeys):
    """``do.plan``: ask a model for a plan (``godel do --dry-run`` without ``--plan``)."""

    model_config = ConfigDict(extra="forbid")

    intent: str = Field(min_length=1, max_length=100_000)
    repo: Path
    model: str | None = Field(default=None, min_length=1, max_length=REF_MAX)


class DoEstimateParams(_Params):
    """``do.estimate``: what running a plan should cost (``godel do --dry-run``)."""

    plan: DoPlan
    runtime: str = Field(default="shell", min_length=1, max_length=REF_MAX)
    model: str | None = Field(default=None, min_length=1, max_length=REF_MAX)


class BudgetHistoryParams(_Params):
    limit: int = Field(default=100, ge=1, le=10_000)


def build_methods(
    engine: Engine, *, started_at: float, request_stop: Callable[[str, str], None]
) -> RpcMethods:
    rpc = RpcMethods()
    register_read_methods(rpc, engine)

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
            "config": engine.config.identity(),
            "containment": {
                "kind": engine.ctx.containment.current.kind,
                "where": engine.ctx.containment.current.where,
            },
        }

    @rpc.method("daemon.stop")
    async def daemon_stop(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Stop every agent and the daemon (after this response is sent)."""
        request_stop("stop requested", ctx.actor)
        return {"stopping": True, "pid": os.getpid()}

    @rpc.method("agent.spawn", AgentSpawnParams)
    async def agent_spawn(p: AgentSpawnParams, ctx: CallContext, emit: Emit) -> JSON:
        """Spawn an agent on a runtime; returns it once ready."""
        agent = await engine.spawn_agent(p.spec(), ctx.actor, keys=p.keys())
        return engine.agent_row(agent.id)  # the agent.list shape

    @rpc.method("exec.get", ExecGetParams)
    async def exec_get(p: ExecGetParams, ctx: CallContext, emit: Emit) -> JSON:
        """One exec: its record and its stored output (every stream, in order)."""
        found = await engine.get_exec(p.id, limit=p.limit)
        return {"exec": found.record, "output": found.output, "truncated": found.truncated}

    @rpc.method("exec.list", ExecListParams)
    async def exec_list(p: ExecListParams, ctx: CallContext, emit: Emit) -> JSON:
        """An agent's execs, newest first."""
        return await engine.list_execs(p.agent, limit=p.limit)

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

    @rpc.method("model.list", ModelListParams)
    async def model_list(p: ModelListParams, ctx: CallContext, emit: Emit) -> JSON:
        """Configured models: provider, API, upstream id, prices, whether the key is set
        (in the caller's shell, whose set key variables are named in ``keys_set``, or the
        daemon's environment)."""
        return engine.model_info(p.keys_set)

    @rpc.method("agent.kill", AgentRef)
    async def agent_kill(p: AgentRef, ctx: CallContext, emit: Emit) -> JSON:
        """End the agent and every process it started."""
        agent = await engine.kill_agent(p.id, ctx.actor)
        return engine.agent_row(agent.id)  # the agent.list shape

    @rpc.method("agent.restart", AgentRestartParams)
    async def agent_restart(p: AgentRestartParams, ctx: CallContext, emit: Emit) -> JSON:
        """Stop the agent and spawn one like it; returns the new agent."""
        agent = await engine.restart_agent(p.id, ctx.actor, keys=p.keys())
        return engine.agent_row(agent.id)  # the agent.list shape

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

    @rpc.method("do.run", DoRunParams, streaming=True)
    async def do_run(p: DoRunParams, ctx: CallContext, emit: Emit) -> JSON:
        """Run a godel do plan in worktrees of ``repo``: streams its do.* events, returns
        its report; the run is interrupted if the caller goes away."""

        async def on_event(event: Event) -> None:
            await emit(event)

        report = await engine.run_do(p.request(), ctx.actor, keys=p.keys(), on_event=on_event)
        return report

    @rpc.method("do.plan", DoPlanParams)
    async def do_plan(p: DoPlanParams, ctx: CallContext, emit: Emit) -> JSON:
        """Ask the model for a plan of the intent in ``repo`` (charged to the budgets);
        returns the plan, the model, usage, cost and attempts."""
        return await engine.plan_do(p.intent, p.repo, p.model, ctx.actor, keys=p.keys())

    @rpc.method("do.estimate", DoEstimateParams)
    async def do_estimate(p: DoEstimateParams, ctx: CallContext, emit: Emit) -> JSON:
        """What running the plan should cost, one exec per task, from the execs this
        daemon measured (unknown where none of a task's model was measured)."""
        return engine.estimate_do(p.plan, p.runtime, p.model)

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

    @rpc.method("task.wait", TaskWaitParams, streaming=True)
    async def task_wait(p: TaskWaitParams, ctx: CallContext, emit: Emit) -> JSON:
        """Wait until every named task is final (or ``timeout``); streams progress
        (counts by status) as tasks change; returns ``{tasks, timed_out, elapsed_s}``."""
        return await engine.wait_tasks(p.ids, p.timeout, emit)

    @rpc.method("task.cancel", TaskRef)
    async def task_cancel(p: TaskRef, ctx: CallContext, emit: Emit) -> JSON:
        """Cancel a queued or running task (a running one is aborted on its agent)."""
        return await engine.cancel_task(p.id, ctx.actor)

    @rpc.method("task.retry", TaskRef)
    async def task_retry(p: TaskRef, ctx: CallContext, emit: Emit) -> JSON:
        """Queue a failed or cancelled task again with fresh attempts."""
        return await engine.retry_task(p.id, ctx.actor)

    @rpc.method("swarm.create", SwarmCreateParams)
    async def swarm_create(p: SwarmCreateParams, ctx: CallContext, emit: Emit) -> JSON:
        """Create a swarm and spawn its agents."""
        swarm, agents, errors = await engine.create_swarm(p.spec(), ctx.actor, p.keys())
        # The swarm and agent objects of swarm.list and agent.list (one shape each).
        return {
            "swarm": engine.views.swarm_row(swarm.name) or swarm,
            "agents": [engine.agent_row(a.id) for a in agents],
            "failures": errors,
        }

    @rpc.method("swarm.scale", SwarmScaleParams)
    async def swarm_scale(p: SwarmScaleParams, ctx: CallContext, emit: Emit) -> JSON:
        """Spawn or stop agents until the swarm has ``count``."""
        swarm, errors = await engine.scale_swarm(p.name, p.count, ctx.actor, p.keys())
        return {"swarm": engine.views.swarm_row(swarm.name) or swarm, "failures": errors}

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

    @rpc.method("budget.set", BudgetSetParams)
    async def budget_set(p: BudgetSetParams, ctx: CallContext, emit: Emit) -> JSON:
        """Set a budget on a scope (its spend this period is kept)."""
        return await engine.set_budget(
            p.scope,
            p.amount,
            unit="tokens" if p.tokens else "usd",
            period=p.period,
            actor=ctx.actor,
        )

    @rpc.method("budget.clear", BudgetClearParams)
    async def budget_clear(p: BudgetClearParams, ctx: CallContext, emit: Emit) -> JSON:
        """Remove a budget; its spend goes to the history."""
        return await engine.clear_budget(
            p.scope, unit="tokens" if p.tokens else "usd", actor=ctx.actor
        )

    @rpc.method("budget.show")
    async def budget_show(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Every budget: limit, spent, reserved, period and when it resets."""
        return await engine.show_budgets()

    @rpc.method("budget.history", BudgetHistoryParams)
    async def budget_history(p: BudgetHistoryParams, ctx: CallContext, emit: Emit) -> JSON:
        """Finished periods and cleared budgets, newest first."""
        return await engine.budget_history(p.limit)

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

    @rpc.method("store.backup", BackupParams)
    async def store_backup(p: BackupParams, ctx: CallContext, emit: Emit) -> JSON:
        """Copy the store, consistent, to a new 0600 file (SQLite's online backup)."""
        if not os.path.isabs(p.path):  # the daemon's working directory is not the caller's
            raise StoreError(f"the backup path must be absolute: {p.path}", path=p.path)
        return await engine.backup_store(p.path, ctx.actor, force=p.force)

    @rpc.method("config.show")
    async def config_show(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """The daemon's effective config, its source files and digest."""
        return _config(engine)

    @rpc.method("config.reload", ConfigReloadParams)
    async def config_reload(p: ConfigReloadParams, ctx: CallContext, emit: Emit) -> JSON:
        """Reload the config files that apply in the caller's directory and apply what
        changed; lists what needs a restart."""
        reload = await engine.reload_config(
            ctx.actor,
            cwd=Path(p.cwd) if p.cwd else None,
            user_file=Path(p.user_file) if p.user_file else None,
            keys=p.keys(),
        )
        return {**_config(engine), "reload": reload}

    @rpc.method("config.sources")
    async def config_sources(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Which config the daemon runs with: its files (path, SHA-256 of the bytes read),
        digest and when it was loaded. Cheap: the CLI compares it with its directory's
        files on every call."""
        return engine.config.identity()

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
    return {"config": c.config.model_dump(mode="json"), **c.identity()}
