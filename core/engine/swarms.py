"""The swarm service: create, scale, resize and destroy swarms, replace agents that die,
and change a swarm's routing strategy. This is federation's ``SwarmScaler`` port.

Destroying a swarm leaves nothing behind: its agents stop, its unfinished tasks are
cancelled, and its routing pool, metric series, autoscaler window and restart history
are dropped.

A daemon start brings every active swarm back to its desired size (``restore``): a
daemon stop or crash ends the agents but keeps ``desired``. Changes of a swarm's size
(restore, scale, resize, replacing an agent) take turns per swarm, each counting the
members once it has the turn, so two of them never both spawn the same missing agents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
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
from core.runtimes.base import Capability
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
        self._sizing: dict[str, asyncio.Lock] = {}  # per swarm: one size change at a time
        # Set by build: forget a destroyed swarm's autoscaler window.
        self.forget_autoscaling: Callable[[str], None] = lambda name: None
        # Per swarm, in memory only: the caller's API key its model reads, for the agents
        # spawned after the call (scale, autoscaling, replacements).
        self._keys: dict[str, dict[str, str]] = {}

    async def get(self, name: str) -> Swarm:
        return await self.ctx.active_swarm(name)

    async def create(
        self, spec: SwarmSpec, actor: str, keys: Mapping[str, str] | None = None
    ) -> tuple[Swarm, list[Agent], list[str]]:
        """Create a swarm and spawn its agents; returns (swarm, agents, spawn errors).
        ``keys``: the caller's API key variables (``AgentService.spawn``)."""
        check_strategy(spec.strategy)
        await self.agents.resolve_model(spec.runtime, spec.model, keys)
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
        async with self._turn(spec.name):
            await self.ctx.journal.commit(
                ops.InsertSwarm(swarm),
                audit=AuditDraft(
                    actor=actor,
                    action="swarm.create",
                    subject=spec.name,
                    payload=spec.model_dump(mode="json"),
                ),
            )
            self._keep_keys(swarm, keys)
            agents, errors = await self._grow(swarm, spec.count, actor)
        return swarm, agents, errors

    def members(self, swarm: str) -> list[Agent]:
        return [lv.agent for lv in self.ctx.live.in_swarm(swarm)]

    def _turn(self, swarm: str) -> asyncio.Lock:
        return self._sizing.setdefault(swarm, asyncio.Lock())

    async def restore(self, actor: str) -> None:
        """At start no agent is held: spawn each active swarm's missing agents, so it is
        back at its desired size whether the last daemon was stopped or killed.

        The swarms are those the store holds now; their agents start in the background
        (a pi agent takes a second), each swarm in its turn with other size changes."""
        swarms = await self.ctx.store.list_swarms()
        if swarms:
            self.ctx.background.spawn(self._restore(swarms, actor), name="swarm-restore")

    async def _restore(self, swarms: list[Swarm], actor: str) -> None:
        for listed in swarms:
            async with self._turn(listed.name):
                record = await self.ctx.store.get_swarm(listed.name)
                if record is None or record.status != "active" or self._destroyed(record):
                    continue
                missing = record.desired - len(self.members(record.name))
                if missing <= 0:
                    continue
                agents, errors = await self._grow(record, missing, actor)
            if errors:
                log.warning(
                    "swarm %s: %d agents did not start again: %s",
                    record.name,
                    len(errors),
                    errors[0],
                )
            await self.ctx.journal.audit(
                AuditDraft(
                    actor=actor,
                    action="swarm.restore",
                    subject=record.name,
                    result="ok" if not errors else "error",
                    payload={
                        "desired": record.desired,
                        "spawned": [a.id for a in agents],
                        "errors": errors[:5],
                    },
                )
            )

    def _keep_keys(self, swarm: Swarm, keys: Mapping[str, str] | None) -> None:
        """Keep the key the swarm's model reads from the caller's ``keys`` (a newer one
        replaces the one kept); nothing else of them is kept."""
        if not keys or Capability.MODEL not in self.ctx.registry.get(swarm.runtime).capabilities:
            return
        env = self.ctx.models.key_env(swarm.model or self.ctx.config.defaults.model)
        if env is not None and keys.get(env):
            self._keys[swarm.name] = {env: keys[env]}

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
                    agent = await self.agents.spawn(
                        spec, actor, swarm=swarm.name, keys=self._keys.get(swarm.name)
                    )
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
        async with self._turn(swarm):
            updated = await self.ctx.journal.commit(ops.UpdateSwarm(swarm, {"desired": count}))
            current = len(self.members(swarm))
            if count > current:
                await self._grow(updated, count - current, actor)
            elif count < current:
                await self._shrink(swarm, current - count, actor, reason)

    async def scale(
        self, name: str, count: int, actor: str, keys: Mapping[str, str] | None = None
    ) -> tuple[Swarm, list[str]]:
        swarm = await self.get(name)
        if not swarm.min_agents <= count <= swarm.max_agents:
            raise InvalidInput(
                f"swarm {name} scales between {swarm.min_agents} and {swarm.max_agents} agents; "
                f"{count} is outside",
                swarm=name,
            )
        async with self._turn(name):
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
            self._keep_keys(swarm, keys)
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
        self._sizing.pop(name, None)
        self._keys.pop(name, None)
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
        async with self._turn(swarm):
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
