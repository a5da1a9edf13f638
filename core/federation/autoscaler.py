"""The autoscaler: per swarm, desired agents = ceil(work / target per agent), clamped.

``work`` is the swarm's ready plus running tasks (KEDA's queue-depth rule; counting
running tasks keeps busy agents from being scaled away). Scale-up is immediate.
Scale-down waits for a stabilisation window and then goes only to the highest
recommendation seen during that window (as Kubernetes' HPA does), and only stops idle
agents. Swarms with min == max are fixed and left alone. Every decision that changes
something is an event and an audit entry with its reason. A budget cap joins the clamp
once budgets exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.events import SwarmAutoscaled
from core.federation.autoscaler_settings import AutoscalerSettings
from core.models import Swarm
from core.store.base import AuditDraft

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger("godel.autoscaler")


@dataclass
class _Window:
    """Recommendations seen while the swarm wanted fewer agents than it has."""

    since: float | None = None
    highest: int = 0


@dataclass
class Decision:
    swarm: str
    current: int
    desired: int
    target: int  # what it scaled to (differs from desired while a scale-down waits)
    reason: str


def desired_agents(work: int, target_per_agent: int, min_agents: int, max_agents: int) -> int:
    return max(min_agents, min(max_agents, math.ceil(work / target_per_agent)))


@dataclass
class Autoscaler:
    engine: Engine
    settings: AutoscalerSettings
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, _Window] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self._loop(), name="godel-autoscaler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                for swarm in await self.engine.store.list_swarms():
                    await self.evaluate(swarm)
            except Exception:
                log.exception("autoscaler round failed")

    async def evaluate(self, swarm: Swarm) -> Decision | None:
        if swarm.min_agents == swarm.max_agents:
            return None
        counts = await self.engine.store.count_tasks(swarm.name, any_swarm=False)
        work = counts.get("ready", 0) + counts.get("running", 0)
        desired = desired_agents(work, swarm.target_per_agent, swarm.min_agents, swarm.max_agents)
        members = self.engine.swarm_members(swarm.name)
        current = len(members)
        window = self._windows.setdefault(swarm.name, _Window())
        now = self.clock()
        if desired >= current:
            window.since = None
            if desired == current:
                return None
            reason = (
                f"{work} ready or running tasks at {swarm.target_per_agent} per agent need "
                f"{desired} agents; scaling up from {current} at once"
            )
            return await self._apply(swarm, current, desired, desired, reason)
        # Fewer wanted: wait out the window, then go to the highest recommendation in it.
        if window.since is None:
            window.since, window.highest = now, desired
            return None
        window.highest = max(window.highest, desired)
        if now - window.since < self.settings.scale_down_window_s:
            return None
        idle = sum(1 for a in members if a.status.value == "idle")
        target = max(window.highest, current - idle)
        window.since = None
        if target >= current:
            return None
        reason = (
            f"{work} ready or running tasks need {window.highest} agents for "
            f"{self.settings.scale_down_window_s:g}s; stopping {current - target} idle agents"
        )
        return await self._apply(swarm, current, desired, target, reason)

    async def _apply(
        self, swarm: Swarm, current: int, desired: int, target: int, reason: str
    ) -> Decision:
        decision = Decision(swarm.name, current, desired, target, reason)
        self.engine.bus.publish(
            SwarmAutoscaled(swarm=swarm.name, from_agents=current, to_agents=target, reason=reason)
        )
        await self.engine.store.append_audit(
            AuditDraft(
                actor="autoscaler",
                action="swarm.autoscale",
                subject=swarm.name,
                result=f"{current}->{target}",
                payload={"desired": desired, "reason": reason},
            )
        )
        await self.engine.resize_swarm(swarm.name, target, actor="autoscaler", reason=reason)
        return decision
