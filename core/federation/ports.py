"""What federation needs from the engine, as narrow Protocols (never ``Engine`` itself).

The dispatcher routes over an ``AgentPool``, runs tasks through an ``Executor`` and
reports to a ``DispatchObserver``; the autoscaler resizes through a ``SwarmScaler``.
The engine's services implement them; tests can implement them in a few lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from core.federation.routing.table import Routed
from core.models import Agent, ExecResult, RuntimeEvent, Task, TaskStatus


class AgentPool(Protocol):
    """The live agents the dispatcher may route to, and their breakers."""

    def workers(self, pool: str | None) -> list[Agent]:
        """Live agents of a swarm (None: in no swarm) that may take work now; open
        breakers are left out up to the ejection cap."""
        ...

    def admit(self, agent_id: str) -> bool:
        """May a task go to this agent now? Takes a half-open breaker's single trial."""
        ...

    def release_trial(self, agent_id: str) -> None:
        """Give back a trial taken by ``admit`` whose claim did not happen."""
        ...

    def record_outcome(self, agent_id: str, ok: bool) -> None:
        """Feed a task's result to the agent's breaker."""
        ...

    def is_live(self, agent_id: str) -> bool: ...


class Executor(Protocol):
    def exec(
        self,
        agent_id: str,
        input: str,
        *,
        actor: str,
        timeout: float | None = None,
        task_id: str | None = None,
    ) -> AsyncIterator[RuntimeEvent]:
        """Run ``input`` on the agent; yields its events, ending with an ``ExecResult``."""
        ...


class DispatchObserver(Protocol):
    def routed(self, task: Task, routed: Routed, elapsed_s: float) -> None:
        """Every routing decision, placed or not (an event and a latency metric)."""
        ...

    async def finished(
        self, task: Task, agent_id: str, result: ExecResult, status: TaskStatus
    ) -> None:
        """An attempt was recorded (``status`` READY means it will be retried)."""
        ...


class DispatchGate(Protocol):
    async def admit(self, tasks: list[Task]) -> list[Task]:
        """The ready tasks that may start now (budgets): the rest wait, or are failed by
        the gate itself."""
        ...


class PauseBoard(Protocol):
    """Providers paused by their usage limit (core.engine.pauses)."""

    def paused(self, agent: Agent) -> str | None:
        """Why ``agent`` may take no task now, or None."""
        ...

    def cut(self, exec_id: str) -> str | None:
        """Why a usage limit ended this exec (its task is requeued, the attempt not
        counted), or None."""
        ...


class SwarmScaler(Protocol):
    def members(self, swarm: str) -> list[Agent]:
        """The swarm's live agents."""
        ...

    async def resize(self, swarm: str, count: int, *, actor: str, reason: str) -> None: ...
