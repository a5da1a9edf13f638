"""The ``Engine``: the one facade every face (CLI via the daemon, the JSON-RPC API, the
console, headless runs, benchmarks) calls. It holds no logic of its own: each method
hands over to one service (agents, execs, tasks, swarms, health, queries, config),
and ``start``/``stop`` run the engine's lifecycle. Build one with
``core.engine.build.build_engine``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from core import __version__
from core.audit import AuditDraft, VerifyReport
from core.config import LoadedConfig
from core.engine.agents import AgentService
from core.engine.budgets import BudgetService
from core.engine.context import EngineContext
from core.engine.doruns import DoReport, DoRequest, DoRunService, OnEvent, PlanEstimate
from core.engine.execs import ExecOutput, ExecService
from core.engine.health import HealthService
from core.engine.queries import QueryService
from core.engine.reads import ReadService
from core.engine.settings import ConfigReload, ConfigService, apply_log_level
from core.engine.swarms import SwarmService
from core.engine.tasks import TaskService
from core.engine.waiting import OnProgress, WaitResult, wait_tasks
from core.errors import SwarmError
from core.events import DaemonStarted, DaemonStopping, Event, EventBus
from core.federation.autoscaler import Autoscaler
from core.federation.dispatcher import Dispatcher
from core.llm.catalog import ModelCatalog, ModelInfo
from core.models import (
    Agent,
    AgentSpec,
    AuditEntry,
    Budget,
    BudgetPeriod,
    BudgetPeriodRecord,
    BudgetUnit,
    ExecRecord,
    LogLine,
    RuntimeEvent,
    RuntimeInfo,
    StatusSource,
    Swarm,
    SwarmSpec,
    Task,
    TaskSpec,
    TaskStatus,
)
from core.paths import GodelPaths
from core.runtimes.base import HealthReport
from core.runtimes.children import install_child_watcher
from core.runtimes.containment import choose_containment
from core.runtimes.registry import RuntimeRegistry
from core.views import AgentRow, SwarmRow, Views, ViewSnapshot
from core.views.filter import EventFilter
from core.work.plan import DoPlan
from core.work.planner import PlanResult


@dataclass
class Services:
    agents: AgentService
    execs: ExecService
    health: HealthService
    tasks: TaskService
    swarms: SwarmService
    queries: QueryService
    reads: ReadService
    config: ConfigService
    dispatcher: Dispatcher
    autoscaler: Autoscaler
    budgets: BudgetService
    doruns: DoRunService


class Engine:
    def __init__(self, ctx: EngineContext, services: Services) -> None:
        self.ctx = ctx
        self.s = services

    # what faces may read -------------------------------------------------------------------

    @property
    def paths(self) -> GodelPaths:
        return self.ctx.paths

    @property
    def config(self) -> LoadedConfig:
        return self.ctx.loaded

    @property
    def models(self) -> ModelCatalog:
        return self.ctx.models

    @property
    def registry(self) -> RuntimeRegistry:
        return self.ctx.registry

    @property
    def bus(self) -> EventBus:
        return self.ctx.bus

    # lifecycle -------------------------------------------------------------------------------

    async def start(self, actor: str = "daemon") -> None:
        """Open the store, reconcile what the last run left behind, and start serving."""
        ctx, s = self.ctx, self.s
        install_child_watcher()  # no thread per agent process (Python 3.11)
        apply_log_level(ctx.config)
        await ctx.store.open()
        await s.reads.start()  # before anything publishes: the views miss nothing
        contained = await choose_containment(ctx.paths.home, ctx.config.daemon.containment)
        ctx.containment.current = contained
        # What a crashed daemon's agents left running ends before anything new starts.
        stale = await contained.sweep()
        await s.agents.recover(actor)
        await s.budgets.start()  # reservations of execs that died are charged first
        s.execs.start()
        s.dispatcher.start()
        s.health.start()
        s.autoscaler.start()
        ctx.running = True
        await ctx.journal.audit(
            AuditDraft(
                actor=actor,
                action="daemon.start",
                subject="daemon",
                payload={
                    "pid": os.getpid(),
                    "version": __version__,
                    "config_digest": ctx.loaded.digest,
                    "config_sources": [str(src) for src in ctx.loaded.sources],
                    "containment": contained.kind,
                    "containment_where": contained.where,
                    "stale_processes_ended": stale,
                },
            ),
            events=[DaemonStarted(pid=os.getpid(), version=__version__)],
        )
        await s.swarms.restore(actor)  # swarms back to their desired size
        if ctx.config.agents:
            # In the background: a pi agent takes a second to start, the daemon need not.
            ctx.background.spawn(s.config.start_agent_groups("config"), name="agent-groups")

    async def stop(self, reason: str = "daemon stop", actor: str = "daemon") -> None:
        """Stop every live agent (no agent process outlives the engine), then close."""
        ctx, s = self.ctx, self.s
        if not ctx.running:
            return
        ctx.running = False
        ctx.journal.publish(DaemonStopping(reason=reason))
        await s.autoscaler.stop()
        await s.dispatcher.stop()
        await s.health.stop()
        await ctx.background.cancel_all()
        await s.agents.wait_starting()  # a spawn under way ends with a process to stop
        # Tasks that were running keep their leases: the next daemon's recovery sends
        # them back to the queue at once.
        await s.agents.stop_many(
            [lv.id for lv in ctx.live],
            actor=actor,
            source=StatusSource.DAEMON,
            reason=f"stopped with the daemon ({reason})",
            requeue=False,
        )
        await s.execs.stop()
        await ctx.containment.current.close()
        await ctx.journal.audit(
            AuditDraft(
                actor=actor, action="daemon.stop", subject="daemon", payload={"reason": reason}
            )
        )
        await ctx.store.close()
        s.reads.stop()
        for close in ctx.on_close:
            await close()

    # the read side -----------------------------------------------------------------------------

    def view_snapshot(self) -> ViewSnapshot:
        return self.s.reads.snapshot()

    @property
    def views(self) -> Views:
        """The live views (read them; never change them)."""
        return self.s.reads.views

    def agent_rows(
        self, *, swarm: str | None = None, status: str | None = None, include_ended: bool = False
    ) -> list[AgentRow]:
        return self.s.reads.agents(swarm=swarm, status=status, include_ended=include_ended)

    def agent_row(self, ref: str) -> AgentRow:
        return self.s.reads.agent(ref)

    def events(
        self,
        flt: EventFilter,
        *,
        after_seq: int | None = None,
        last: int | None = None,
        follow: bool,
        name: str,
    ) -> AsyncGenerator[Event, None]:
        return self.s.reads.events(flt, after_seq=after_seq, last=last, follow=follow, name=name)

    # agents ------------------------------------------------------------------------------------

    def runtimes(self) -> list[RuntimeInfo]:
        return self.s.queries.runtimes()

    def model_info(self, keys_set: Collection[str] = ()) -> list[ModelInfo]:
        """``keys_set``: the key variables set in the caller's shell (names only)."""
        return self.ctx.models.info(keys_set)

    async def spawn_agent(
        self,
        spec: AgentSpec,
        actor: str,
        *,
        swarm: str | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> Agent:
        """``keys``: the caller's API key variables, used for this spawn and never kept."""
        return await self.s.agents.spawn(spec, actor, swarm=swarm, keys=keys)

    async def list_agents(self, *, include_ended: bool = True) -> list[Agent]:
        return await self.s.queries.list_agents(include_ended=include_ended)

    async def get_agent(self, agent_id: str) -> Agent:
        return await self.s.execs.get_agent(agent_id)

    async def kill_agent(self, agent_id: str, actor: str) -> Agent:
        return await self.s.agents.kill(agent_id, actor)

    async def restart_agent(
        self, agent_id: str, actor: str, *, keys: Mapping[str, str] | None = None
    ) -> Agent:
        """Stop the agent, spawn one like it (same spec and swarm); returns the new one."""
        return await self.s.agents.restart(agent_id, actor, keys)

    async def health(self, agent_id: str) -> HealthReport:
        live = await self.s.execs.live_agent(agent_id, "probe")
        return await live.runtime.health(live.handle)

    def is_live(self, agent_id: str) -> bool:
        return self.ctx.live.is_live(agent_id)

    # execs -------------------------------------------------------------------------------------

    def exec(
        self,
        agent_id: str,
        input: str,
        *,
        actor: str,
        timeout: float | None = None,
        task_id: str | None = None,
    ) -> AsyncIterator[RuntimeEvent]:
        return self.s.execs.exec(agent_id, input, actor=actor, timeout=timeout, task_id=task_id)

    async def steer(self, agent_id: str, message: str, actor: str) -> bool:
        return await self.s.execs.steer(agent_id, message, actor)

    async def abort(self, agent_id: str, actor: str) -> bool:
        return await self.s.execs.abort(agent_id, actor)

    def logs(
        self, agent_id: str, *, after_seq: int = 0, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        return self.s.execs.logs(agent_id, after_seq=after_seq, follow=follow)

    async def list_execs(self, agent_id: str, limit: int = 50) -> list[ExecRecord]:
        return await self.s.execs.list_execs(agent_id, limit)

    async def get_exec(self, exec_id: str, *, limit: int = 10_000) -> ExecOutput:
        return await self.s.execs.get_exec(exec_id, limit=limit)

    # tasks -------------------------------------------------------------------------------------

    async def submit_tasks(self, specs: list[TaskSpec], actor: str) -> list[Task]:
        return await self.s.tasks.submit(specs, actor)

    async def get_task(self, task_id: str) -> Task:
        return await self.s.tasks.get(task_id)

    async def list_tasks(
        self, *, swarm: str | None = None, status: TaskStatus | None = None, limit: int = 100
    ) -> list[Task]:
        return await self.s.queries.list_tasks(swarm=swarm, status=status, limit=limit)

    async def task_counts(self, swarm: str | None = None) -> dict[str, int]:
        return await self.s.queries.task_counts(swarm)

    async def wait_tasks(
        self, ids: list[str], timeout: float | None, on_progress: OnProgress
    ) -> WaitResult:
        """Until every task is final or ``timeout`` ran out (read-only)."""
        return await wait_tasks(
            self.ctx, self.s.tasks.read, ids, timeout, on_progress, explain=self.s.tasks.get
        )

    async def cancel_task(self, task_id: str, actor: str) -> Task:
        return await self.s.tasks.cancel(task_id, actor)

    async def retry_task(self, task_id: str, actor: str) -> Task:
        return await self.s.tasks.retry(task_id, actor)

    async def explain_route(self, task_id: str) -> dict[str, Any]:
        return await self.s.tasks.explain_route(task_id)

    async def metrics_text(self) -> bytes:
        return await self.s.queries.metrics_text()

    # swarms ------------------------------------------------------------------------------------

    async def create_swarm(
        self, spec: SwarmSpec, actor: str, keys: Mapping[str, str] | None = None
    ) -> tuple[Swarm, list[Agent], list[str]]:
        """``keys``: the caller's API key variables; the one the swarm's model reads is
        kept in memory for the swarm's later spawns (scale, autoscaling, replacements)."""
        return await self.s.swarms.create(spec, actor, keys)

    async def get_swarm(self, name: str) -> Swarm:
        return await self.s.swarms.get(name)

    def list_swarms(self) -> list[SwarmRow]:
        """Active swarms, each with its live agents and tasks by status (the views')."""
        return self.s.reads.views.swarm_rows()

    def swarm_status(self, name: str) -> SwarmRow:
        row = self.s.reads.views.swarm_row(name)
        if row is None:
            raise SwarmError(
                f"swarm {name!r} not found (`godel swarm list` lists them)", swarm=name
            )
        return row

    async def scale_swarm(
        self, name: str, count: int, actor: str, keys: Mapping[str, str] | None = None
    ) -> tuple[Swarm, list[str]]:
        return await self.s.swarms.scale(name, count, actor, keys)

    async def set_strategy(self, swarm: str, strategy: str, actor: str) -> Swarm:
        return await self.s.swarms.set_strategy(swarm, strategy, actor)

    async def destroy_swarm(self, name: str, actor: str) -> tuple[list[str], int]:
        return await self.s.swarms.destroy(name, actor)

    # budgets ------------------------------------------------------------------------------------

    async def set_budget(
        self,
        scope: str,
        amount: Decimal,
        *,
        unit: BudgetUnit,
        period: BudgetPeriod,
        actor: str,
    ) -> Budget:
        return await self.s.budgets.set(scope, amount, unit=unit, period=period, actor=actor)

    async def clear_budget(self, scope: str, *, unit: BudgetUnit, actor: str) -> Budget:
        return await self.s.budgets.clear(scope, unit=unit, actor=actor)

    async def show_budgets(self) -> list[Budget]:
        return await self.s.budgets.show()

    async def budget_history(self, limit: int = 100) -> list[BudgetPeriodRecord]:
        return await self.s.budgets.history(limit)

    # audit and config --------------------------------------------------------------------------

    # godel do --------------------------------------------------------------------------------

    async def run_do(
        self,
        req: DoRequest,
        actor: str,
        *,
        keys: Mapping[str, str] | None = None,
        on_event: OnEvent | None = None,
    ) -> DoReport:
        """Run a ``godel do`` plan to its end (cancelled with its caller)."""
        return await self.s.doruns.run(req, actor, keys=keys, on_event=on_event)

    async def plan_do(
        self,
        intent: str,
        repo: Path,
        model: str | None,
        actor: str,
        *,
        keys: Mapping[str, str] | None = None,
    ) -> PlanResult:
        """Ask ``model`` for a plan of ``intent`` (``godel do --dry-run``)."""
        return await self.s.doruns.plan(intent, repo, model, actor, keys=keys)

    def estimate_do(self, plan: DoPlan, runtime: str, model: str | None) -> PlanEstimate:
        """What running ``plan`` should cost, from this daemon's measured execs."""
        return self.s.doruns.estimate(plan, runtime, model)

    async def audit_list(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> list[AuditEntry]:
        return await self.s.queries.audit_list(after_seq=after_seq, limit=limit, subject=subject)

    def audit_entries(self) -> AsyncIterator[AuditEntry]:
        return self.s.queries.audit_entries()

    async def audit_verify(self) -> VerifyReport:
        return await self.s.queries.audit_verify()

    async def backup_store(self, dest: str, actor: str, *, force: bool = False) -> dict[str, Any]:
        """A consistent copy of the store at ``dest``, audited as ``store.backup`` (the
        entry follows the copy, so the copy ends just before it)."""
        done = await self.ctx.store.backup(dest, force=force)
        await self.record(
            actor,
            "store.backup",
            "store",
            path=done["path"],
            size=done["size"],
            last_seq=done["last_seq"],
            last_hash=done["last_hash"],
        )
        return done

    async def record(self, actor: str, action: str, subject: str, **payload: Any) -> None:
        """Audit an action that faces perform outside the engine (e.g. an export)."""
        await self.ctx.journal.audit(
            AuditDraft(actor=actor, action=action, subject=subject, payload=payload)
        )

    async def reload_config(
        self,
        actor: str,
        cwd: Path | None = None,
        user_file: Path | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> ConfigReload:
        """Reload the config files that apply in the caller's ``cwd`` (and its
        ``user_file``); ``keys`` serve the ``[[agents]]`` the reload starts."""
        return await self.s.config.reload(actor, cwd, user_file, keys)
