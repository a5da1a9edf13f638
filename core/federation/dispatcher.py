"""The dispatcher: claims ready tasks in priority order, routes each to an agent, runs it
through ``Engine.exec`` under a lease with heartbeats, and records the outcome.

A pool is a swarm (or the default pool: live agents in no swarm). Per pool and per round:
rescue expired leases → read in-flight counts from the leases → take the ready tasks
that fit → ask the router for an agent per task → claim the (task, agent) pairs in one
transaction → run each claimed task in its own asyncio task. Submits, finished tasks and
agents that come or go wake it up; otherwise it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import AgentNotFound, AgentUnavailable, GodelError
from core.models import (
    ExecResult,
    ExecStatus,
    Lease,
)
from core.store.base import AuditDraft

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger("godel.dispatcher")

DEFAULT_LEASE_S = 60.0
POLL_S = 0.25
RESCUE_EVERY_S = 1.0
AGENT_CAPACITY = 1  # an agent runs one exec at a time


@dataclass
class Routed:
    """The router's answer for one task."""

    agent_id: str | None
    reason: str = ""
    explain: object | None = None
    strategy: str = "least-loaded"


@dataclass
class Dispatcher:
    engine: Engine
    lease_s: float = DEFAULT_LEASE_S
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _loop_task: asyncio.Task[None] | None = None
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # task id -> runner
    stopping: bool = False
    _last_rescue: float = 0.0

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="godel-dispatcher")

    async def stop(self) -> None:
        self.stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        # Running tasks keep their leases: the next daemon rescues them when they expire.
        for t in list(self._running.values()):
            t.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
            try:
                await self.dispatch_once()
            except Exception:
                log.exception("dispatch round failed")
                await asyncio.sleep(POLL_S)

    async def dispatch_once(self) -> int:
        """One round over every pool; returns how many tasks were started."""
        store = self.engine.store
        now = time.monotonic()
        if now - self._last_rescue >= RESCUE_EVERY_S:  # leases last a minute: no need per round
            self._last_rescue = now
            for task_id in await store.rescue_expired(time.time()):
                log.info("lease of %s expired; rescued", task_id)
        pools: list[tuple[str | None, str | None]] = [
            (None, None),
            *[(s.name, s.strategy) for s in await store.list_swarms()],
        ]
        started = 0
        for pool, strategy in pools:
            started += await self._dispatch_pool(pool, strategy)
        return started

    async def _dispatch_pool(self, pool: str | None, strategy: str | None) -> int:
        store = self.engine.store
        agents = self.engine.pool_agents(pool)
        if not agents:
            return 0
        in_flight = await store.in_flight([a.id for a in agents])
        free = sum(max(0, AGENT_CAPACITY - in_flight[a.id]) for a in agents)
        if free == 0:
            return 0
        ready = await store.ready_tasks(pool, free, time.time())
        if not ready:
            return 0
        candidates = self.engine.routing.sync(pool, strategy, agents, in_flight)
        pairs: list[tuple[str, str]] = []
        audits: list[AuditDraft | None] = []
        for task in ready:
            t0 = time.perf_counter()
            routed = self.engine.routing.choose(candidates, task)
            self.engine.metrics.observe_route(
                routed.strategy, time.perf_counter() - t0, routed.agent_id is not None
            )
            self.engine.publish_route(task, routed)
            if routed.agent_id is None:
                continue
            if not self.engine.admit(routed.agent_id):
                candidates.release(routed.agent_id)
                continue  # a half-open breaker's single trial is already out
            in_flight[routed.agent_id] = in_flight.get(routed.agent_id, 0) + 1
            pairs.append((task.id, routed.agent_id))
            audits.append(self.engine.route_audit(task, routed))
        # Each routing decision is audited in the same transaction as its claim.
        leases = await store.claim(pairs, self.lease_s, audits)
        claimed = {lease.task.id for lease in leases}
        for task_id, agent_id in pairs:
            if task_id not in claimed:  # taken or cancelled meanwhile: give the trial back
                self.engine.release_trial(agent_id)
        for lease in leases:
            self._running[lease.task.id] = asyncio.create_task(
                self._run(lease), name=f"run-{lease.task.id}"
            )
        return len(leases)

    async def _run(self, lease: Lease) -> None:
        task, store = lease.task, self.engine.store
        beat = asyncio.create_task(self._heartbeat(lease))
        result: ExecResult | None = None
        requeue = ""
        try:
            async for ev in self.engine.exec(
                lease.agent_id,
                task.input,
                actor=f"dispatcher (task {task.id})",
                timeout=task.timeout_s,
                task_id=task.id,
            ):
                if isinstance(ev, ExecResult):
                    result = ev
        except (AgentUnavailable, AgentNotFound) as e:
            requeue = f"agent {lease.agent_id} could not take it: {e.message}"
        except GodelError as e:
            result = ExecResult(
                exec_id="", status=ExecStatus.FAILED, exit_code=None, reason=e.message
            )
        finally:
            beat.cancel()
            self._running.pop(task.id, None)
        try:
            if (
                result is not None
                and result.status is ExecStatus.INTERRUPTED
                and not self.engine.is_live(lease.agent_id)
            ):
                requeue = f"agent {lease.agent_id} ended mid-task ({result.reason})"
            if requeue:
                await store.requeue_agent(lease.agent_id, requeue, "dispatcher")
            elif result is not None:
                ok = result.status is ExecStatus.SUCCEEDED
                retryable = result.status is not ExecStatus.ABORTED
                status = await store.complete(
                    task.id, lease.token, result, ok=ok, retryable=retryable
                )
                if status is not None:
                    self.engine.record_outcome(lease.agent_id, ok)
                    await self.engine.task_finished(task, lease.agent_id, result, status)
        finally:
            self.wake()

    async def _heartbeat(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if not await self.engine.store.heartbeat(lease.task.id, lease.token, self.lease_s):
                return  # the lease is gone (cancelled or rescued): stop extending it
