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
from dataclasses import dataclass

from core.audit import AuditDraft
from core.clock import Clock, SystemClock
from core.config import AutoscalerSettings
from core.events import SwarmAutoscaled
from core.federation.ports import SwarmScaler
from core.models import Swarm
from core.store.base import Store
from core.store.journal import Journal

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


class Autoscaler:
    def __init__(
        self,
        *,
        store: Store,
        journal: Journal,
        swarms: SwarmScaler,
        settings: AutoscalerSettings,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.journal = journal
        self.swarms = swarms
        self.settings = settings
        self.clock = clock or SystemClock()
        self._windows: dict[str, _Window] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.enabled and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="godel-autoscaler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def apply_settings(self, settings: AutoscalerSettings) -> None:
        """New ``[autoscaler]`` settings (config reload): take effect at once."""
        self.settings = settings
        await self.stop()
        self.start()

    def forget(self, swarm: str) -> None:
        """A destroyed swarm leaves no scale-down window behind."""
        self._windows.pop(swarm, None)

    async def _loop(self) -> None:
        while True:
            await self.clock.sleep(self.settings.interval_s)
            try:
                for swarm in await self.store.list_swarms():
                    await self.evaluate(swarm)
            except Exception:
                log.exception("autoscaler round failed")

    async def evaluate(self, swarm: Swarm) -> Decision | None:
        # A round's list of swarms may be stale: one destroyed since is left alone.
        current_record = await self.store.get_swarm(swarm.name)
        if current_record is None or current_record.status != "active":
            self.forget(swarm.name)
            return None
        swarm = current_record
        if swarm.min_agents == swarm.max_agents:
            return None
        counts = await self.store.count_tasks(swarm.name, any_swarm=False)
        work = counts.get("ready", 0) + counts.get("running", 0)
        desired = desired_agents(work, swarm.target_per_agent, swarm.min_agents, swarm.max_agents)
        members = self.swarms.members(swarm.name)
        current = len(members)
        window = self._windows.setdefault(swarm.name, _Window())
        now = self.clock.monotonic()
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
        await self.journal.audit(
            AuditDraft(
                actor="autoscaler",
                action="swarm.autoscale",
                subject=swarm.name,
                result=f"{current}->{target}",
                payload={"desired": desired, "reason": reason},
            ),
            events=[
                SwarmAutoscaled(
                    swarm=swarm.name, from_agents=current, to_agents=target, reason=reason
                )
            ],
        )
        await self.swarms.resize(swarm.name, target, actor="autoscaler", reason=reason)
        return decision
