"""Columnar state of a candidate pool: one numpy array per field, rows sorted by agent id.

Strategies read these arrays and never write them (except their own state). Rows are
sorted by agent id so that "lowest id" tie-breaks are a plain ``argmax`` (first
maximum) and round-robin has a stable order. Adding or removing an agent re-sorts, so
it is done in one batch (``rebuild``) rather than per insert; per-agent changes
(in-flight, health, stats) write one row in place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.federation.routing.types import Candidate

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
I8 = NDArray[np.int8]
BoolA = NDArray[np.bool_]

# Beta(1, 1) prior on success: (successes + 1) / (n + 2), so that one success out of one
# (0.67) ranks below 99 out of 100 (0.98). An agent without data sits at the prior mean.
PRIOR_SUCCESSES = 1.0
PRIOR_FAILURES = 1.0

_WORD = 64
# Below every real key but finite, so "unknown" still beats "not eligible" (-inf).
UNKNOWN_KEY = -1e300
# Added to cost and latency before taking ratios, so that a free (0 USD) or instant
# agent does not divide by zero; small enough not to change any real ranking.
COST_EPS_USD = 1e-6
LATENCY_EPS_S = 1e-3
# Rows of Columns.features, in this order.
FEATURE_LOAD = 0  # in_flight / capacity (1 when capacity is 0)
FEATURE_INV_COST = 1  # 1 / (cost + eps); 0 when unknown
FEATURE_INV_LATENCY = 2  # 1 / (latency + eps); 0 when unknown
FEATURE_RELIABILITY = 3  # smoothed success
FEATURE_COST_UNKNOWN = 4  # 1.0 when the cost is unknown
FEATURE_LATENCY_UNKNOWN = 5  # 1.0 when the latency is unknown
N_FEATURES = 6


def agent_hash(agent_id: str) -> int:
    """A stable 64-bit hash of an agent id (rendezvous hashing needs process-stable)."""
    return int.from_bytes(hashlib.blake2b(agent_id.encode(), digest_size=8).digest(), "little")


def smoothed_success(success_rate: float | None, completed: int) -> float:
    if success_rate is None:
        completed = 0
        success_rate = 0.0
    prior = PRIOR_SUCCESSES + PRIOR_FAILURES
    return (success_rate * completed + PRIOR_SUCCESSES) / (completed + prior)


# The filters, in the order they apply; a row's code is the first that excludes it.
F_NONE, F_EJECTED, F_UNHEALTHY, F_BREAKER_OPEN, F_TRIAL_IN_USE, F_AT_CAPACITY, F_OVER_BUDGET = (
    range(7)
)
FILTER_NAMES = (
    "",
    "ejected",
    "unhealthy",
    "breaker open",
    "half-open trial in use",
    "at capacity",
    "over budget",
)


def soft_filter(c: Candidate) -> int:
    """Health and ejection: the filters that panic mode lifts (F_NONE if it passes)."""
    if c.ejected:
        return F_EJECTED
    if not c.healthy:
        return F_UNHEALTHY
    return F_NONE


def hard_filter(c: Candidate) -> int:
    """Breaker, capacity, budget: the filters that hold even in panic mode."""
    if c.breaker == "open":
        return F_BREAKER_OPEN
    if c.breaker == "half_open" and not c.trial_available:
        return F_TRIAL_IN_USE
    if c.in_flight >= c.capacity:
        return F_AT_CAPACITY
    if c.over_budget:
        return F_OVER_BUDGET
    return F_NONE


@dataclass(slots=True)
class SkillView:
    """The candidates that have every skill of one required set, and the required
    runtime if any (cached per set and runtime).

    ``cache`` is free for strategies to keep per-set values in (e.g. normalised scores);
    the view, and so its cache, is dropped when rows move or skills change."""

    skills: frozenset[str]
    match: BoolA
    n_match: int
    layout_version: int
    runtime: str | None = None
    matchf: F64 = field(init=False)  # match as 0.0 / 1.0, for products
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matchf = self.match.astype(np.float64)

    def cached(self, name: str, stats_version: int, make: Callable[[], Any]) -> Any:
        """A per-skill-set value that holds until the pool's stats change."""
        hit = self.cache.get(name)
        if hit is not None and hit[0] == stats_version:
            return hit[1]
        value = make()
        self.cache[name] = (stats_version, value)
        return value


class Columns:
    """The arrays. ``layout_version`` changes when rows move or an agent's skills change
    (the owner bumps it then); ``stats_version`` counts writes of cost, latency, success
    or weight (a strategy may cache what it derives from them until either changes)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.skill_bit: dict[str, int] = {}
        self.words = 1
        self.layout_version = 0
        self.stats_version = 0
        self._best: dict[int, tuple[float, int]] = {}  # feature → (best value, its row)
        self._best_stale = True
        self.rebuild([])

    @property
    def n(self) -> int:
        return len(self.ids)

    def rebuild(self, cands: Iterable[Candidate]) -> None:
        rows = sorted(cands, key=lambda c: c.agent_id)
        n = len(rows)
        self.ids = [c.agent_id for c in rows]
        self.index = {a: i for i, a in enumerate(self.ids)}
        every = sorted({s for c in rows for s in c.skills})
        self.skill_bit = {s: i for i, s in enumerate(every)}
        # One spare word so that a few new skills can be added in place.
        self.words = len(every) // _WORD + 1
        self.masks: list[U64] = [np.zeros(n, np.uint64) for _ in range(self.words)]
        self.nskills: I64 = np.zeros(n, np.int64)
        self.runtime_code: dict[str, int] = {}  # runtime name -> its code in ``runtimes``
        self.runtimes: I64 = np.zeros(n, np.int64)
        self.in_flight: I64 = np.zeros(n, np.int64)
        self.capacity: I64 = np.zeros(n, np.int64)
        # Rows of one matrix so that a weighted sum of them is one matrix-vector product
        # (the balanced strategy). inv_* are "higher is better", and a ratio to the best
        # is one division.
        self.features: F64 = np.zeros((N_FEATURES, n), np.float64)
        self.load: F64 = self.features[FEATURE_LOAD]
        self.inv_cost: F64 = self.features[FEATURE_INV_COST]
        self.inv_latency: F64 = self.features[FEATURE_INV_LATENCY]
        self.reliability: F64 = self.features[FEATURE_RELIABILITY]
        self.ok: BoolA = np.zeros(n, np.bool_)  # passes the hard filters
        self.live: BoolA = np.zeros(n, np.bool_)  # passes the soft filters
        self.code: I8 = np.zeros(n, np.int8)  # first filter that excludes the row
        self.hard_code: I8 = np.zeros(n, np.int8)  # the same, soft filters lifted
        self.cost: F64 = np.full(n, np.nan)  # NaN: unknown
        self.latency: F64 = np.full(n, np.nan)
        # -cost and -latency, unknown at UNKNOWN_KEY: "lowest first" as an argmax key.
        self.cost_key: F64 = np.full(n, UNKNOWN_KEY)
        self.latency_key: F64 = np.full(n, UNKNOWN_KEY)
        self.success: F64 = np.full(n, np.nan)
        self.completed: I64 = np.zeros(n, np.int64)
        self.weight: F64 = np.ones(n, np.float64)
        self.hrw: U64 = np.array([agent_hash(a) for a in self.ids], dtype=np.uint64)
        for i, c in enumerate(rows):
            self.write(i, c)
        self._best_stale = True
        self.layout_version += 1

    def fits_skills(self, skills: frozenset[str]) -> bool:
        """True when every skill already has a bit (else the caller must rebuild)."""
        spare = self.words * _WORD - len(self.skill_bit)
        return sum(1 for s in skills if s not in self.skill_bit) <= spare

    def write(self, i: int, c: Candidate) -> None:
        """Write every field of one row (the caller checked fits_skills)."""
        words = [0] * self.words
        for s in c.skills:
            bit = self.skill_bit.get(s)
            if bit is None:
                bit = self.skill_bit[s] = len(self.skill_bit)
            words[bit // _WORD] |= 1 << (bit % _WORD)
        for w in range(self.words):
            self.masks[w][i] = words[w]
        self.nskills[i] = len(c.skills)
        self.runtimes[i] = self.runtime_code.setdefault(c.runtime, len(self.runtime_code))
        self.write_load(i, c)
        self.write_health(i, c)
        self.write_stats(i, c)

    def write_load(self, i: int, c: Candidate) -> None:
        self.in_flight[i] = c.in_flight
        self.capacity[i] = c.capacity
        self.load[i] = c.in_flight / c.capacity if c.capacity > 0 else 1.0
        self.write_health(i, c)

    def write_health(self, i: int, c: Candidate) -> None:
        """The filter columns (capacity is among them: write_load calls this)."""
        soft, hard = soft_filter(c), hard_filter(c)
        self.ok[i] = hard == F_NONE
        self.live[i] = soft == F_NONE
        self.code[i] = soft or hard
        self.hard_code[i] = hard

    def write_stats(self, i: int, c: Candidate) -> None:
        cost, lat = c.cost_per_task, c.latency_s
        self.cost[i] = np.nan if cost is None else cost
        self.latency[i] = np.nan if lat is None else lat
        self.cost_key[i] = UNKNOWN_KEY if cost is None else -cost
        self.latency_key[i] = UNKNOWN_KEY if lat is None else -lat
        self.inv_cost[i] = 0.0 if cost is None else 1.0 / (cost + COST_EPS_USD)
        self.inv_latency[i] = 0.0 if lat is None else 1.0 / (lat + LATENCY_EPS_S)
        self.features[FEATURE_COST_UNKNOWN, i] = cost is None
        self.features[FEATURE_LATENCY_UNKNOWN, i] = lat is None
        self.success[i] = np.nan if c.success_rate is None else c.success_rate
        self.completed[i] = c.completed
        self.reliability[i] = smoothed_success(c.success_rate, c.completed)
        self.weight[i] = c.weight
        self.stats_version += 1
        self._track_best(i)

    def _track_best(self, i: int) -> None:
        """Keep the pool's best inv_cost / inv_latency current in O(1): a rescan is only
        needed when the row holding a best got worse."""
        if self._best_stale:
            return
        for f in (FEATURE_INV_COST, FEATURE_INV_LATENCY):
            v = float(self.features[f, i])
            best, row = self._best[f]
            if v > best:
                self._best[f] = (v, i)
            elif i == row and v < best:
                self._best_stale = True

    def best(self, feature: int) -> float:
        """The pool's highest value of an inv_* feature (0 when nobody's is known)."""
        if self._best_stale:
            for f in (FEATURE_INV_COST, FEATURE_INV_LATENCY):
                row = int(self.features[f].argmax()) if self.n else -1
                self._best[f] = (float(self.features[f, row]) if self.n else 0.0, row)
            self._best_stale = False
        return self._best[feature][0]

    def required_words(self, skills: frozenset[str]) -> list[tuple[int, int]] | None:
        """(word, bits) pairs for a skill set; None if some skill has no bit (no agent)."""
        words: dict[int, int] = {}
        for s in skills:
            bit = self.skill_bit.get(s)
            if bit is None:
                return None
            words[bit // _WORD] = words.get(bit // _WORD, 0) | (1 << (bit % _WORD))
        return sorted(words.items())

    def held(self, skill: str, rows: BoolA | None = None) -> bool:
        """Does any agent (of ``rows``, if given) have ``skill``? (Bits are only
        reclaimed by a rebuild.)"""
        bit = self.skill_bit.get(skill)
        if bit is None:
            return False
        has = (self.masks[bit // _WORD] & np.uint64(1 << (bit % _WORD))) != 0
        return bool((has if rows is None else has & rows).any())

    def runtime_rows(self, runtime: str) -> BoolA:
        """The rows of agents on ``runtime``."""
        code = self.runtime_code.get(runtime)
        if code is None:
            return np.zeros(self.n, np.bool_)
        out: BoolA = self.runtimes == code
        return out

    def runtime_names(self) -> list[str]:
        """The runtimes of the pool's agents, sorted."""
        present = set(np.unique(self.runtimes).tolist()) if self.n else set()
        return sorted(r for r, code in self.runtime_code.items() if code in present)

    def match(self, skills: frozenset[str], runtime: str | None = None) -> BoolA:
        req = self.required_words(skills)
        if req is None:
            return np.zeros(self.n, np.bool_)
        out: BoolA = np.ones(self.n, np.bool_) if runtime is None else self.runtime_rows(runtime)
        for w, bits in req:
            b = np.uint64(bits)
            out &= (self.masks[w] & b) == b
        return out
