"""Plain data types of the router: what goes in (candidates, requests) and what comes out.

They are slotted dataclasses, not pydantic models: the router builds one decision per
task on the dispatcher's hot path, where a pydantic model's validation would cost more
than the routing itself. ``to_dict()`` gives a JSON-ready view for the API and the audit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

BreakerName = Literal["closed", "open", "half_open"]
BREAKER_STATES: tuple[str, ...] = ("closed", "open", "half_open")


class TaskLike(Protocol):
    """What ``RouteRequest.for_task`` reads from a task (``core.models.Task`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def skills(self) -> Iterable[str]: ...
    @property
    def runtime(self) -> str | None: ...


class RouterError(ValueError):
    """A caller error (bad candidate, unknown agent or strategy); never a routing miss."""


class UnknownStrategyError(RouterError):
    """The strategy name is not registered; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown routing strategy {name!r}; known: {', '.join(known)}")
        self.name = name
        self.known = known


@dataclass(slots=True)
class Candidate:
    """One agent as the router sees it; the pool keeps its own copy."""

    agent_id: str
    runtime: str = ""
    model: str | None = None
    skills: frozenset[str] = frozenset()
    in_flight: int = 0  # from the lease table
    capacity: int = 1  # max concurrent tasks; 0 drains the agent
    healthy: bool = True
    ejected: bool = False
    breaker: BreakerName = "closed"
    trial_available: bool = False  # half-open breaker: may take exactly one trial task
    over_budget: bool = False
    cost_per_task: float | None = None  # expected USD per task (EWMA); None = unknown
    latency_s: float | None = None  # EWMA task duration; None = unknown
    success_rate: float | None = None  # EWMA in [0, 1]; None = unknown
    completed: int = 0  # tasks seen (the weight of success_rate)
    weight: float = 1.0  # for the weighted strategy

    def validate(self) -> None:
        """Raise RouterError on a value the router cannot route with."""
        if not self.agent_id:
            raise RouterError("candidate without an agent_id")
        if self.in_flight < 0:
            raise RouterError(f"{self.agent_id}: in_flight {self.in_flight} < 0")
        if self.capacity < 0:
            raise RouterError(f"{self.agent_id}: capacity {self.capacity} < 0")
        if self.completed < 0:
            raise RouterError(f"{self.agent_id}: completed {self.completed} < 0")
        if self.breaker not in BREAKER_STATES:
            raise RouterError(
                f"{self.agent_id}: breaker {self.breaker!r} not one of {', '.join(BREAKER_STATES)}"
            )
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise RouterError(f"{self.agent_id}: weight {self.weight} must be finite and > 0")
        for name in ("cost_per_task", "latency_s"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise RouterError(f"{self.agent_id}: {name} {v} must be finite and >= 0")
        s = self.success_rate
        if s is not None and not 0.0 <= s <= 1.0:
            raise RouterError(f"{self.agent_id}: success_rate {s} not in [0, 1]")


@dataclass(slots=True, frozen=True)
class RouteRequest:
    """One task to place. ``key`` feeds consistent-hash (default: the task id); only
    agents of ``runtime`` are candidates when it is set."""

    task_id: str
    skills: frozenset[str] = frozenset()
    key: str | None = None
    strategy: str | None = None  # None: the pool's current strategy
    runtime: str | None = None

    @classmethod
    def for_task(cls, task: TaskLike, strategy: str | None = None) -> RouteRequest:
        return cls(
            task_id=task.id,
            skills=frozenset(task.skills),
            strategy=strategy,
            runtime=task.runtime,
        )


@dataclass(slots=True)
class ScoredCandidate:
    """One row of an explanation: a score (higher is better) or why it was excluded."""

    agent_id: str
    score: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    excluded: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "agent_id": self.agent_id,
            "score": self.score,
            "parts": dict(self.parts),
            "excluded": self.excluded,
        }


@dataclass(slots=True)
class RouteDecision:
    """The router's answer: who gets the task, or why nobody does."""

    task_id: str
    strategy: str
    chosen: str | None
    reason: str
    panic: bool = False
    elapsed_us: float = 0.0
    matched: int = 0  # candidates with every required skill
    eligible: int = 0  # of those, how many passed every filter
    candidates: list[ScoredCandidate] | None = None  # only with explain=True

    def to_dict(self) -> dict[str, object]:
        return {
            "task_id": self.task_id,
            "strategy": self.strategy,
            "chosen": self.chosen,
            "reason": self.reason,
            "panic": self.panic,
            "elapsed_us": self.elapsed_us,
            "matched": self.matched,
            "eligible": self.eligible,
            "candidates": (
                None if self.candidates is None else [c.to_dict() for c in self.candidates]
            ),
        }
