"""Routing strategies: how the router picks one agent among the eligible candidates.

The router (``core.federation.routing.pool``) has already dropped the candidates that lack a
skill or fail a filter; a strategy only ranks what is left. Every strategy works on the
pool's columnar arrays (``Columns``: one numpy array per field, rows sorted by agent
id), so a pick over 1,000 agents is a handful of vector operations.

Built-in strategies (``strategy_names()`` lists them):

- ``skill-match``: the most specific agent: fewest skills beyond the required ones;
  ties go to fewer tasks in flight, then the lowest agent id.
- ``cost``: lowest expected cost per task; unknown cost sorts last.
- ``speed``: lowest EWMA task latency; unknown latency sorts last.
- ``reliability``: highest success rate smoothed with a Beta(1, 1) prior,
  ``(rate * n + 1) / (n + 2)``, so that 1/1 (0.67) ranks below 99/100 (0.98); an
  agent without data scores the prior mean 0.5.
- ``load-balanced``: lowest ``in_flight / capacity``; ties go to the lowest agent id.
- ``balanced`` (default): a weighted sum of four scores in [0, 1], 1 being best::

      score = (w_load * (1 - in_flight / capacity)
               + w_latency * (best_latency + 1e-3) / (latency + 1e-3)
               + w_cost * (best_cost + 1e-6) / (cost + 1e-6)
               + w_reliability * smoothed_success) / (w_load + w_latency + w_cost + w_reliability)

  ``best_*`` is the lowest known value in the pool (every agent of the swarm, busy or
  not, so a score does not jump when a rival gets busy). The ratio keeps the scale:
  twice the best latency scores 0.5 whatever the units. A
  missing latency or cost scores 0.5, the neutral middle; so does reliability without
  data (the prior mean). Default weights: load 0.4, latency 0.2, cost 0.2, reliability
  0.2; ``BalancedStrategy(weights={...})`` overrides some or all (they are normalised
  to sum to 1, so the score stays in [0, 1]). Ties go to the lowest agent id.
- ``round-robin``: a cursor (the last agent id chosen) walks the eligible agents in id
  order; the cursor survives agents coming and going.
- ``least-connections``: Envoy's power of two choices: two distinct eligible agents at
  random, the one with fewer tasks in flight wins, a random pick on a tie.
- ``weighted``: nginx's smooth weighted round-robin on ``Candidate.weight``
  (deterministic; weights 5, 1, 1 give a a b a c a a).
- ``consistent-hash``: rendezvous (highest random weight) hashing of the request key
  over the eligible agent ids: when an agent leaves, only its keys move.

Adding a strategy: subclass ``ScoreStrategy`` (rank by a score, the pick is the highest;
ties go to the lowest agent id) or ``Strategy`` (any rule, e.g. with state), give it a
unique ``name`` and decorate it with ``@register_strategy``; import the module before the
pool routes with that name. Scores are "higher is better". ``choose`` must be fast and
return the row of an eligible candidate; ``explain`` may be slow and must agree with it::

    @register_strategy
    class Newest(ScoreStrategy):
        name = "newest"  # fewest completed tasks first

        def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
            return -cols.completed.astype(np.float64)

        def explain(self, cols, view, rows, req, chosen):
            n = cols.completed[rows].astype(np.float64)
            return -n, {"completed": n}

Each pool makes its own instance of a strategy (round-robin cursors and weighted state
are per pool). Strategies read the arrays and never write them.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import ClassVar, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from core.federation.routing.columns import (
    F64,
    FEATURE_COST_UNKNOWN,
    FEATURE_INV_COST,
    FEATURE_INV_LATENCY,
    FEATURE_LATENCY_UNKNOWN,
    FEATURE_LOAD,
    FEATURE_RELIABILITY,
    N_FEATURES,
    U64,
    BoolA,
    Columns,
    SkillView,
)
from core.federation.routing.types import RouteRequest, UnknownStrategyError

Rows = NDArray[np.intp]
Explanation = tuple[F64, dict[str, F64]]


class Strategy(ABC):
    """Picks one row among the eligible ones. One instance per pool."""

    name: ClassVar[str]

    def bind(self, rng: random.Random) -> None:  # noqa: B027 - optional hook
        """Called when a pool adopts the strategy; gives it the pool's random source."""

    @abstractmethod
    def choose(
        self, cols: Columns, view: SkillView, elig: BoolA, n_elig: int, req: RouteRequest
    ) -> int:
        """Return the row of the chosen candidate. ``elig`` has ``n_elig`` >= 1 True rows."""

    @abstractmethod
    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        """Scores (higher is better) and their parts for ``rows`` (the eligible rows, in
        id order), as they stood when ``choose`` picked ``chosen`` (it was just called)."""


class ScoreStrategy(Strategy):
    """A strategy that ranks by one score: the highest wins, ties go to the lowest id."""

    @abstractmethod
    def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
        """A score per row (all rows), finite on eligible rows, higher is better."""

    def choose(
        self, cols: Columns, view: SkillView, elig: BoolA, n_elig: int, req: RouteRequest
    ) -> int:
        # argmax returns the first maximum: rows are in id order, so ties → lowest id.
        return int(np.where(elig, self.key(cols, view, req), -np.inf).argmax())


_S = TypeVar("_S", bound=type[Strategy])
_REGISTRY: dict[str, Callable[[], Strategy]] = {}


def register_strategy(cls: _S) -> _S:
    """Class decorator: make a strategy available by its ``name``."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} has no strategy name")
    _REGISTRY[name] = cls
    return cls


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def make_strategy(name: str) -> Strategy:
    """A new instance of a registered strategy; UnknownStrategyError lists the known ones."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownStrategyError(name, strategy_names())
    return factory()


# --- score strategies ----------------------------------------------------------------


@register_strategy
class SkillMatchStrategy(ScoreStrategy):
    name = "skill-match"

    def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
        # in_flight / (in_flight + 1) < 1 ranks below one extra skill: a lexicographic key.
        f = cols.in_flight
        return cast(F64, -(cols.nskills + f / (f + 1.0)))

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        extra = (cols.nskills[rows] - len(req.skills)).astype(np.float64)
        f = cols.in_flight[rows].astype(np.float64)
        return -(extra + f / (f + 1.0)), {"extra_skills": extra, "in_flight": f}


def _ratio_score(values: F64, rows: Rows) -> F64:
    """best / value over ``rows`` (1 = the best); unknown scores 0 (it sorts last)."""
    v = values[rows]
    known = v[~np.isnan(v)]
    if known.size == 0:
        return np.zeros(v.shape)
    best = float(known.min())
    with np.errstate(invalid="ignore", divide="ignore"):
        score: F64 = np.where(v > 0, best / v, 1.0)
    score[np.isnan(v)] = 0.0
    return score


@register_strategy
class CostStrategy(ScoreStrategy):
    name = "cost"

    def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
        return cols.cost_key

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        return _ratio_score(cols.cost, rows), {"cost_usd": cols.cost[rows]}


@register_strategy
class SpeedStrategy(ScoreStrategy):
    name = "speed"

    def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
        return cols.latency_key

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        return _ratio_score(cols.latency, rows), {"latency_s": cols.latency[rows]}


@register_strategy
class ReliabilityStrategy(ScoreStrategy):
    name = "reliability"

    def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
        return cols.reliability

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        return cols.reliability[rows].copy(), {
            "reliability": cols.reliability[rows],
            "success_rate": cols.success[rows],
            "completed": cols.completed[rows].astype(np.float64),
        }


@register_strategy
class LoadBalancedStrategy(ScoreStrategy):
    name = "load-balanced"

    def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
        return -cols.load

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        load = cols.load[rows]
        return 1.0 - load, {"load": load, "in_flight": cols.in_flight[rows].astype(np.float64)}


DEFAULT_WEIGHTS: Mapping[str, float] = {
    "load": 0.4,
    "latency": 0.2,
    "cost": 0.2,
    "reliability": 0.2,
}


@register_strategy
class BalancedStrategy(ScoreStrategy):
    name = "balanced"

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        w = dict(DEFAULT_WEIGHTS)
        if weights:
            unknown = set(weights) - set(DEFAULT_WEIGHTS)
            if unknown:
                raise ValueError(
                    f"unknown balanced weight(s) {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(DEFAULT_WEIGHTS)}"
                )
            w.update(weights)
        if any(not np.isfinite(v) or v < 0 for v in w.values()) or sum(w.values()) <= 0:
            raise ValueError(f"balanced weights must be >= 0 with a positive sum: {w}")
        total = sum(w.values())
        self.weights = {k: v / total for k, v in w.items()}  # normalised: score in [0, 1]

    def _coefficients(self, cols: Columns) -> F64:
        """The score as a weighted sum of the feature rows (FEATURE_* order)."""
        w = self.weights
        best_cost = cols.best(FEATURE_INV_COST)
        best_lat = cols.best(FEATURE_INV_LATENCY)
        coef = np.zeros(N_FEATURES)
        coef[FEATURE_LOAD] = -w["load"]  # + w_load, a constant, added by explain only
        # inv / best = (best_value + eps) / (value + eps); unknown rows have inv 0.
        coef[FEATURE_INV_COST] = w["cost"] / best_cost if best_cost > 0.0 else 0.0
        coef[FEATURE_INV_LATENCY] = w["latency"] / best_lat if best_lat > 0.0 else 0.0
        coef[FEATURE_RELIABILITY] = w["reliability"]
        coef[FEATURE_COST_UNKNOWN] = 0.5 * w["cost"]  # unknown: the neutral middle
        coef[FEATURE_LATENCY_UNKNOWN] = 0.5 * w["latency"]
        return coef

    def key(self, cols: Columns, view: SkillView, req: RouteRequest) -> F64:
        # One matrix-vector product: each numpy call costs about a microsecond however
        # small its arrays, so the fewest calls win.
        key: F64 = self._coefficients(cols) @ cols.features
        return key

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        coef = self._coefficients(cols)
        f = cols.features[:, rows]
        w = self.weights
        parts = {"load": 1.0 - f[FEATURE_LOAD]}
        for name, inv, unknown in (
            ("latency", FEATURE_INV_LATENCY, FEATURE_LATENCY_UNKNOWN),
            ("cost", FEATURE_INV_COST, FEATURE_COST_UNKNOWN),
        ):
            best = cols.best(inv)
            ratio = f[inv] / best if best > 0.0 else np.full(len(rows), 0.5)
            parts[name] = np.where(f[unknown] > 0.0, 0.5, ratio)
        parts["reliability"] = f[FEATURE_RELIABILITY]
        score: F64 = coef @ f + w["load"]
        return score, parts


# --- stateful strategies -------------------------------------------------------------


@register_strategy
class RoundRobinStrategy(Strategy):
    name = "round-robin"

    def __init__(self) -> None:
        self.last: str | None = None  # an id, not a row: rows move when agents come and go

    def choose(
        self, cols: Columns, view: SkillView, elig: BoolA, n_elig: int, req: RouteRequest
    ) -> int:
        rows = np.flatnonzero(elig)
        k = 0
        if self.last is not None:
            start = bisect.bisect_right(cols.ids, self.last)
            k = int(np.searchsorted(rows, start))
            if k == len(rows):
                k = 0
        row = int(rows[k])
        self.last = cols.ids[row]
        return row

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        m = len(rows)
        k = int(np.searchsorted(rows, chosen))
        order = ((np.arange(m) - k) % m).astype(np.float64)  # 0 = chosen, 1 = next...
        return 1.0 - order / m, {"turn": order}


@register_strategy
class LeastConnectionsStrategy(Strategy):
    """Power of two choices (Envoy least-request with equal weights)."""

    name = "least-connections"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._own_rng = rng is not None
        self.rng = rng or random.Random()
        self.sampled: tuple[int, ...] = ()

    def bind(self, rng: random.Random) -> None:
        if not self._own_rng:
            self.rng = rng

    def choose(
        self, cols: Columns, view: SkillView, elig: BoolA, n_elig: int, req: RouteRequest
    ) -> int:
        rows = np.flatnonzero(elig)
        if n_elig == 1:
            self.sampled = (int(rows[0]),)
            return self.sampled[0]
        rng = self.rng
        i = rng.randrange(n_elig)
        j = rng.randrange(n_elig - 1)
        if j >= i:  # two distinct picks without a retry loop
            j += 1
        a, b = int(rows[i]), int(rows[j])
        self.sampled = (a, b)
        fa, fb = cols.in_flight[a], cols.in_flight[b]
        if fa == fb:
            return a if rng.random() < 0.5 else b
        return a if fa < fb else b

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        f = cols.in_flight[rows].astype(np.float64)
        sampled = np.isin(rows, np.array(self.sampled, dtype=np.intp)).astype(np.float64)
        # Sampled agents outrank the rest; among them fewer in flight is better.
        return sampled + 1.0 / (1.0 + f), {"sampled": sampled, "in_flight": f}


@register_strategy
class WeightedStrategy(Strategy):
    """nginx smooth weighted round-robin: each pick, every eligible agent's current
    weight grows by its weight; the largest wins and gives back the eligible total."""

    name = "weighted"

    def __init__(self) -> None:
        self.current: F64 = np.zeros(0)
        self._ids: list[str] = []
        self._layout = -1

    def _sync(self, cols: Columns) -> None:
        if self._layout == cols.layout_version:
            return
        old = dict(zip(self._ids, self.current.tolist(), strict=True))
        self.current = np.array([old.get(a, 0.0) for a in cols.ids], dtype=np.float64)
        self._ids = list(cols.ids)
        self._layout = cols.layout_version

    def choose(
        self, cols: Columns, view: SkillView, elig: BoolA, n_elig: int, req: RouteRequest
    ) -> int:
        self._sync(cols)
        cur = self.current
        grow = cols.weight * elig  # (a where= reduction would be several times slower)
        cur += grow
        row = int(np.where(elig, cur, -np.inf).argmax())
        cur[row] -= grow.sum()
        return row

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        # The value each agent was compared on: the chosen one already gave back the total.
        cur = self.current[rows].copy()
        cur[rows == chosen] += float(cols.weight[rows].sum())
        return cur, {"weight": cols.weight[rows], "current": cur}


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(x: U64) -> U64:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps, as intended)."""
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


@register_strategy
class ConsistentHashStrategy(Strategy):
    """Rendezvous hashing: each (key, agent) pair gets a pseudo-random weight and the
    highest wins, so removing an agent only moves the keys it was winning."""

    name = "consistent-hash"

    def _weights(self, cols: Columns, rows: Rows, req: RouteRequest) -> U64:
        key = req.key if req.key is not None else req.task_id
        h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        return _mix(cols.hrw[rows] ^ np.uint64(h))

    def choose(
        self, cols: Columns, view: SkillView, elig: BoolA, n_elig: int, req: RouteRequest
    ) -> int:
        rows = np.flatnonzero(elig)
        return int(rows[self._weights(cols, rows, req).argmax()])

    def explain(
        self, cols: Columns, view: SkillView, rows: Rows, req: RouteRequest, chosen: int
    ) -> Explanation:
        w = self._weights(cols, rows, req).astype(np.float64) / 2.0**64
        return w, {"hash": w}
