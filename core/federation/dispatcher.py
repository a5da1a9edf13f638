"""The dispatcher: claims ready tasks in priority order, routes each to an agent, runs it
through the ``Executor`` under a lease with heartbeats, and records the outcome.

A pool is a swarm (or the default pool: live agents in no swarm). Per pool and per round:
rescue expired leases → read in-flight counts from the leases → take the ready tasks
that fit → ask the routing table for an agent per task → claim the (task, agent) pairs
in one transaction → run each claimed task in its own asyncio task. Submits, finished
tasks and agents that come or go wake it up; otherwise it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from core.audit import AuditDraft
from core.clock import Clock, SystemClock
from core.errors import (
    AgentNotFound,
    AgentUnavailable,
    BudgetExhausted,
    BudgetReserved,
    GodelError,
    PolicyDenied,
)
from core.federation.ports import AgentPool, DispatchGate, DispatchObserver, Executor, PauseBoard
from core.federation.routing.table import Routed, RoutingTable
from core.models import ExecResult, ExecStatus, Lease, Task
from core.store import ops
from core.store.base import Store
from core.store.journal import Journal

log = logging.getLogger("godel.dispatcher")

DEFAULT_LEASE_S = 60.0
POLL_S = 0.25
RESCUE_EVERY_S = 1.0
AGENT_CAPACITY = 1  # an agent runs one exec at a time
# Past tasks held by a budget (at 90 %), a round reads pages of HOLD_PAGE more ready
# tasks, up to HOLD_SCAN in all, so that held tasks delay no other scope's.
HOLD_PAGE = 128
HOLD_SCAN = 1024


def route_audit(task: Task, routed: Routed) -> AuditDraft:
    """The audit entry of a decision that placed a task (it commits with the claim)."""
    payload: dict[str, Any] = {
        "agent_id": routed.agent_id,
        "strategy": routed.strategy,
        "reason": routed.reason,
    }
    if routed.explain is not None:
        payload["explain"] = routed.explain
    return AuditDraft(
        actor="dispatcher",
        action="task.route",
        subject=task.id,
        result=routed.agent_id or "unroutable",
        payload=payload,
    )


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        journal: Journal,
        agents: AgentPool,
        executor: Executor,
        observer: DispatchObserver,
        routing: RoutingTable,
        clock: Clock | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        gate: DispatchGate | None = None,
        pauses: PauseBoard | None = None,
    ) -> None:
        self.store = store
        self.journal = journal
        self.agents = agents
        self.executor = executor
        self.observer = observer
        self.routing = routing
        self.clock = clock or SystemClock()
        self.lease_s = lease_s
        self.gate = gate
        self.pauses = pauses
        self.stopping = False
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}  # task id -> its runner
        self._last_rescue = float("-inf")

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="godel-dispatcher")

    async def stop(self) -> None:
        self.stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        # Running tasks keep their leases: the next daemon's recovery requeues them at once.
        for t in list(self._running.values()):
            t.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while not self.stopping:
            await self.clock.wait(self._wake, POLL_S)
            self._wake.clear()
            try:
                await self.dispatch_once()
            except Exception:
                log.exception("dispatch round failed")
                await self.clock.sleep(POLL_S)

    async def dispatch_once(self) -> int:
        """One round over every pool; returns how many tasks were started."""
        now = self.clock.monotonic()
        if now - self._last_rescue >= RESCUE_EVERY_S:  # leases last a minute: not every round
            self._last_rescue = now
            rescued = await self.journal.commit(ops.RescueExpired(now=self.clock.time()))
            for task_id in rescued:
                log.info("lease of %s expired; rescued", task_id)
        pools: list[tuple[str | None, str | None]] = [
            (None, None),
            *[(s.name, s.strategy) for s in await self.store.list_swarms()],
        ]
        started = 0
        for pool, strategy in pools:
            started += await self._dispatch_pool(pool, strategy)
        return started

    async def _dispatch_pool(self, pool: str | None, strategy: str | None) -> int:
        agents = self.agents.workers(pool)
        if self.pauses is not None:  # an agent on a paused provider takes nothing
            agents = [a for a in agents if self.pauses.paused(a) is None]
        if not agents:
            return 0
        in_flight = await self.store.in_flight([a.id for a in agents])
        free = sum(max(0, AGENT_CAPACITY - in_flight[a.id]) for a in agents)
        if free == 0:
            return 0
        ready = await self._admitted(pool, free, {(a.runtime, frozenset(a.skills)) for a in agents})
        if not ready:
            return 0
        candidates = self.routing.sync(pool, strategy, agents, in_flight)
        claims: list[ops.Claim] = []
        for task in ready:
            t0 = time.perf_counter()
            routed = self.routing.choose(candidates, task)
            self.observer.routed(task, routed, time.perf_counter() - t0)
            if routed.agent_id is None:
                continue
            if not self.agents.admit(routed.agent_id):
                candidates.release(routed.agent_id)
                continue  # a half-open breaker's single trial is already out
            in_flight[routed.agent_id] = in_flight.get(routed.agent_id, 0) + 1
            # Each routing decision is audited in the same transaction as its claim.
            claims.append(ops.Claim(task.id, routed.agent_id, route_audit(task, routed)))
        if not claims:
            return 0
        leases = await self.journal.commit(
            ops.ClaimTasks(tuple(claims), lease_s=self.lease_s, now=self.clock.time())
        )
        claimed = {lease.task.id for lease in leases}
        for c in claims:
            if c.task_id not in claimed:  # taken or cancelled meanwhile: give the trial back
                self.agents.release_trial(c.agent_id)
        for lease in leases:
            self._running[lease.task.id] = asyncio.create_task(
                self._run(lease), name=f"run-{lease.task.id}"
            )
        return len(leases)

    async def _admitted(
        self, pool: str | None, free: int, takers: set[tuple[str, frozenset[str]]]
    ) -> list[Task]:
        """Up to ``free`` ready tasks of ``pool`` that the gate admits, in claim order.

        Tasks a budget holds stay ready at the front of the queue: they must not take
        the places of the tasks behind them in other scopes, so the scan goes on past
        them, a page at a time, up to ``HOLD_SCAN`` rows a round (the held ones are
        looked at again next round, or when a budget change wakes the dispatcher).
        """
        now = self.clock.time()
        ready = await self.store.ready_tasks(pool, free, now, takers=takers)
        if not ready or self.gate is None:
            return ready
        admitted = await self.gate.admit(ready)
        seen = [t.id for t in ready]
        full = len(ready) == free
        while full and len(admitted) < free and len(seen) < HOLD_SCAN:
            page = await self.store.ready_tasks(pool, HOLD_PAGE, now, takers=takers, exclude=seen)
            admitted += await self.gate.admit(page)
            seen += [t.id for t in page]
            full = len(page) == HOLD_PAGE
        return admitted[:free]

    async def _run(self, lease: Lease) -> None:
        task = lease.task
        beat = asyncio.create_task(self._heartbeat(lease))
        result: ExecResult | None = None
        requeue = ""
        refused = False
        try:
            async for ev in self.executor.exec(
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
        except BudgetReserved as e:
            # Room in the budget is held by running execs' reservations: the task waits
            # for them to settle (the gate holds it until one does), its attempt not
            # counted.
            requeue = e.message
        except (PolicyDenied, BudgetExhausted) as e:
            # The input itself is refused (a deny rule, or a budget exhausted): another
            # attempt would be too, so the task fails now rather than retrying.
            refused = True
            result = ExecResult(
                exec_id="", status=ExecStatus.FAILED, exit_code=None, reason=e.message
            )
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
                and not self.agents.is_live(lease.agent_id)
            ):
                requeue = f"agent {lease.agent_id} ended mid-task ({result.reason})"
            elif result is not None and self.pauses is not None:
                # A provider's usage limit is not the task's failure nor the agent's.
                requeue = self.pauses.cut(result.exec_id) or requeue
            if requeue:
                await self.journal.commit(
                    ops.RequeueAgent(lease.agent_id, requeue, actor="dispatcher")
                )
            elif result is not None:
                ok = result.status is ExecStatus.SUCCEEDED
                status = await self.journal.commit(
                    ops.CompleteTask(
                        task.id,
                        lease.token,
                        result,
                        ok=ok,
                        now=self.clock.time(),
                        retryable=result.status is not ExecStatus.ABORTED and not refused,
                    )
                )
                if status is not None:
                    if refused:  # not the agent's failure: its breaker is not told
                        self.agents.release_trial(lease.agent_id)
                    else:
                        self.agents.record_outcome(lease.agent_id, ok)
                    await self.observer.finished(task, lease.agent_id, result, status)
        finally:
            self.wake()

    async def _heartbeat(self, lease: Lease) -> None:
        while True:
            await self.clock.sleep(self.lease_s / 3)
            beat = ops.Heartbeat(lease.task.id, lease.token, self.lease_s, self.clock.time())
            if not await self.journal.commit(beat):
                return  # the lease is gone (cancelled or rescued): stop extending it
