"""The agents whose processes this engine started and still holds (``LiveAgent``).

The store has every agent; this is the in-memory hold on the running ones: the
runtime handle, the exec in progress, and a copy of the agent record kept in step
with each stored status change (so the hot path skips a read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from core.errors import AgentUnavailable
from core.models import Agent, StatusChange
from core.runtimes.base import AgentHandle, AgentRuntime


@dataclass
class LiveAgent:
    agent: Agent
    runtime: AgentRuntime
    handle: AgentHandle
    exec_id: str | None = None
    task_id: str | None = None  # the task the running exec works on, if any
    stopping: bool = False  # set before a deliberate stop so the exit watcher stays quiet
    watcher: asyncio.Task[None] | None = None
    exec_task: asyncio.Task[None] | None = None
    # An exec is announced (``exec.started``) before it reaches its runtime; an abort in
    # between cannot reach the runtime, so it marks the exec, which then does not run.
    exec_begun: bool = False
    abort_pending: bool = False
    # Why the runtime still holds the command of an exec that has ended (it could not
    # be stopped): no new work until a probe finds the agent healthy again.
    held: str | None = None

    @property
    def id(self) -> str:
        return self.agent.id

    @property
    def working(self) -> bool:
        """Held, not being stopped, and not in a terminal status."""
        return not self.stopping and not self.agent.status.is_terminal


class LiveAgents:
    def __init__(self) -> None:
        self._by_id: dict[str, LiveAgent] = {}

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._by_id

    def __iter__(self) -> Iterator[LiveAgent]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, live: LiveAgent) -> None:
        self._by_id[live.id] = live

    def get(self, agent_id: str) -> LiveAgent | None:
        return self._by_id.get(agent_id)

    def pop(self, agent_id: str) -> LiveAgent | None:
        return self._by_id.pop(agent_id, None)

    def is_live(self, agent_id: str) -> bool:
        live = self._by_id.get(agent_id)
        return live is not None and not live.stopping

    def in_swarm(self, swarm: str | None, *, include_stopping: bool = False) -> list[LiveAgent]:
        return [
            lv
            for lv in self._by_id.values()
            if lv.agent.swarm == swarm and (include_stopping or not lv.stopping)
        ]

    def mirror(self, agent_id: str, change: StatusChange) -> None:
        """Keep the in-memory copy in step with a stored status change."""
        live = self._by_id.get(agent_id)
        if live is not None:
            live.agent = live.agent.model_copy(
                update={
                    "status": change.status,
                    "status_source": change.source,
                    "status_reason": change.reason,
                    "status_at": change.at,
                }
            )

    def busy_error(self, live: LiveAgent) -> AgentUnavailable:
        return AgentUnavailable(
            f"agent {live.id} is busy with exec {live.exec_id}",
            agent_id=live.id,
            exec_id=live.exec_id,
        )
