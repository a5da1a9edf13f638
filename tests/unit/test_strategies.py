"""Each routing strategy picks what its definition says, on small hand-built pools."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from core.federation.routing.columns import Columns, SkillView
from core.federation.routing.pool import CandidatePool
from core.federation.routing.strategies import (
    BalancedStrategy,
    LeastConnectionsStrategy,
    ScoreStrategy,
    make_strategy,
    register_strategy,
    strategy_names,
)
from core.federation.routing.types import Candidate, RouteRequest, UnknownStrategyError

F64 = np.ndarray


def cand(agent_id: str, **kw: object) -> Candidate:
    kw.setdefault("skills", frozenset({"python"}))
    kw.setdefault("capacity", 10)
    return Candidate(agent_id=agent_id, **kw)  # type: ignore[arg-type]


def pick(pool: CandidatePool, skills: set[str] | None = None, **kw: object) -> str | None:
    req = RouteRequest("t1", frozenset({"python"} if skills is None else skills), **kw)  # type: ignore[arg-type]
    return pool.route(req, reserve=False).chosen


def picks(pool: CandidatePool, n: int, reserve: bool = False) -> list[str | None]:
    return [
        pool.route(RouteRequest(f"t{i}", frozenset({"python"})), reserve=reserve).chosen
        for i in range(n)
    ]


def test_every_builtin_strategy_is_registered() -> None:
    assert strategy_names() == sorted(
        [
            "balanced",
            "consistent-hash",
            "cost",
            "least-connections",
            "load-balanced",
            "reliability",
            "round-robin",
            "skill-match",
            "speed",
            "weighted",
        ]
    )


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(UnknownStrategyError) as e:
        make_strategy("fastest")
    assert "'fastest'" in str(e.value)
    assert "balanced" in str(e.value) and "round-robin" in str(e.value)
    assert isinstance(e.value, ValueError)


# --- skill-match -----------------------------------------------------------------------


def test_skill_match_prefers_the_most_specific_agent() -> None:
    pool = CandidatePool(
        [
            cand("a", skills=frozenset({"python", "go", "rust"})),
            cand("b", skills=frozenset({"python", "go"})),
            cand("c", skills=frozenset({"python", "sql", "docs"})),
        ],
        strategy="skill-match",
    )
    assert pick(pool, {"python", "go"}) == "b"
    assert pick(pool, {"python"}) == "b"  # b has 1 extra skill, a and c have 2


def test_skill_match_tie_goes_to_fewer_in_flight() -> None:
    pool = CandidatePool(
        [
            cand("a", skills=frozenset({"python"}), in_flight=2),
            cand("b", skills=frozenset({"python"}), in_flight=1),
            cand("c", skills=frozenset({"python", "go"}), in_flight=0),
        ],
        strategy="skill-match",
    )
    assert pick(pool) == "b"  # c is idle but less specific


# --- cost, speed, reliability ------------------------------------------------------------


def test_cost_picks_the_cheapest_and_unknown_sorts_last() -> None:
    pool = CandidatePool(
        [
            cand("a", cost_per_task=None),
            cand("b", cost_per_task=0.50),
            cand("c", cost_per_task=0.02),
            cand("d", cost_per_task=0.10),
        ],
        strategy="cost",
    )
    assert pick(pool) == "c"
    pool.remove("c")
    pool.remove("d")
    assert pick(pool) == "b"  # known beats unknown, however expensive
    pool.remove("b")
    assert pick(pool) == "a"  # unknown is still eligible


def test_cost_free_agent_wins() -> None:
    pool = CandidatePool(
        [cand("a", cost_per_task=0.01), cand("b", cost_per_task=0.0)], strategy="cost"
    )
    assert pick(pool) == "b"


def test_speed_picks_the_fastest_and_unknown_sorts_last() -> None:
    pool = CandidatePool(
        [cand("a", latency_s=None), cand("b", latency_s=40.0), cand("c", latency_s=12.5)],
        strategy="speed",
    )
    assert pick(pool) == "c"
    pool.remove("c")
    assert pick(pool) == "b"


def test_reliability_prefers_99_of_100_over_1_of_1() -> None:
    pool = CandidatePool(
        [
            cand("lucky", success_rate=1.0, completed=1),
            cand("steady", success_rate=0.99, completed=100),
        ],
        strategy="reliability",
    )
    assert pick(pool) == "steady"


def test_reliability_unknown_sits_at_the_prior_mean() -> None:
    pool = CandidatePool(
        [
            cand("bad", success_rate=0.0, completed=10),
            cand("new", success_rate=None),
            cand("meh", success_rate=0.4, completed=50),
        ],
        strategy="reliability",
    )
    assert pick(pool) == "new"  # 0.5 > 21/52 > 1/12


# --- load-balanced -------------------------------------------------------------------------


def test_load_balanced_picks_the_lowest_load_ratio() -> None:
    pool = CandidatePool(
        [
            cand("a", in_flight=1, capacity=2),  # 0.5
            cand("b", in_flight=1, capacity=4),  # 0.25
            cand("c", in_flight=2, capacity=3),  # 0.67
        ],
        strategy="load-balanced",
    )
    assert pick(pool) == "b"


def test_load_balanced_tie_goes_to_the_lowest_id() -> None:
    pool = CandidatePool(
        [cand("c", in_flight=1), cand("a", in_flight=1), cand("b", in_flight=1)],
        strategy="load-balanced",
    )
    assert pick(pool) == "a"


def test_load_balanced_spreads_when_booking() -> None:
    pool = CandidatePool(
        [cand(x, capacity=2) for x in "abc"],
        strategy="load-balanced",
    )
    assert picks(pool, 6, reserve=True) == ["a", "b", "c", "a", "b", "c"]
    assert picks(pool, 1, reserve=True) == [None]


# --- balanced ------------------------------------------------------------------------------


def test_balanced_is_the_default() -> None:
    assert CandidatePool().strategy == "balanced"


def test_balanced_prefers_the_idle_agent_when_all_else_is_equal() -> None:
    pool = CandidatePool([cand("a", in_flight=3), cand("b", in_flight=1), cand("c", in_flight=2)])
    assert pick(pool) == "b"


def test_balanced_prefers_cheaper_faster_more_reliable() -> None:
    base = {"latency_s": 10.0, "cost_per_task": 0.1, "success_rate": 0.9, "completed": 50}
    for field, better in (
        ("latency_s", 5.0),
        ("cost_per_task", 0.05),
        ("success_rate", 0.99),
    ):
        pool = CandidatePool(
            [cand("a", **base), cand("b", **{**base, field: better}), cand("c", **base)]
        )
        assert pick(pool) == "b", field


def test_balanced_score_follows_the_documented_formula() -> None:
    pool = CandidatePool(
        [
            cand("a", in_flight=1, capacity=2, latency_s=10.0, cost_per_task=0.2,
                 success_rate=1.0, completed=8),
            cand("b", in_flight=0, capacity=1, latency_s=20.0, cost_per_task=None,
                 success_rate=None),
            cand("c", in_flight=0, capacity=4, latency_s=None, cost_per_task=0.1,
                 success_rate=0.5, completed=2),
        ]
    )  # fmt: skip
    d = pool.route(RouteRequest("t", frozenset({"python"})), explain=True, reserve=False)
    assert d.candidates is not None
    got = {c.agent_id: c for c in d.candidates}
    lat = (10.0 + 1e-3) / (20.0 + 1e-3)
    cost = (0.1 + 1e-6) / (0.2 + 1e-6)
    expected_parts = {
        "a": {"load": 0.5, "latency": 1.0, "cost": cost, "reliability": 9 / 10},
        "b": {"load": 1.0, "latency": lat, "cost": 0.5, "reliability": 0.5},
        "c": {"load": 1.0, "latency": 0.5, "cost": 1.0, "reliability": 2 / 4},
    }
    for agent_id, parts in expected_parts.items():
        assert got[agent_id].parts == pytest.approx(parts)
        expected = 0.4 * parts["load"] + 0.2 * (
            parts["latency"] + parts["cost"] + parts["reliability"]
        )
        assert got[agent_id].score == pytest.approx(expected)
    assert d.chosen == max(got, key=lambda k: got[k].score or 0.0) == "c"


def test_balanced_normalises_against_the_pool_best() -> None:
    # Ratios to the best of the whole pool: a busy agent or another skill set's agent
    # still sets the scale, so scores do not jump as rivals come and go.
    pool = CandidatePool(
        [
            cand("py", cost_per_task=0.5, in_flight=10),
            cand("go1", skills=frozenset({"go"}), cost_per_task=1.0),
            cand("go2", skills=frozenset({"go"}), cost_per_task=2.0),
        ]
    )
    d = pool.route(RouteRequest("t", frozenset({"go"})), explain=True, reserve=False)
    assert d.candidates is not None
    costs = {c.agent_id: c.parts.get("cost") for c in d.candidates if c.excluded is None}
    assert costs == pytest.approx({"go1": 0.5, "go2": 0.25}, rel=1e-5)
    assert d.chosen == "go1"


def test_balanced_weights_are_configurable() -> None:
    agents = [
        cand("a", in_flight=0, cost_per_task=0.9),
        cand("b", in_flight=5, cost_per_task=0.1),
    ]
    pool = CandidatePool(agents)
    assert pick(pool) == "a"
    pool.strategy = BalancedStrategy(weights={"load": 0.0, "cost": 1.0})
    assert pool.strategy == "balanced"
    assert pick(pool) == "b"


def test_balanced_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="unknown balanced weight"):
        BalancedStrategy(weights={"price": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        BalancedStrategy(weights={"load": 0, "latency": 0, "cost": 0, "reliability": 0})


def test_balanced_follows_stats_changes() -> None:
    pool = CandidatePool([cand(x, latency_s=10.0, cost_per_task=0.1) for x in "abcd"])
    assert pick(pool) == "a"
    pool.set_stats("c", latency_s=1.0)  # the new best latency
    assert pick(pool) == "c"
    pool.set_stats("c", latency_s=100.0)  # the best row got worse: a rescan
    assert pick(pool) == "a"
    for _ in range(100):  # more changes than the repair log remembers
        pool.set_stats("b", cost_per_task=0.01)
    assert pick(pool) == "b"


def test_balanced_cached_scores_match_a_fresh_computation() -> None:
    rng = random.Random(7)
    agents = [
        cand(f"a{i:02d}", latency_s=rng.uniform(1, 50), cost_per_task=rng.uniform(0, 1),
             success_rate=rng.random(), completed=rng.randint(0, 50),
             skills=frozenset(rng.sample(["python", "go", "sql"], rng.randint(1, 3))))
        for i in range(40)
    ]  # fmt: skip
    pool = CandidatePool(agents)
    for step in range(300):
        agent_id = f"a{rng.randrange(40):02d}"
        pool.set_stats(
            agent_id,
            latency_s=rng.choice([None, rng.uniform(1, 50)]),
            cost_per_task=rng.choice([None, rng.uniform(0, 1)]),
            success_rate=rng.random(),
        )
        skills = frozenset(rng.sample(["python", "go", "sql"], rng.randint(1, 2)))
        got = pool.route(RouteRequest(f"t{step}", skills), reserve=False).chosen
        fresh = CandidatePool(pool.candidates())
        assert got == fresh.route(RouteRequest("x", skills), reserve=False).chosen


# --- round-robin -------------------------------------------------------------------------


def test_round_robin_cycles_in_id_order() -> None:
    pool = CandidatePool([cand(x) for x in "cab"], strategy="round-robin")
    assert picks(pool, 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_skips_ineligible_and_survives_membership_changes() -> None:
    pool = CandidatePool([cand(x) for x in "abcd"], strategy="round-robin")
    pool.set_health("b", healthy=False)
    assert picks(pool, 3) == ["a", "c", "d"]
    pool.set_health("b", healthy=True)
    assert picks(pool, 2) == ["a", "b"]
    pool.remove("b")  # the cursor is an id: the walk goes on after it
    pool.upsert(cand("bb"))
    assert picks(pool, 3) == ["bb", "c", "d"]


# --- least-connections (P2C) -------------------------------------------------------------


def test_p2c_takes_the_less_loaded_of_the_sampled_pair_and_never_an_ineligible_one() -> None:
    agents = [cand(f"a{i}", in_flight=i % 4, capacity=4) for i in range(12)]
    agents.append(cand("sick", in_flight=0, healthy=False))
    agents.append(cand("full", in_flight=4, capacity=4))
    strat = LeastConnectionsStrategy(rng=random.Random(42))
    pool = CandidatePool(agents, strategy=strat)
    seen: Counter[str] = Counter()
    for i in range(500):
        d = pool.route(RouteRequest(f"t{i}", frozenset({"python"})), reserve=False)
        assert d.chosen is not None and d.chosen not in ("sick", "full")
        a, b = strat.sampled
        assert a != b
        ids = pool._columns().ids
        chosen_row = ids.index(d.chosen)
        assert chosen_row in (a, b)
        other = b if chosen_row == a else a
        assert pool.get(d.chosen).in_flight <= pool.get(ids[other]).in_flight
        seen[d.chosen] += 1
    # The less loaded an agent, the more pairs it wins (in_flight = i % 4).
    per_load = [sum(seen[f"a{i}"] for i in range(level, 12, 4)) for level in range(4)]
    assert per_load == sorted(per_load, reverse=True)
    assert per_load[0] > 1.5 * per_load[2] > 3 * per_load[3]


def test_p2c_is_reproducible_with_a_seed_and_takes_the_only_eligible() -> None:
    def run(seed: int) -> list[str | None]:
        pool = CandidatePool(
            [cand(f"a{i}", in_flight=i % 3, capacity=5) for i in range(8)],
            strategy="least-connections",
            rng=random.Random(seed),
        )
        return picks(pool, 50)

    assert run(1) == run(1)
    pool = CandidatePool(
        [cand("a"), cand("b", healthy=False), cand("c", healthy=False), cand("d")],
        strategy="least-connections",
        panic_threshold=0,
    )
    pool.set_health("d", healthy=False)
    assert picks(pool, 3) == ["a", "a", "a"]


def test_p2c_breaks_ties_at_random() -> None:
    pool = CandidatePool([cand("a"), cand("b")], strategy="least-connections", rng=random.Random(3))
    assert set(picks(pool, 50)) == {"a", "b"}


# --- weighted ----------------------------------------------------------------------------


def test_weighted_distributes_5_1_1_exactly_and_smoothly() -> None:
    pool = CandidatePool(
        [cand("a", weight=5), cand("b", weight=1), cand("c", weight=1)], strategy="weighted"
    )
    seq = picks(pool, 7)
    assert seq == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's own example
    assert Counter(picks(pool, 700)) == {"a": 500, "b": 100, "c": 100}


def test_weighted_only_counts_eligible_agents() -> None:
    pool = CandidatePool(
        [cand("a", weight=2), cand("b", weight=1), cand("c", weight=1)], strategy="weighted"
    )
    pool.set_health("a", healthy=False)
    pool.panic_threshold = 0
    assert Counter(picks(pool, 10)) == {"b": 5, "c": 5}


# --- consistent-hash ---------------------------------------------------------------------


def test_consistent_hash_is_stable_and_only_moves_the_removed_agents_keys() -> None:
    pool = CandidatePool([cand(f"agent-{i}") for i in range(10)], strategy="consistent-hash")

    def owners() -> dict[str, str | None]:
        return {
            k: pool.route(RouteRequest("t", frozenset({"python"}), key=k), reserve=False).chosen
            for k in (f"key-{j}" for j in range(2000))
        }

    before = owners()
    assert owners() == before
    assert len(set(before.values())) == 10  # every agent owns some keys
    assert min(Counter(before.values()).values()) > 100  # and roughly a fair share
    pool.remove("agent-3")
    after = owners()
    moved = {k for k in before if before[k] != after[k]}
    assert moved == {k for k, v in before.items() if v == "agent-3"}
    pool.upsert(cand("agent-3"))
    assert owners() == before  # and they come back


def test_consistent_hash_key_defaults_to_the_task_id() -> None:
    pool = CandidatePool([cand(f"agent-{i}") for i in range(5)], strategy="consistent-hash")
    by_task = pool.route(RouteRequest("task-42", frozenset({"python"})), reserve=False)
    by_key = pool.route(RouteRequest("other", frozenset({"python"}), key="task-42"), reserve=False)
    assert by_task.chosen == by_key.chosen


def test_consistent_hash_skips_an_ineligible_owner() -> None:
    pool = CandidatePool([cand(f"agent-{i}") for i in range(5)], strategy="consistent-hash")
    owner = pick(pool, key="k")
    assert owner is not None
    pool.set_capacity(owner, 0)
    second = pick(pool, key="k")
    assert second not in (None, owner)
    pool.set_capacity(owner, 10)
    assert pick(pool, key="k") == owner


# --- adding a strategy -------------------------------------------------------------------


def test_a_new_strategy_can_be_registered_and_used_by_name() -> None:
    @register_strategy
    class FewestCompleted(ScoreStrategy):
        name = "test-fewest-completed"

        def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
            return -cols.completed.astype(np.float64)

        def explain(self, cols, view, rows, req, chosen):  # type: ignore[no-untyped-def]
            n = cols.completed[rows].astype(np.float64)
            return -n, {"completed": n}

    assert "test-fewest-completed" in strategy_names()
    pool = CandidatePool([cand("a", completed=9), cand("b", completed=3), cand("c", completed=5)])
    d = pool.route(
        RouteRequest("t", frozenset({"python"}), strategy="test-fewest-completed"),
        explain=True,
    )
    assert d.chosen == "b"
    assert d.candidates is not None
    assert [c.agent_id for c in d.candidates] == ["b", "c", "a"]


def test_every_strategy_only_picks_eligible_agents_and_agrees_with_explain() -> None:
    rng = random.Random(11)
    for name in strategy_names():
        if name.startswith("test-"):
            continue
        agents = [
            cand(f"a{i:02d}", in_flight=rng.randint(0, 2), capacity=2,
                 healthy=rng.random() > 0.2, over_budget=rng.random() < 0.1,
                 latency_s=rng.choice([None, rng.uniform(1, 9)]),
                 cost_per_task=rng.choice([None, rng.uniform(0, 1)]),
                 success_rate=rng.random(), completed=rng.randint(0, 9),
                 weight=rng.choice([1.0, 2.0]))
            for i in range(30)
        ]  # fmt: skip
        pool = CandidatePool(agents, strategy=name, rng=random.Random(5))
        for i in range(30):
            d = pool.route(RouteRequest(f"t{i}", frozenset({"python"})), explain=True)
            assert d.candidates is not None and len(d.candidates) == len(pool)
            eligible = [c for c in d.candidates if c.excluded is None]
            assert len(eligible) == d.eligible
            if d.chosen is None:
                assert not eligible
                continue
            assert eligible[0].agent_id == d.chosen, name
            scores = [c.score for c in eligible]
            assert all(s is not None for s in scores)
            assert scores[0] == max(scores), name  # type: ignore[type-var]
