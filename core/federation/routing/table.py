"""The routing table: one ``CandidatePool`` per pool (a swarm, or the default pool),
kept in step with the live agents, their leases, health, breakers and measured stats.

Each dispatch round syncs the pool (in-flight counts come from the lease table, never
from counters), then asks it for one decision (``Routed``) per ready task.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from core.errors import InvalidInput
from core.federation.health import BreakerState, HealthTracker
from core.federation.metrics import Metrics
from core.federation.routing.pool import CandidatePool
from core.federation.routing.strategies import strategy_names
from core.federation.routing.types import Candidate, RouteDecision, RouteRequest
from core.models import DEFAULT_STRATEGY, Agent, AgentStatus, Task


@dataclass
class Routed:
    """The router's answer for one task: an agent, or None and why not."""

    agent_id: str | None
    reason: str
    strategy: str
    explain: object | None = None


def check_strategy(name: str) -> str:
    known = strategy_names()
    if name not in known:
        raise InvalidInput(
            f"unknown routing strategy {name!r} (known: {', '.join(known)})",
            strategy=name,
            known=known,
        )
    return name


@dataclass
class RoutingTable:
    metrics: Metrics
    trackers: Mapping[str, HealthTracker]
    # Open breakers kept in service by the ejection cap: routed as closed.
    cap_overrides: AbstractSet[str] = frozenset()
    panic_threshold: float = 0.5  # [health] panic_threshold
    pools: dict[str | None, CandidatePool] = field(default_factory=dict)

    def pool(self, name: str | None, strategy: str | None = None) -> CandidatePool:
        """The pool of ``name``, made with ``strategy`` if it has none yet. An existing
        pool keeps its strategy: a dispatch round's copy of the swarm record may be older
        than a change made meanwhile (``set_strategy``)."""
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = CandidatePool(
                strategy=strategy or DEFAULT_STRATEGY, panic_threshold=self.panic_threshold
            )
        return pool

    def set_strategy(self, name: str | None, strategy: str) -> None:
        """A swarm's strategy changed (already stored): route with it from now on."""
        self.pool(name, strategy).strategy = strategy

    def sync(
        self,
        name: str | None,
        strategy: str | None,
        agents: list[Agent],
        in_flight: Mapping[str, int],
    ) -> CandidatePool:
        pool = self.pool(name, strategy)
        present = {a.id for a in agents}
        for cand in pool.candidates():
            if cand.agent_id not in present:
                pool.remove(cand.agent_id)
        for a in agents:
            stats = self.metrics.agent_stats(a.id)
            tracker = self.trackers.get(a.id)
            breaker = tracker.breaker.state if tracker else BreakerState.CLOSED
            if a.id in self.cap_overrides:
                breaker = BreakerState.CLOSED
            trial = bool(tracker and tracker.breaker.trial_available)
            cand = Candidate(
                agent_id=a.id,
                runtime=a.runtime,
                model=a.model,
                skills=frozenset(a.skills),
                in_flight=in_flight.get(a.id, 0),
                healthy=a.status is not AgentStatus.UNHEALTHY,
                breaker=breaker.value,
                trial_available=trial,
                latency_s=stats.ewma_latency_s if stats else None,
                success_rate=stats.ewma_success_rate if stats else None,
                completed=stats.count if stats else 0,
            )
            if a.id in pool:
                pool.set_in_flight(a.id, cand.in_flight)
                pool.set_health(a.id, healthy=cand.healthy)
                pool.set_breaker(a.id, cand.breaker, trial_available=trial)
                pool.set_stats(
                    a.id,
                    latency_s=cand.latency_s,
                    success_rate=cand.success_rate,
                    completed=cand.completed,
                )
            else:
                pool.upsert(cand)
        return pool

    def choose(self, pool: CandidatePool, task: Task) -> Routed:
        d = pool.route(RouteRequest.for_task(task))
        return Routed(d.chosen, d.reason, d.strategy)

    def explain(self, pool: CandidatePool, task: Task) -> RouteDecision:
        return pool.route(RouteRequest.for_task(task), explain=True, reserve=False)
