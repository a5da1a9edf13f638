"""The federation router: picks an agent for a queued task, fast and explainably.

Pure and in memory: no store, no engine, no I/O. The caller keeps a ``CandidatePool`` per
swarm up to date (``upsert``, ``remove``, ``set_in_flight``, ``set_health``...) and asks
``pool.route(request)`` for a ``RouteDecision``.

Pipeline (LiteLLM's filter → strategy split, Envoy's panic threshold):

1. Candidates = the agents that have every required skill (and the required runtime,
   if the task names one).
2. Filters, in order; an excluded candidate keeps the name of the first that removed it:
   ``ejected``, ``unhealthy``, ``breaker open``, ``half-open trial in use``,
   ``at capacity (n/c)``, ``over budget``.
3. Panic mode: when the healthy-and-not-ejected share of the candidates is below
   ``panic_threshold`` (default 0.5; 0 disables), health and ejection are ignored so
   the survivors are not crushed; capacity, budget and open breakers always hold.
4. The strategy (``core.federation.routing.strategies``) ranks the eligible candidates.

Reservation: by default ``route`` books the chosen agent at once (in_flight + 1, and a
half-open breaker's single trial is taken) so that the next decision, made before the
lease is written, does not pick the same full agent or send a second trial. The
caller's ``set_in_flight`` (absolute, from the lease table) overrides the count later,
so it cannot drift; ``release`` undoes a booking whose lease was never made.

Speed: the state is columnar (``route_columns``): one numpy array per field and a skill
bitmask per agent; the skill match of a required set is cached until an agent's skills
change, so a decision over 1,000 agents is a few vector operations. ``explain=True``
takes a separate slower path that names every candidate's fate and score parts.

A pool is not thread-safe: use it from one thread (the engine's event loop).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Final

import numpy as np

from core.federation.routing.columns import (
    F_AT_CAPACITY,
    F_NONE,
    FILTER_NAMES,
    BoolA,
    Columns,
    SkillView,
    hard_filter,
    soft_filter,
)
from core.federation.routing.strategies import Strategy, make_strategy, strategy_names
from core.federation.routing.types import (
    BREAKER_STATES,
    BreakerName,
    Candidate,
    RouteDecision,
    RouteRequest,
    RouterError,
    ScoredCandidate,
    UnknownStrategyError,
)
from core.models import DEFAULT_STRATEGY

__all__ = [
    "Candidate",
    "CandidatePool",
    "RouteDecision",
    "RouteRequest",
    "RouterError",
    "ScoredCandidate",
    "UnknownStrategyError",
    "strategy_names",
]

DEFAULT_PANIC_THRESHOLD: Final = 0.5

_VIEW_CACHE_MAX = 4096  # distinct required-skill sets remembered per pool


class _Unset:
    """Marks a keyword not given (None is a value: "unknown")."""


_UNSET: Final = _Unset()


def _first_filter(c: Candidate, panic: bool) -> str | None:
    """The name of the first filter that excludes ``c`` (skills already matched)."""
    code = hard_filter(c) if panic else soft_filter(c) or hard_filter(c)
    if code == F_NONE:
        return None
    if code == F_AT_CAPACITY:
        return f"{FILTER_NAMES[code]} ({c.in_flight}/{c.capacity})"
    return FILTER_NAMES[code]


class CandidatePool:
    """The routing state of one swarm: candidates in columns, a strategy, panic settings."""

    def __init__(
        self,
        candidates: Iterable[Candidate] = (),
        *,
        strategy: str | Strategy = DEFAULT_STRATEGY,
        panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
        rng: random.Random | None = None,
    ) -> None:
        self.panic_threshold = panic_threshold
        self.rng = rng or random.Random()
        self._cands: dict[str, Candidate] = {}
        self._cols = Columns()
        self._dirty = False  # membership changed: the columns need a rebuild
        # Skill matches per (required skills, required runtime).
        self._views: dict[tuple[frozenset[str], str | None], SkillView] = {}
        self._strategies: dict[str, Strategy] = {}
        self._strategy = ""
        self.strategy = strategy
        self.upsert_many(candidates)

    @property
    def panic_threshold(self) -> float:
        """Below this share of healthy candidates, health is ignored; 0 disables panic."""
        return self._panic_threshold

    @panic_threshold.setter
    def panic_threshold(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise RouterError(f"panic_threshold {value} not in [0, 1]")
        self._panic_threshold = value

    # --- strategy ---------------------------------------------------------------------

    @property
    def strategy(self) -> str:
        """The default strategy's name; assign a name or a configured ``Strategy``."""
        return self._strategy

    @strategy.setter
    def strategy(self, value: str | Strategy) -> None:
        self._strategy = self._adopt(value).name

    def _adopt(self, value: str | Strategy) -> Strategy:
        if isinstance(value, Strategy):
            value.bind(self.rng)
            self._strategies[value.name] = value
            return value
        inst = self._strategies.get(value)
        if inst is None:
            inst = make_strategy(value)  # raises UnknownStrategyError
            inst.bind(self.rng)
            self._strategies[value] = inst
        return inst

    # --- membership and state ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._cands)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._cands

    def get(self, agent_id: str) -> Candidate:
        """A copy of the candidate as the router sees it now."""
        return replace(self._cand(agent_id))

    def candidates(self) -> list[Candidate]:
        return [replace(c) for c in sorted(self._cands.values(), key=lambda c: c.agent_id)]

    def upsert(self, candidate: Candidate) -> None:
        """Add an agent or replace everything known about it (the pool keeps a copy)."""
        c = replace(candidate, skills=frozenset(candidate.skills))
        c.validate()
        old = self._cands.get(c.agent_id)
        self._cands[c.agent_id] = c
        if old is None or self._dirty:
            self._dirty = True  # a new row: rows are re-sorted in one batch, lazily
            return
        cols = self._cols
        if old.skills != c.skills:
            if not cols.fits_skills(c.skills):
                self._dirty = True
                return
            cols.layout_version += 1  # cached skill matches are stale
            self._views.clear()
        if old.runtime != c.runtime:
            cols.layout_version += 1  # so are the runtime matches
            self._views.clear()
        cols.write(cols.index[c.agent_id], c)

    def upsert_many(self, candidates: Iterable[Candidate]) -> None:
        for c in candidates:
            self.upsert(c)

    def remove(self, agent_id: str) -> None:
        """Forget an agent; KeyError if unknown."""
        self._cand(agent_id)
        del self._cands[agent_id]
        self._dirty = True

    def discard(self, agent_id: str) -> bool:
        """Forget an agent if known; True if it was."""
        if agent_id not in self._cands:
            return False
        self.remove(agent_id)
        return True

    def set_in_flight(self, agent_id: str, n: int) -> None:
        """The agent's tasks in flight, from the lease table (absolute, never a delta)."""
        if n < 0:
            raise RouterError(f"{agent_id}: in_flight {n} < 0")
        c = self._cand(agent_id)
        c.in_flight = n
        self._write_load(c)

    def release(self, agent_id: str) -> None:
        """Undo one booking made by ``route`` (the lease was never written).

        Gives back a half-open breaker's trial too: only one trial is ever out, so the
        booking released must have been it."""
        c = self._cand(agent_id)
        if c.in_flight <= 0:
            raise RouterError(f"{agent_id}: release with no task in flight")
        c.in_flight -= 1
        if c.breaker == "half_open" and not c.trial_available:
            c.trial_available = True
        self._write_load(c)

    def set_capacity(self, agent_id: str, capacity: int) -> None:
        if capacity < 0:
            raise RouterError(f"{agent_id}: capacity {capacity} < 0")
        c = self._cand(agent_id)
        c.capacity = capacity
        self._write_load(c)

    def set_health(
        self, agent_id: str, *, healthy: bool | None = None, ejected: bool | None = None
    ) -> None:
        c = self._cand(agent_id)
        if healthy is not None:
            c.healthy = healthy
        if ejected is not None:
            c.ejected = ejected
        self._write_health(c)

    def set_breaker(
        self, agent_id: str, state: BreakerName, *, trial_available: bool | None = None
    ) -> None:
        """Set the breaker; entering half-open hands out one trial unless told otherwise."""
        if state not in BREAKER_STATES:
            raise RouterError(f"breaker {state!r} not one of {', '.join(BREAKER_STATES)}")
        c = self._cand(agent_id)
        if trial_available is None:
            trial_available = state == "half_open" and (
                c.breaker != "half_open" or c.trial_available
            )
        c.breaker = state
        c.trial_available = trial_available
        self._write_health(c)

    def set_budget(self, agent_id: str, over_budget: bool) -> None:
        c = self._cand(agent_id)
        c.over_budget = over_budget
        self._write_health(c)

    def set_stats(
        self,
        agent_id: str,
        *,
        cost_per_task: float | _Unset | None = _UNSET,
        latency_s: float | _Unset | None = _UNSET,
        success_rate: float | _Unset | None = _UNSET,
        completed: int | _Unset = _UNSET,
        weight: float | _Unset = _UNSET,
    ) -> None:
        """Update the EWMAs (None means unknown); fields not given keep their value."""
        c = self._cand(agent_id)
        new = replace(c)
        if not isinstance(cost_per_task, _Unset):
            new.cost_per_task = cost_per_task
        if not isinstance(latency_s, _Unset):
            new.latency_s = latency_s
        if not isinstance(success_rate, _Unset):
            new.success_rate = success_rate
        if not isinstance(completed, _Unset):
            new.completed = completed
        if not isinstance(weight, _Unset):
            new.weight = weight
        new.validate()
        self._cands[agent_id] = new
        if not self._dirty:
            self._cols.write_stats(self._cols.index[agent_id], new)

    def _cand(self, agent_id: str) -> Candidate:
        c = self._cands.get(agent_id)
        if c is None:
            raise KeyError(f"no candidate {agent_id!r} in the pool")
        return c

    def _write_load(self, c: Candidate) -> None:
        if not self._dirty:
            self._cols.write_load(self._cols.index[c.agent_id], c)

    def _write_health(self, c: Candidate) -> None:
        if not self._dirty:
            self._cols.write_health(self._cols.index[c.agent_id], c)

    def refresh(self) -> None:
        """Apply pending joins and leaves now (O(n): about 5 ms at 1,000 agents), so that
        the next ``route`` does not pay for them; call it after a batch of changes."""
        self._columns()

    def _columns(self) -> Columns:
        if self._dirty:
            self._cols.rebuild(self._cands.values())
            self._views.clear()
            self._dirty = False
        return self._cols

    def _view(self, cols: Columns, skills: frozenset[str], runtime: str | None) -> SkillView:
        key = (skills, runtime)
        view = self._views.get(key)
        if view is not None and view.layout_version == cols.layout_version:
            return view
        if len(self._views) >= _VIEW_CACHE_MAX:
            self._views.clear()
        match = cols.match(skills, runtime)
        view = SkillView(skills, match, int(np.count_nonzero(match)), cols.layout_version, runtime)
        self._views[key] = view
        return view

    # --- routing ----------------------------------------------------------------------

    def route(
        self, request: RouteRequest, *, explain: bool = False, reserve: bool = True
    ) -> RouteDecision:
        """Choose an agent for ``request``; with ``reserve`` book it (see the module doc)."""
        t0 = time.perf_counter_ns()
        name = request.strategy or self._strategy
        strat = self._strategies.get(name) or self._adopt(name)
        cols = self._columns()
        view = self._view(cols, request.skills, request.runtime)
        n_match = view.n_match
        if n_match == 0:
            d = RouteDecision(request.task_id, name, None, self._no_match_reason(request))
            if explain:
                d.candidates = self._explain(cols, view, request, strat, None, False)
            d.elapsed_us = (time.perf_counter_ns() - t0) / 1000
            return d

        live_match = view.match & cols.live
        panic = False
        threshold = self._panic_threshold
        if threshold > 0.0:
            panic = int(np.count_nonzero(live_match)) < threshold * n_match
        elig: BoolA = (view.match if panic else live_match) & cols.ok
        n_elig = int(np.count_nonzero(elig))

        chosen: int | None = None
        if n_elig:
            chosen = strat.choose(cols, view, elig, n_elig, request)
            agent_id: str | None = cols.ids[chosen]
            reason = f"{name}: {n_elig} of {n_match} candidates eligible"
        else:
            agent_id = None
            reason = self._none_eligible_reason(cols, view, panic)
        if panic:
            healthy = int(np.count_nonzero(live_match))
            reason += (
                f"; panic: {healthy} of {n_match} healthy"
                f" (< {self.panic_threshold:.0%}), health and ejection ignored"
            )
        d = RouteDecision(request.task_id, name, agent_id, reason, panic, 0.0, n_match, n_elig)
        if explain:
            d.candidates = self._explain(cols, view, request, strat, chosen, panic)
        if reserve and agent_id is not None:
            self._book(agent_id)
        d.elapsed_us = (time.perf_counter_ns() - t0) / 1000
        return d

    def _book(self, agent_id: str) -> None:
        c = self._cands[agent_id]
        c.in_flight += 1
        if c.breaker == "half_open":
            c.trial_available = False  # the single trial is out
        i = self._cols.index[agent_id]
        self._cols.write_load(i, c)
        self._cols.write_health(i, c)

    def _no_match_reason(self, request: RouteRequest) -> str:
        if not self._cands:
            return "no candidates in the pool"
        cols = self._cols
        rows = None
        who = "agent"
        if request.runtime is not None:
            rows = cols.runtime_rows(request.runtime)
            if not rows.any():
                here = ", ".join(cols.runtime_names())
                return f"no agent of runtime {request.runtime} (runtimes here: {here})"
            who = f"{request.runtime} agent"
        missing = sorted(s for s in request.skills if not cols.held(s, rows))
        if missing:
            return f"no {who} has skills {','.join(missing)}"
        return f"no {who} has all of skills {','.join(sorted(request.skills))}"

    def _none_eligible_reason(self, cols: Columns, view: SkillView, panic: bool) -> str:
        codes = cols.hard_code if panic else cols.code
        per_code = np.bincount(codes, weights=view.matchf, minlength=len(FILTER_NAMES))
        counts = {
            FILTER_NAMES[f]: int(k) for f, k in enumerate(per_code.tolist()) if k and f != F_NONE
        }
        n = view.n_match
        if len(counts) == 1:
            (why,) = counts
            return f"the only candidate is {why}" if n == 1 else f"all {n} candidates {why}"
        detail = ", ".join(f"{k} {why}" for why, k in counts.items())
        return f"no eligible agent among {n} candidates: {detail}"

    def _explain(
        self,
        cols: Columns,
        view: SkillView,
        request: RouteRequest,
        strat: Strategy,
        chosen: int | None,
        panic: bool,
    ) -> list[ScoredCandidate]:
        """Every candidate: the eligible ones by score (the chosen first), then the rest."""
        scored: list[ScoredCandidate] = []
        excluded: list[ScoredCandidate] = []
        rows: list[int] = []
        match = view.match
        for i, agent_id in enumerate(cols.ids):
            c = self._cands[agent_id]
            if not match[i]:
                if request.runtime is not None and c.runtime != request.runtime:
                    unfit = f"runtime {c.runtime or '?'}, not {request.runtime}"
                else:
                    unfit = f"missing skills: {','.join(sorted(request.skills - c.skills))}"
                excluded.append(ScoredCandidate(agent_id, excluded=unfit))
                continue
            why = _first_filter(c, panic)
            if why is not None:
                excluded.append(ScoredCandidate(agent_id, excluded=why))
            else:
                rows.append(i)
        if rows and chosen is not None:
            r = np.array(rows, dtype=np.intp)
            scores, parts = strat.explain(cols, view, r, request, chosen)
            for k, i in enumerate(rows):
                scored.append(
                    ScoredCandidate(
                        cols.ids[i],
                        float(scores[k]),
                        {
                            name: float(v[k])
                            for name, v in parts.items()
                            if not np.isnan(v[k])  # unknown values are left out
                        },
                    )
                )
            first = cols.ids[chosen]
            # The chosen first (it holds the best score, or leads its ties); the sort is
            # stable, so equal scores stay in id order.
            scored.sort(key=lambda s: (s.agent_id != first, -(s.score or 0.0)))
        return scored + excluded
