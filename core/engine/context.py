"""What every engine service shares: the store and its journal, the bus, the config,
the clock, the runtimes, the live agents, metrics, and a home for background tasks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.clock import Clock
from core.config import GodelConfig, LoadedConfig
from core.engine.live import LiveAgents
from core.errors import SwarmError
from core.events import EventBus
from core.federation.metrics import Metrics
from core.llm.catalog import ModelCatalog, ScriptedUrl
from core.models import Swarm
from core.paths import GodelPaths
from core.runtimes.containment import ContainmentSlot
from core.runtimes.registry import RuntimeRegistry
from core.store.base import Store
from core.store.journal import Journal
from core.tasks import TaskSet

log = logging.getLogger("godel.engine")


@dataclass
class EngineContext:
    paths: GodelPaths
    store: Store
    journal: Journal
    bus: EventBus
    registry: RuntimeRegistry
    clock: Clock
    loaded: LoadedConfig  # replaced on a config reload; read it at the time of use
    models: ModelCatalog
    metrics: Metrics
    scripted_url: ScriptedUrl  # starts Godel's scripted model server on first use
    # Where agents' processes are kept; chosen at start (core.runtimes.containment).
    containment: ContainmentSlot = field(default_factory=ContainmentSlot)
    live: LiveAgents = field(default_factory=LiveAgents)
    background: TaskSet = field(default_factory=lambda: TaskSet("engine", log))
    # Set by build once the dispatcher exists: new work or a freed agent wakes it.
    wake_dispatcher: Callable[[], None] = lambda: None
    running: bool = False
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def config(self) -> GodelConfig:
        return self.loaded.config

    async def active_swarm(self, name: str) -> Swarm:
        """The swarm ``name``, or ``SwarmError`` if there is none or it was destroyed."""
        swarm = await self.store.get_swarm(name)
        if swarm is None or swarm.status != "active":
            raise SwarmError(f"swarm {name!r} not found", swarm=name)
        return swarm
