"""Micro-benchmark of ``CandidatePool.route`` (``python -m core.federation.routing.bench``).

The pool is made to look like a real swarm: agents hold 1-4 of 10 skills (some skills
far more common than others), capacity 1, about half busy at the start, a few
unhealthy, ejected, over budget or behind an open or half-open breaker, and varied
cost, latency and success (some unknown). Requests need 0-2 skills. Every decision
books its agent (``reserve``); tasks complete at random to keep about 60 % of agents
busy, and each completion updates the agent's EWMAs as the engine would, which also
invalidates the stats caches. Only ``pool.route()`` is timed, one decision at a time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from pydantic import BaseModel

from core.federation.routing.pool import CandidatePool
from core.federation.routing.strategies import strategy_names
from core.federation.routing.types import Candidate, RouteRequest
from core.models import DEFAULT_STRATEGY

SKILLS = (
    "python",
    "typescript",
    "tests",
    "go",
    "docs",
    "sql",
    "frontend",
    "infra",
    "rust",
    "security",
)
# Popularity of each skill above (python is everywhere, security is rare).
SKILL_WEIGHTS = (10, 8, 6, 4, 4, 3, 3, 2, 1, 1)
WARMUP = 500
BUSY_SHARE = 0.6
EWMA_ALPHA = 0.2


class RouteBench(BaseModel):
    agents: int
    strategy: str
    decisions: int
    p50_us: float
    p99_us: float
    mean_us: float
    max_us: float
    routed_share: float  # decisions that found an agent (the rest: all busy or no skill)


def _skills(rng: random.Random, k: int) -> frozenset[str]:
    out: set[str] = set()
    while len(out) < k:
        out.add(rng.choices(SKILLS, SKILL_WEIGHTS)[0])
    return frozenset(out)


def _maybe(rng: random.Random, p_unknown: float, value: float) -> float | None:
    return None if rng.random() < p_unknown else value


def build_pool(agents: int, strategy: str, seed: int) -> CandidatePool:
    rng = random.Random(seed)
    cands = []
    for i in range(agents):
        breaker = rng.choices(("closed", "open", "half_open"), (95, 3, 2))[0]
        cands.append(
            Candidate(
                agent_id=f"agent-{i:05d}",
                runtime=rng.choice(("pi", "native", "shell")),
                model=rng.choice(("model-a", "model-b", "model-c")),
                skills=_skills(rng, rng.randint(1, 4)),
                in_flight=rng.randint(0, 1),
                capacity=1,
                healthy=rng.random() > 0.05,
                ejected=rng.random() < 0.02,
                breaker=breaker,  # type: ignore[arg-type]  # one of the three literals
                trial_available=breaker == "half_open",
                over_budget=rng.random() < 0.02,
                cost_per_task=_maybe(rng, 0.1, rng.lognormvariate(-3.0, 0.8)),
                latency_s=_maybe(rng, 0.1, rng.lognormvariate(3.4, 0.6)),
                success_rate=_maybe(rng, 0.1, rng.betavariate(18, 2)),
                completed=rng.randint(0, 500),
                weight=float(rng.choice((1, 1, 2, 3))),
            )
        )
    return CandidatePool(cands, strategy=strategy, rng=random.Random(seed + 1))


def _request(rng: random.Random, n: int) -> RouteRequest:
    k = rng.choices((0, 1, 2), (2, 6, 2))[0]
    return RouteRequest(task_id=f"task-{n}", skills=_skills(rng, k))


def _complete(rng: random.Random, pool: CandidatePool, busy: list[str]) -> None:
    """One random task ends: in-flight from the 'lease table', EWMAs updated."""
    agent_id = busy.pop(rng.randrange(len(busy)))
    c = pool.get(agent_id)
    pool.set_in_flight(agent_id, c.in_flight - 1)
    a = EWMA_ALPHA
    ok = rng.random() < 0.9
    pool.set_stats(
        agent_id,
        latency_s=(1 - a) * (c.latency_s or 30.0) + a * rng.lognormvariate(3.4, 0.6),
        cost_per_task=(1 - a) * (c.cost_per_task or 0.05) + a * rng.lognormvariate(-3.0, 0.8),
        success_rate=(1 - a) * (c.success_rate or 0.9) + a * float(ok),
        completed=c.completed + 1,
    )
    if c.breaker == "half_open":
        pool.set_breaker(agent_id, "closed" if ok else "open")


def bench_route(
    agents: int, decisions: int = 20000, strategy: str = DEFAULT_STRATEGY, seed: int = 0
) -> RouteBench:
    pool = build_pool(agents, strategy, seed)
    rng = random.Random(seed + 2)
    busy = [c.agent_id for c in pool.candidates() for _ in range(c.in_flight)]
    target = max(1, int(agents * BUSY_SHARE))
    times: list[float] = []
    routed = 0
    perf = time.perf_counter_ns
    for n in range(WARMUP + decisions):
        req = _request(rng, n)
        t0 = perf()
        d = pool.route(req)
        dt = (perf() - t0) / 1000
        if n >= WARMUP:
            times.append(dt)
            routed += d.chosen is not None
        if d.chosen is not None:
            busy.append(d.chosen)
        # Completions keep the swarm around BUSY_SHARE busy; a miss frees a slot too.
        while busy and (len(busy) > target or d.chosen is None):
            _complete(rng, pool, busy)
            if d.chosen is None:
                break
        if n % 250 == 0:  # now and then an agent's health flips
            victim = f"agent-{rng.randrange(agents):05d}"
            pool.set_health(victim, healthy=not pool.get(victim).healthy)
    times.sort()
    return RouteBench(
        agents=agents,
        strategy=strategy,
        decisions=decisions,
        p50_us=round(statistics.median(times), 2),
        p99_us=round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
        mean_us=round(statistics.fmean(times), 2),
        max_us=round(times[-1], 2),
        routed_share=round(routed / decisions, 3),
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--agents", type=int, nargs="+", default=[10, 50, 1000])
    ap.add_argument("--decisions", type=int, default=20000)
    ap.add_argument("--strategy", nargs="+", default=strategy_names())
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(
        f"{'strategy':<18} {'agents':>6} {'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8} {'routed':>7}"
    )
    for strategy in args.strategy:
        for agents in args.agents:
            r = bench_route(agents, args.decisions, strategy, args.seed)
            print(
                f"{r.strategy:<18} {r.agents:>8} {r.p50_us:>8.1f} {r.p99_us:>8.1f}"
                f" {r.mean_us:>8.1f} {r.routed_share:>8.0%}"
            )


if __name__ == "__main__":
    main()
