"""What every engine service shares: the store and its journal, the bus, the config,
the clock, the runtimes, the live agents, metrics, and a home for background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from core.clock import Clock
from core.config import GodelConfig, LoadedConfig
from core.engine.live import LiveAgents
from core.events import EventBus
from core.federation.metrics import Metrics
from core.llm.catalog import ModelCatalog, ScriptedUrl
from core.paths import GodelPaths
from core.runtimes.registry import RuntimeRegistry
from core.store.base import Store
from core.store.journal import Journal

log = logging.getLogger("godel.engine")


@dataclass
class Background:
    """Fire-and-forget tasks the engine owns: kept referenced, errors logged, and
    cancelled together when the engine stops."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def cancel_all(self) -> None:
        pending = list(self.tasks)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


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
    live: LiveAgents = field(default_factory=LiveAgents)
    background: Background = field(default_factory=Background)
    # Set by build once the dispatcher exists: new work or a freed agent wakes it.
    wake_dispatcher: Callable[[], None] = lambda: None
    running: bool = False
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def config(self) -> GodelConfig:
        return self.loaded.config
