"""Routing: which agent takes a task. ``pool`` decides over columns of candidates
(``columns``, ``types``) with a ``strategies`` ranking; ``table`` keeps one pool per
swarm in step with the engine's agents; ``bench`` measures decision latency."""

from core.federation.routing.pool import CandidatePool
from core.federation.routing.strategies import strategy_names
from core.federation.routing.table import Routed, RoutingTable, check_strategy
from core.federation.routing.types import Candidate, RouteDecision, RouteRequest

__all__ = [
    "Candidate",
    "CandidatePool",
    "RouteDecision",
    "RouteRequest",
    "Routed",
    "RoutingTable",
    "check_strategy",
    "strategy_names",
]
