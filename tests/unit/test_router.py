"""The router pipeline: skills → filters (named) → panic → strategy, and the pool's state."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pytest

from core.federation.routing.bench import RouteBench, bench_route
from core.federation.routing.columns import hard_filter, soft_filter
from core.federation.routing.pool import CandidatePool
from core.federation.routing.types import (
    Candidate,
    RouteDecision,
    RouteRequest,
    RouterError,
    UnknownStrategyError,
)


def cand(agent_id: str, **kw: object) -> Candidate:
    kw.setdefault("skills", frozenset({"python"}))
    return Candidate(agent_id=agent_id, **kw)  # type: ignore[arg-type]


def req(*skills: str, task_id: str = "t1", **kw: object) -> RouteRequest:
    return RouteRequest(task_id, frozenset(skills), **kw)  # type: ignore[arg-type]


def excluded(d: RouteDecision) -> dict[str, str | None]:
    assert d.candidates is not None
    return {c.agent_id: c.excluded for c in d.candidates}


# --- filters -----------------------------------------------------------------------------


def test_every_filter_excludes_with_its_name() -> None:
    pool = CandidatePool(
        [
            cand("ok"),
            cand("ejected", ejected=True),
            cand("sick", healthy=False),
            cand("open", breaker="open"),
            cand("trial-out", breaker="half_open", trial_available=False),
            cand("full", in_flight=1, capacity=1),
            cand("broke", over_budget=True),
            cand("gopher", skills=frozenset({"go"})),
            cand("polyglot", skills=frozenset({"go", "rust"})),
        ],
        panic_threshold=0,
    )
    d = pool.route(req("python", "go"), explain=True)
    assert d.chosen is None
    assert d.reason == "no agent has all of skills go,python"
    d = pool.route(req("python"), explain=True)
    assert d.chosen == "ok"
    assert excluded(d) == {
        "ok": None,
        "ejected": "ejected",
        "sick": "unhealthy",
        "open": "breaker open",
        "trial-out": "half-open trial in use",
        "full": "at capacity (1/1)",
        "broke": "over budget",
        "gopher": "missing skills: python",
        "polyglot": "missing skills: python",
    }
    assert (d.matched, d.eligible) == (7, 1)


def test_filters_apply_in_order_and_the_first_one_names_the_exclusion() -> None:
    everything = cand(
        "x", ejected=True, healthy=False, breaker="open", in_flight=1, over_budget=True
    )
    pool = CandidatePool([everything, cand("y")], panic_threshold=0)
    assert excluded(pool.route(req("python"), explain=True))["x"] == "ejected"
    pool.set_health("x", ejected=False)
    assert excluded(pool.route(req("python"), explain=True))["x"] == "unhealthy"
    pool.set_health("x", healthy=True)
    assert excluded(pool.route(req("python"), explain=True))["x"] == "breaker open"
    pool.set_breaker("x", "closed")
    assert excluded(pool.route(req("python"), explain=True))["x"] == "at capacity (1/1)"
    pool.set_in_flight("x", 0)
    assert excluded(pool.route(req("python"), explain=True))["x"] == "over budget"
    pool.set_budget("x", False)
    assert excluded(pool.route(req("python"), explain=True, reserve=False))["x"] is None


def test_missing_skills_lists_only_the_missing_ones() -> None:
    pool = CandidatePool([cand("a", skills=frozenset({"python", "go"})), cand("b")])
    d = pool.route(req("python", "go", "sql"), explain=True)
    assert d.reason == "no agent has skills sql"
    assert excluded(d) == {"a": "missing skills: sql", "b": "missing skills: go,sql"}


# --- no one to route to -----------------------------------------------------------------------


def test_a_required_runtime_leaves_out_agents_of_other_runtimes() -> None:
    pool = CandidatePool(
        [
            cand("pi-1", runtime="pi"),
            cand("shell-1", runtime="shell", skills=frozenset({"go"})),
            cand("shell-2", runtime="shell", in_flight=1),
        ],
        panic_threshold=0,
    )
    d = pool.route(req(runtime="shell"), explain=True)
    assert d.chosen == "shell-1" and d.matched == 2
    assert excluded(d) == {
        "shell-1": None,
        "shell-2": "at capacity (1/1)",
        "pi-1": "runtime pi, not shell",
    }
    assert pool.route(req(runtime="native")).reason == (
        "no agent of runtime native (runtimes here: pi, shell)"
    )
    # Skills are looked for among the agents of that runtime only.
    assert pool.route(req("python", runtime="pi")).chosen == "pi-1"
    d = pool.route(req("rust", "go", runtime="shell"), reserve=False)
    assert d.reason == "no shell agent has skills rust"
    # An agent's runtime can change in place (the cached match is dropped).
    pool.upsert(cand("pi-1", runtime="shell"))
    assert pool.route(req("python", runtime="pi")).chosen is None
    assert pool.route(req("python", runtime="shell"), reserve=False).chosen == "pi-1"


def test_empty_pool() -> None:
    d = CandidatePool().route(req("python"), explain=True)
    assert (d.chosen, d.reason, d.candidates) == (None, "no candidates in the pool", [])


def test_no_agent_has_the_skills() -> None:
    pool = CandidatePool([cand("a"), cand("b", skills=frozenset({"go"}))])
    d = pool.route(req("python", "rust", "elixir"))
    assert d.chosen is None
    assert d.reason == "no agent has skills elixir,rust"
    assert d.matched == 0


def test_all_at_capacity() -> None:
    pool = CandidatePool([cand(x, in_flight=1) for x in "abc"])
    d = pool.route(req("python"))
    assert (d.chosen, d.reason) == (None, "all 3 candidates at capacity")
    pool.remove("a")
    pool.remove("b")
    assert pool.route(req("python")).reason == "the only candidate is at capacity"


def test_mixed_exclusions_are_counted() -> None:
    pool = CandidatePool(
        [cand("a", in_flight=1), cand("b", in_flight=1), cand("c", over_budget=True)]
    )
    d = pool.route(req("python"))
    assert d.reason == "no eligible agent among 3 candidates: 2 at capacity, 1 over budget"


def test_no_skills_required_matches_everyone() -> None:
    pool = CandidatePool([cand("a", skills=frozenset()), cand("b")], strategy="load-balanced")
    d = pool.route(req())
    assert (d.chosen, d.matched, d.eligible) == ("a", 2, 2)


# --- panic mode ------------------------------------------------------------------------


def test_panic_ignores_health_when_too_few_are_healthy() -> None:
    pool = CandidatePool(
        [
            cand("a", healthy=False),
            cand("b", ejected=True),
            cand("c", healthy=False),
            cand("d", in_flight=1),  # the only healthy one is busy
        ],
        strategy="load-balanced",
    )
    d = pool.route(req("python"), explain=True)
    assert d.panic is True
    assert d.chosen == "a"
    assert "panic: 1 of 4 healthy (< 50%), health and ejection ignored" in d.reason
    assert excluded(d) == {"a": None, "b": None, "c": None, "d": "at capacity (1/1)"}


def test_panic_never_lifts_capacity_budget_or_open_breakers() -> None:
    pool = CandidatePool(
        [
            cand("a", healthy=False, in_flight=1),
            cand("b", ejected=True, over_budget=True),
            cand("c", healthy=False, breaker="open"),
            cand("d", breaker="half_open", trial_available=False),
        ]
    )
    d = pool.route(req("python"), explain=True)
    assert d.panic is True and d.chosen is None
    assert d.reason.startswith(
        "no eligible agent among 4 candidates: 1 breaker open, 1 half-open trial in use,"
        " 1 at capacity, 1 over budget"
    )
    assert "panic" in d.reason


def test_no_panic_at_or_above_the_threshold_and_zero_disables_it() -> None:
    pool = CandidatePool([cand("a", healthy=False), cand("b", in_flight=1)])
    d = pool.route(req("python"))
    assert (d.panic, d.chosen) == (False, None)  # 1 of 2 healthy is not below 50 %
    pool.upsert(cand("c", healthy=False))
    d = pool.route(req("python"))
    assert (d.panic, d.chosen) in ((True, "a"), (True, "c"))
    pool.panic_threshold = 0
    d = pool.route(req("python"))
    assert (d.panic, d.chosen, d.reason) == (
        False,
        None,
        "no eligible agent among 3 candidates: 2 unhealthy, 1 at capacity",
    )


def test_panic_threshold_must_be_a_fraction() -> None:
    with pytest.raises(RouterError):
        CandidatePool(panic_threshold=1.5)
    with pytest.raises(ValueError):
        CandidatePool().panic_threshold = -0.1


def test_panic_counts_only_the_skill_matched_candidates() -> None:
    pool = CandidatePool(
        [cand("py"), cand("go1", skills=frozenset({"go"}), healthy=False)]
        + [cand(f"go{i}", skills=frozenset({"go"}), healthy=False) for i in range(2, 5)]
    )
    assert pool.route(req("python")).panic is False
    assert pool.route(req("go")).panic is True


# --- half-open breakers and booking --------------------------------------------------------


def test_half_open_agent_gets_exactly_one_trial_at_a_time() -> None:
    pool = CandidatePool(
        [cand("probe", breaker="half_open", trial_available=True, capacity=5), cand("z")],
        strategy="load-balanced",
    )
    first = pool.route(req("python", task_id="t1"), explain=True)
    assert first.chosen == "probe"
    second = pool.route(req("python", task_id="t2"), explain=True)
    assert second.chosen == "z"
    assert excluded(second)["probe"] == "half-open trial in use"
    third = pool.route(req("python", task_id="t3"))
    assert third.chosen is None  # z is full (capacity 1) and the trial is out
    pool.release("probe")  # the trial task was never sent: the trial is back
    assert pool.route(req("python", task_id="t4")).chosen == "probe"
    pool.set_breaker("probe", "closed")
    assert pool.get("probe").trial_available is False
    assert pool.route(req("python", task_id="t5")).chosen == "probe"


def test_entering_half_open_hands_out_one_trial() -> None:
    pool = CandidatePool([cand("a", breaker="open")])
    assert pool.route(req("python")).chosen is None
    pool.set_breaker("a", "half_open")
    assert pool.get("a").trial_available is True
    assert pool.route(req("python")).chosen == "a"
    pool.set_in_flight("a", 0)
    pool.set_breaker("a", "half_open")  # still half-open: the trial stays taken
    assert pool.route(req("python")).reason == "the only candidate is half-open trial in use"
    with pytest.raises(RouterError):
        pool.set_breaker("a", "ajar")  # type: ignore[arg-type]


def test_route_books_the_agent_unless_told_not_to() -> None:
    pool = CandidatePool([cand("a", capacity=2)])
    assert pool.route(req("python"), reserve=False).chosen == "a"
    assert pool.get("a").in_flight == 0
    assert pool.route(req("python")).chosen == "a"
    assert pool.route(req("python")).chosen == "a"
    assert pool.get("a").in_flight == 2
    assert pool.route(req("python")).chosen is None
    pool.set_in_flight("a", 0)  # the lease table says: all done
    assert pool.route(req("python")).chosen == "a"


def test_in_flight_is_never_negative() -> None:
    pool = CandidatePool([cand("a")])
    with pytest.raises(ValueError, match="in_flight -1 < 0"):
        pool.set_in_flight("a", -1)
    with pytest.raises(ValueError, match="no task in flight"):
        pool.release("a")
    with pytest.raises(ValueError):
        pool.upsert(cand("b", in_flight=-2))
    assert pool.get("a").in_flight == 0


def test_bad_candidates_are_rejected() -> None:
    pool = CandidatePool()
    for bad in (
        cand("a", capacity=-1),
        cand("a", weight=0),
        cand("a", success_rate=1.5),
        cand("a", cost_per_task=-0.1),
        cand("a", latency_s=float("nan")),
        cand("a", breaker="shut"),
        cand(""),
    ):
        with pytest.raises(RouterError):
            pool.upsert(bad)
    assert len(pool) == 0
    with pytest.raises(KeyError):
        pool.set_in_flight("ghost", 1)
    with pytest.raises(KeyError):
        pool.remove("ghost")
    assert pool.discard("ghost") is False


# --- strategies at run time ----------------------------------------------------------------


def test_strategy_can_change_at_run_time_and_per_request() -> None:
    pool = CandidatePool(
        [
            cand("cheap", cost_per_task=0.01, latency_s=60.0, capacity=3),
            cand("fast", cost_per_task=0.50, latency_s=5.0, capacity=3),
        ],
        strategy="cost",
    )
    assert pool.route(req("python"), reserve=False).chosen == "cheap"
    pool.strategy = "speed"
    assert pool.strategy == "speed"
    d = pool.route(req("python"), reserve=False)
    assert (d.strategy, d.chosen) == ("speed", "fast")
    d = pool.route(req("python", strategy="cost"), reserve=False)
    assert (d.strategy, d.chosen) == ("cost", "cheap")
    assert pool.strategy == "speed"


def test_unknown_strategy_is_a_clear_error() -> None:
    pool = CandidatePool([cand("a")])
    with pytest.raises(UnknownStrategyError, match=r"unknown routing strategy 'fastest'.*known: "):
        pool.strategy = "fastest"
    with pytest.raises(UnknownStrategyError, match="balanced, consistent-hash, cost"):
        pool.route(req("python", strategy="fastest"))
    with pytest.raises(UnknownStrategyError):
        CandidatePool(strategy="nope")
    assert pool.strategy == "balanced"


# --- explain -------------------------------------------------------------------------------


def test_explain_lists_every_candidate_chosen_first_then_by_score() -> None:
    pool = CandidatePool(
        [
            cand("b", cost_per_task=0.3),
            cand("a", cost_per_task=0.2),
            cand("d", cost_per_task=0.1, healthy=False),
            cand("c", cost_per_task=0.1),
            cand("e", cost_per_task=None),
            cand("f", skills=frozenset({"go"})),
        ],
        strategy="cost",
        panic_threshold=0,
    )
    d = pool.route(req("python"), explain=True)
    assert d.chosen == "c"
    assert d.candidates is not None
    assert [c.agent_id for c in d.candidates] == ["c", "a", "b", "e", "d", "f"]
    scores = [c.score for c in d.candidates]
    assert scores[:4] == pytest.approx([1.0, 0.5, 1 / 3, 0.0])
    assert scores[4:] == [None, None]
    assert d.candidates[0].parts == {"cost_usd": 0.1}
    assert d.candidates[3].parts == {}  # unknown cost is left out, not NaN
    json.dumps(d.to_dict())  # ready for the API and the audit log


def test_fast_path_has_no_candidates_and_times_itself() -> None:
    pool = CandidatePool([cand("a")])
    d = pool.route(req("python"))
    assert d.candidates is None
    assert d.elapsed_us > 0
    assert d.reason == "balanced: 1 of 1 candidates eligible"


def test_explain_does_not_change_the_choice() -> None:
    for strategy in ("round-robin", "weighted", "balanced", "consistent-hash"):
        agents = [cand(f"a{i}", capacity=9, weight=float(i + 1)) for i in range(5)]
        p1 = CandidatePool(agents, strategy=strategy)
        p2 = CandidatePool(agents, strategy=strategy)
        for i in range(20):
            r = req("python", task_id=f"t{i}")
            assert p1.route(r).chosen == p2.route(r, explain=True).chosen, strategy


# --- pool state ----------------------------------------------------------------------------


def test_upsert_updates_skills_in_place_and_remove_forgets() -> None:
    pool = CandidatePool([cand("a"), cand("b")], strategy="load-balanced")
    assert pool.route(req("go")).chosen is None
    pool.upsert(cand("b", skills=frozenset({"python", "go"})))
    assert pool.route(req("go")).chosen == "b"
    pool.upsert(cand("b", skills=frozenset({"python"})))
    d = pool.route(req("go"))
    assert (d.chosen, d.reason) == (None, "no agent has skills go")
    pool.remove("a")
    assert "a" not in pool and len(pool) == 1
    assert pool.route(req("python")).chosen == "b"


def test_joins_are_applied_lazily_or_on_refresh() -> None:
    pool = CandidatePool([cand("b")], strategy="load-balanced")
    pool.upsert(cand("a"))
    pool.set_in_flight("a", 1)  # a pending join can be updated before the rebuild
    pool.refresh()
    assert pool._columns().ids == ["a", "b"]
    assert pool.route(req("python")).chosen == "b"


def test_the_pool_keeps_its_own_copy() -> None:
    c = cand("a")
    pool = CandidatePool([c])
    c.healthy = False
    c.in_flight = 7
    assert pool.get("a").healthy is True
    got = pool.get("a")
    got.in_flight = 3
    assert pool.get("a").in_flight == 0


def test_many_skills_span_several_mask_words() -> None:
    skills = [f"s{i:03d}" for i in range(150)]
    pool = CandidatePool(
        [cand(f"a{i}", skills=frozenset(skills[i : i + 3])) for i in range(148)],
        strategy="load-balanced",
    )
    assert pool.route(req("s140", "s141")).chosen == "a139"
    assert pool.route(req("s001", "s149")).chosen is None
    # New skills beyond the spare bits force a rebuild, transparently.
    pool.upsert(cand("a0", skills=frozenset(f"new{i}" for i in range(200))))
    assert pool.route(req("new7", "new199")).chosen == "a0"
    assert pool.route(req("s000")).chosen is None


def test_random_operations_keep_the_columns_consistent() -> None:
    rng = random.Random(3)
    pool = CandidatePool(strategy="load-balanced")
    skills = ["python", "go", "sql", "docs"]
    for step in range(2000):
        op = rng.random()
        agent_id = f"a{rng.randrange(25):02d}"
        if op < 0.1 or agent_id not in pool:
            pool.upsert(
                cand(agent_id, skills=frozenset(rng.sample(skills, rng.randint(1, 3))),
                     capacity=rng.randint(0, 3), healthy=rng.random() > 0.2)
            )  # fmt: skip
        elif op < 0.15:
            pool.remove(agent_id)
        elif op < 0.35:
            pool.set_in_flight(agent_id, rng.randint(0, 3))
        elif op < 0.45:
            pool.set_health(agent_id, healthy=rng.random() > 0.3, ejected=rng.random() < 0.1)
        elif op < 0.55:
            pool.set_breaker(agent_id, rng.choice(["closed", "open", "half_open"]))
        elif op < 0.6:
            pool.set_budget(agent_id, rng.random() < 0.2)
        elif op < 0.7:
            pool.set_stats(agent_id, latency_s=rng.uniform(1, 9), success_rate=rng.random())
        else:
            need = frozenset(rng.sample(skills, rng.randint(0, 2)))
            d = pool.route(RouteRequest(f"t{step}", need), explain=rng.random() < 0.2)
            if d.chosen is not None:
                assert need <= pool.get(d.chosen).skills
        # The columns agree with the candidate objects, row by row.
        cols = pool._columns()
        assert cols.ids == sorted(c.agent_id for c in pool.candidates())
        for i, c in enumerate(pool.candidates()):
            assert cols.in_flight[i] == c.in_flight
            assert cols.ok[i] == (hard_filter(c) == 0)
            assert cols.live[i] == (soft_filter(c) == 0)


@dataclass
class _Task:
    """Only what ``for_task`` reads (``core.models.Task`` has the same three fields)."""

    id: str
    skills: list[str]
    runtime: str | None = None


def test_request_from_a_task() -> None:
    r = RouteRequest.for_task(_Task("task-1", ["python", "go"], "shell"), strategy="cost")
    assert (r.task_id, r.skills, r.key, r.strategy, r.runtime) == (
        "task-1",
        frozenset({"python", "go"}),
        None,
        "cost",
        "shell",
    )


# --- the benchmark -------------------------------------------------------------------------


def test_bench_route_runs_and_reports() -> None:
    r = bench_route(20, decisions=300, strategy="least-connections")
    assert isinstance(r, RouteBench)
    assert (r.agents, r.strategy, r.decisions) == (20, "least-connections", 300)
    assert 0 < r.p50_us <= r.p99_us <= r.max_us
    assert 0 < r.routed_share <= 1
