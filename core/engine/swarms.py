"""The swarm service: create, scale, resize and destroy swarms, replace agents that die,
and change a swarm's routing strategy. This is federation's ``SwarmScaler`` port.

Destroying a swarm leaves nothing behind: its agents stop, its unfinished tasks are
cancelled, and its routing pool, metric series, autoscaler window and restart history
are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.audit import AuditDraft
from core.engine.agents import AgentService
from core.engine.context import EngineContext
from core.engine.execs import ExecService
from core.errors import InvalidInput
from core.federation.health import RestartPolicy
from core.federation.routing import RoutingTable, check_strategy
from core.models import Agent, AgentSpec, StatusSource, Swarm, SwarmSpec, utcnow
from core.store import ops

log = logging.getLogger("godel.engine")


class SwarmService:
    def __init__(
        self,
        ctx: EngineContext,
        agents: AgentService,
        execs: ExecService,
        routing: RoutingTable,
    ) -> None:
        self.ctx = ctx
        self.agents = agents
        self.execs = execs
        self.routing = routing
        self.restarts = RestartPolicy(ctx.config.health, clock=ctx.clock.monotonic)
        self._gone: set[tuple[str, datetime]] = set()  # (name, created_at) destroyed
        # Set by build: forget a destroyed swarm's autoscaler window.
        self.forget_autoscaling: Callable[[str], None] = lambda name: None

    async def get(self, name: str) -> Swarm:
        return await self.ctx.active_swarm(name)

    async def create(self, spec: SwarmSpec, actor: str) -> tuple[Swarm, list[Agent], list[str]]:
        """Create a swarm and spawn its agents; returns (swarm, agents, spawn errors)."""
        check_strategy(spec.strategy)
        await self.agents.resolve_model(spec.runtime, spec.model)
        min_agents = spec.min_agents if spec.min_agents is not None else 0
        max_agents = spec.max_agents if spec.max_agents is not None else max(spec.count, 1)
        if not min_agents <= spec.count <= max_agents:
            raise InvalidInput(
                f"count {spec.count} must lie between --min {min_agents} and --max {max_agents}"
            )
        swarm = Swarm(
            name=spec.name,
            runtime=spec.runtime,
            model=spec.model,
            skills=spec.skills,
            strategy=spec.strategy,
            min_agents=min_agents,
            max_agents=max_agents,
            target_per_agent=spec.target_per_agent,
            desired=spec.count,
            capacity=spec.capacity,
            status="active",
            created_at=utcnow(),
        )
        await self.ctx.journal.commit(
            ops.InsertSwarm(swarm),
            audit=AuditDraft(
                actor=actor,
                action="swarm.create",
                subject=spec.name,
                payload=spec.model_dump(mode="json"),
            ),
        )
        agents, errors = await self._grow(swarm, spec.count, actor)
        return swarm, agents, errors

    def members(self, swarm: str) -> list[Agent]:
        return [lv.agent for lv in self.ctx.live.in_swarm(swarm)]

    async def _grow(self, swarm: Swarm, n: int, actor: str) -> tuple[list[Agent], list[str]]:
        """Spawn ``n`` agents into a swarm, a few at a time (spawns are CPU-heavy)."""
        runtime = self.ctx.registry.get(swarm.runtime)
        # A runtime whose start is CPU-heavy may ask for fewer parallel spawns.
        parallel = min(
            self.ctx.config.queue.spawn_concurrency,
            int(getattr(runtime, "max_parallel_spawns", 1 << 30)),
        )
        limit = asyncio.Semaphore(parallel)
        agents: list[Agent] = []
        errors: list[str] = []
        spec = AgentSpec(runtime=swarm.runtime, model=swarm.model, skills=swarm.skills)

        async def one() -> None:
            async with limit:
                if self._destroyed(swarm):
                    return
                try:
                    agent = await self.agents.spawn(spec, actor, swarm=swarm.name)
                except Exception as e:
                    errors.append(str(e))
                    return
            if self._destroyed(swarm):
                # Destroyed while this agent started: it missed the destroy's stop.
                await self.agents.stop(
                    agent.id,
                    actor=actor,
                    source=StatusSource.USER,
                    reason=f"swarm {swarm.name} was destroyed while the agent started",
                    action="agent.stop",
                )
                return
            agents.append(agent)

        await asyncio.gather(*(one() for _ in range(n)))
        self.ctx.wake_dispatcher()
        return agents, errors

    def _destroyed(self, swarm: Swarm) -> bool:
        """Was this swarm (this one, not a later swarm of the same name) destroyed? Only
        this engine destroys swarms, so what it remembers is the whole answer."""
        return (swarm.name, swarm.created_at) in self._gone

    async def _shrink(self, swarm: str, n: int, actor: str, reason: str) -> list[str]:
        """Stop ``n`` agents of a swarm: idle ones first, then the newest."""
        members = self.ctx.live.in_swarm(swarm)
        members.sort(key=lambda lv: (lv.exec_id is not None, -lv.agent.created_at.timestamp()))
        return await self.agents.stop_many(
            [lv.id for lv in members[:n]], actor=actor, source=StatusSource.USER, reason=reason
        )

    async def resize(self, swarm: str, count: int, *, actor: str, reason: str) -> None:
        """Spawn or stop agents so the swarm has ``count``; records the desired size."""
        updated = await self.ctx.journal.commit(ops.UpdateSwarm(swarm, {"desired": count}))
        current = len(self.members(swarm))
        if count > current:
            await self._grow(updated, count - current, actor)
        elif count < current:
            await self._shrink(swarm, current - count, actor, reason)

    async def scale(self, name: str, count: int, actor: str) -> tuple[Swarm, list[str]]:
        swarm = await self.get(name)
        if not swarm.min_agents <= count <= swarm.max_agents:
            raise InvalidInput(
                f"swarm {name} scales between {swarm.min_agents} and {swarm.max_agents} agents; "
                f"{count} is outside",
                swarm=name,
            )
        swarm = await self.ctx.journal.commit(
            ops.UpdateSwarm(name, {"desired": count}),
            audit=AuditDraft(
                actor=actor,
                action="swarm.scale",
                subject=name,
                payload={"from": swarm.desired, "to": count},
            ),
        )
        current = len(self.members(name))
        errors: list[str] = []
        if count > current:
            _, errors = await self._grow(swarm, count - current, actor)
        elif count < current:
            await self._shrink(name, current - count, actor, f"scaled down by {actor}")
        return swarm, errors

    async def destroy(self, name: str, actor: str) -> tuple[list[str], int]:
        """Stop every agent of the swarm, cancel its unfinished tasks, forget its state."""
        swarm = await self.get(name)
        await self.ctx.journal.commit(
            ops.UpdateSwarm(name, {"status": "destroyed"}),
            audit=AuditDraft(actor=actor, action="swarm.destroy", subject=name),
        )
        # Spawns of this swarm still under way stop what they start (one small key kept
        # per destroyed swarm: a later swarm of the same name is another swarm).
        self._gone.add((swarm.name, swarm.created_at))
        reason = f"swarm destroyed by {actor}"
        members = [lv.id for lv in self.ctx.live.in_swarm(name)]
        # Cancel first, so no stop hands a task back to a queue that is going away.
        cancelled = await self.ctx.journal.commit(ops.CancelSwarmTasks(name, actor))
        stopped = await self.agents.stop_many(
            members, actor=actor, source=StatusSource.USER, reason=reason
        )
        self.routing.pools.pop(name, None)
        self.ctx.metrics.forget_swarm(name)
        self.restarts.forget(name)
        self.forget_autoscaling(name)
        return stopped, len(cancelled)

    async def set_strategy(self, swarm: str, strategy: str, actor: str) -> Swarm:
        """Change a swarm's routing strategy at run time (audited)."""
        check_strategy(strategy)
        old = await self.get(swarm)
        updated = await self.ctx.journal.commit(
            ops.UpdateSwarm(swarm, {"strategy": strategy}),
            audit=AuditDraft(
                actor=actor,
                action="swarm.strategy",
                subject=swarm,
                payload={"from": old.strategy, "to": strategy},
            ),
        )
        self.routing.set_strategy(swarm, strategy)
        return updated

    # replacing agents that die -------------------------------------------------------------

    async def on_agent_gone(self, agent: Agent, reason: str, on_its_own: bool) -> None:
        if agent.swarm is not None and on_its_own:
            self._schedule_replacement(agent.swarm, agent.id)

    def _schedule_replacement(self, swarm: str, dead_id: str) -> None:
        """A swarm agent died: start a replacement after a backoff, unless it keeps dying."""
        delay = self.restarts.next_delay(swarm)
        if delay is None:
            reason = self.restarts.give_up_reason(swarm)
            log.warning("swarm %s: not replacing %s: %s", swarm, dead_id, reason)
            self.ctx.background.spawn(
                self.ctx.journal.audit(
                    AuditDraft(
                        actor="daemon",
                        action="swarm.restart",
                        subject=swarm,
                        result="gave up",
                        payload={"dead_agent": dead_id, "reason": reason},
                    )
                )
            )
            return
        self.ctx.background.spawn(self._replace(swarm, dead_id, delay), name=f"replace-{dead_id}")

    async def _replace(self, swarm: str, dead_id: str, delay: float) -> None:
        await self.ctx.clock.sleep(delay)
        record = await self.ctx.store.get_swarm(swarm)
        if record is None or record.status != "active" or not self.ctx.running:
            return
        if len(self.members(swarm)) >= record.desired:
            return
        self.restarts.record_restart(swarm)
        agents, errors = await self._grow(record, 1, "daemon")
        payload: dict[str, Any] = {
            "dead_agent": dead_id,
            "replacement": agents[0].id if agents else None,
            "delay_s": round(delay, 3),
            "errors": errors,
        }
        await self.ctx.journal.audit(
            AuditDraft(
                actor="daemon",
                action="swarm.restart",
                subject=swarm,
                result="ok" if agents else "error",
                payload=payload,
            )
        )
        if agents:
            self.ctx.background.spawn(
                self._reset_when_stable(swarm, agents[0].id), name=f"stable-{swarm}"
            )

    async def _reset_when_stable(self, swarm: str, agent_id: str) -> None:
        """A replacement that stays up ``restart_reset_after_s`` restarts the backoff, so
        a crash a day later is not punished for last week's crash loop."""
        await self.ctx.clock.sleep(self.ctx.config.health.restart_reset_after_s)
        if self.ctx.live.is_live(agent_id):
            self.restarts.reset(swarm)
