"""The one place an engine is built: the daemon, headless runs, benchmarks and tests all
call ``build_engine``, so each gets the same services wired the same way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from core.clock import Clock, SystemClock
from core.config import LoadedConfig, load_config
from core.config.policy import DenyMatch
from core.engine.agents import AgentService
from core.engine.budgets import BudgetService
from core.engine.context import EngineContext
from core.engine.doruns import DoRunService
from core.engine.execs import ExecService
from core.engine.facade import Engine, Services
from core.engine.health import HealthService
from core.engine.pauses import ProviderPauses
from core.engine.queries import QueryService
from core.engine.reads import ReadService
from core.engine.settings import ConfigService
from core.engine.swarms import SwarmService
from core.engine.tasks import TaskService
from core.events import EventBus
from core.federation.autoscaler import Autoscaler
from core.federation.dispatcher import Dispatcher
from core.federation.metrics import Metrics
from core.federation.routing import RoutingTable
from core.llm.catalog import ModelCatalog, ScriptedUrl
from core.models import Usage
from core.paths import GodelPaths
from core.runtimes.base import (
    RuntimeContext,
    TurnGate,
    UsageLimitHook,
    no_turn_gate,
    no_usage_limit_hook,
)
from core.runtimes.containment import ContainmentSlot
from core.runtimes.registry import RuntimeRegistry, known_runtime_names
from core.store.base import Store
from core.store.journal import Journal
from core.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from core.llm.scripted import ScriptedServer

log = logging.getLogger("godel.engine")


class LazyScriptedServer:
    """Godel's scripted model servers, each started on first use (``--model scripted``):
    one per distinct script (``[providers.NAME] script``), keyed by its path; the bundled
    script's when a provider names none."""

    def __init__(self) -> None:
        self._servers: dict[Path | None, ScriptedServer] = {}
        self._lock = asyncio.Lock()

    async def url(self, script: Path | None = None) -> str:
        async with self._lock:
            server = self._servers.get(script)
            if server is None:
                from core.llm.scripted import ScriptedServer

                # A script's rules are checked here: a bad one is the script file's
                # one-line ConfigError, raised to whoever resolved the model.
                server = await asyncio.to_thread(ScriptedServer, script)
                await asyncio.to_thread(server.start)
                self._servers[script] = server
                log.info(
                    "scripted model server on %s (script: %s)",
                    server.base_url,
                    script or "bundled",
                )
            return server.base_url

    async def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            await asyncio.to_thread(server.stop)


def build_registry(
    paths: GodelPaths,
    loaded: LoadedConfig,
    containment: ContainmentSlot | None = None,
    deny: Callable[[str], DenyMatch | None] | None = None,
    turn_gate: TurnGate = no_turn_gate,
    usage_limit: UsageLimitHook = no_usage_limit_hook,
) -> RuntimeRegistry:
    """The runtimes, built with their options; ``deny`` is the ``[policy]`` check in
    force (default: ``loaded``'s)."""
    options = loaded.config.runtimes
    passthrough = tuple(loaded.config.defaults.env_passthrough)
    slot = containment or ContainmentSlot()
    check = deny or loaded.config.policy.check
    return RuntimeRegistry.load(
        lambda name: RuntimeContext(
            home=paths.home,
            options=dict(options.get(name, {})),
            env_passthrough=passthrough,
            containment=slot,
            deny=check,
            turn_gate=turn_gate,
            usage_limit=usage_limit,
        )
    )


def build_engine(
    paths: GodelPaths,
    *,
    config: LoadedConfig | None = None,
    cwd: Path | None = None,
    store: Store | None = None,
    bus: EventBus | None = None,
    clock: Clock | None = None,
    registry: RuntimeRegistry | None = None,
    scripted_url: ScriptedUrl | None = None,
) -> Engine:
    """An engine over ``paths`` (SQLite at ``paths.db`` unless ``store`` is given).

    ``config`` defaults to the files found from ``cwd``; ``scripted_url`` points the
    ``scripted`` models at a model server already running (else one is started in this
    process on first use); ``clock`` lets tests move time by hand.
    """
    loaded = config or load_config(known_runtime_names(), cwd=cwd)
    store = store or SqliteStore(paths.db)
    bus = bus or EventBus()
    bus.default_maxsize = loaded.config.daemon.event_queue_size
    on_close: list[Callable[[], Awaitable[None]]] = []
    containment = ContainmentSlot()
    if scripted_url is None:
        lazy = LazyScriptedServer()
        scripted_url = lazy.url
        on_close.append(lazy.close)
    ctx: EngineContext | None = None
    budgets: BudgetService | None = None
    pauses: ProviderPauses | None = None

    def deny(command: str) -> DenyMatch | None:
        # Asked at each command, of the config in force: a reload replaces ctx.loaded.
        return (ctx.config if ctx is not None else loaded.config).policy.check(command)

    async def turn_gate(
        agent_id: str, exec_id: str, usage: Usage, cost: Decimal | None
    ) -> str | None:
        # The budget service exists once the engine is built; runtimes ask it per turn.
        if budgets is None:
            return None
        return await budgets.turn_gate(agent_id, exec_id, usage, cost)

    async def usage_limit(
        agent_id: str, exec_id: str, provider: str, retry_after: float, message: str
    ) -> None:
        if pauses is not None:
            await pauses.hit(agent_id, exec_id, provider, retry_after, message)

    ctx = EngineContext(
        paths=paths,
        store=store,
        journal=Journal(store, bus),
        bus=bus,
        registry=registry
        or build_registry(paths, loaded, containment, deny, turn_gate, usage_limit),
        containment=containment,
        clock=clock or SystemClock(),
        loaded=loaded,
        models=ModelCatalog(loaded.config, scripted_url=scripted_url),
        metrics=Metrics(),
        scripted_url=scripted_url,
        on_close=on_close,
    )
    health = HealthService(ctx)
    execs = ExecService(ctx)
    execs.on_held = health.mark_held
    budgets = BudgetService(ctx)
    execs.budgets = budgets
    pauses = ProviderPauses(ctx)
    ctx.on_close.append(pauses.stop)
    agents = AgentService(ctx, health, execs)
    settings = ctx.config.health
    routing = RoutingTable(
        ctx.metrics, health.trackers, health.cap_overrides, settings.panic_threshold
    )
    tasks = TaskService(ctx, execs, health, routing)
    tasks.budgets = budgets
    tasks.pauses = pauses
    swarms = SwarmService(ctx, agents, execs, routing)
    dispatcher = Dispatcher(
        store=store,
        journal=ctx.journal,
        agents=health,
        executor=execs,
        observer=tasks,
        routing=routing,
        clock=ctx.clock,
        lease_s=ctx.config.queue.lease_s,
        gate=budgets,
        pauses=pauses,
    )
    autoscaler = Autoscaler(
        store=store,
        journal=ctx.journal,
        swarms=swarms,
        settings=ctx.config.autoscaler,
        clock=ctx.clock,
    )
    ctx.wake_dispatcher = dispatcher.wake
    agents.on_gone += [tasks.requeue_agent_tasks, swarms.on_agent_gone]
    swarms.forget_autoscaling = autoscaler.forget
    config_service = ConfigService(ctx, agents.spawn)

    async def apply_autoscaler(c: object) -> None:
        await autoscaler.apply_settings(ctx.config.autoscaler)

    def apply_queue_and_health(c: object) -> None:
        dispatcher.lease_s = ctx.config.queue.lease_s
        health.apply_settings(ctx.config.health)
        swarms.restarts.settings = ctx.config.health
        routing.panic_threshold = ctx.config.health.panic_threshold
        for pool in routing.pools.values():
            pool.panic_threshold = ctx.config.health.panic_threshold

    config_service.appliers += [apply_queue_and_health, apply_autoscaler]
    reads = ReadService(ctx)
    engine = Engine(
        ctx,
        Services(
            agents=agents,
            execs=execs,
            health=health,
            tasks=tasks,
            swarms=swarms,
            queries=QueryService(ctx),
            reads=reads,
            config=config_service,
            dispatcher=dispatcher,
            autoscaler=autoscaler,
            budgets=budgets,
            doruns=DoRunService(ctx, agents, execs, budgets, reads),
        ),
    )
    return engine


__all__ = ["LazyScriptedServer", "build_engine", "build_registry"]
