"""Which events a subscriber asked for: by type, agent, swarm, task."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from core.events import EVENT_TYPES, Event, EventsDropped, SwarmChanged
from core.views.state import Views

__all__ = ["EventFilter"]


@dataclass(frozen=True)
class EventFilter:
    """All given conditions must hold. ``swarm`` matches an event that names the swarm or
    concerns an agent of it (looked up in ``views``). Drop markers always pass: a
    subscriber must hear of its gaps whatever it filters."""

    types: frozenset[str] | None = None
    agent: str | None = None
    swarm: str | None = None
    task: str | None = None

    @staticmethod
    def make(
        types: AbstractSet[str] | None = None,
        agent: str | None = None,
        swarm: str | None = None,
        task: str | None = None,
    ) -> EventFilter:
        """Raises ValueError naming unknown types (prefixes like ``task.*`` are allowed)."""
        expanded: set[str] | None = None
        if types:
            expanded = set()
            unknown = []
            for t in types:
                if t.endswith(".*") or t.endswith("."):
                    prefix = t.rstrip("*")
                    hits = {k for k in EVENT_TYPES if k.startswith(prefix)}
                    if not hits:
                        unknown.append(t)
                    expanded |= hits
                elif t in EVENT_TYPES:
                    expanded.add(t)
                else:
                    unknown.append(t)
            if unknown:
                raise ValueError(
                    f"unknown event type(s) {', '.join(sorted(unknown))}; known: "
                    + ", ".join(sorted(EVENT_TYPES))
                )
        return EventFilter(
            frozenset(expanded) if expanded is not None else None, agent, swarm, task
        )

    def matches(self, event: Event, views: Views | None = None) -> bool:
        if isinstance(event, EventsDropped):
            return True
        if self.types is not None and event.type not in self.types:
            return False
        agent_id = getattr(event, "agent_id", None)
        if self.agent is not None and agent_id != self.agent:
            return False
        if self.task is not None and getattr(event, "task_id", None) != self.task:
            return False
        if self.swarm is not None:
            swarm = getattr(event, "swarm", None)
            if isinstance(event, SwarmChanged):
                swarm = event.swarm.name
            elif swarm is None and agent_id is not None and views is not None:
                row = views.agents.get(agent_id)
                swarm = row.swarm if row is not None else None
            if swarm != self.swarm:
                return False
        return True
