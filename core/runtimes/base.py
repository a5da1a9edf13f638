"""The ``AgentRuntime`` protocol every runtime implements, and the types it speaks.

A runtime knows how to start one kind of agent process and talk to it. It holds no
records: the engine stores agents and statuses, and calls the runtime for the
process work. See ``docs/runtimes.md`` for how to add one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from core.config.policy import DenyMatch
from core.llm.catalog_types import ResolvedModel
from core.models import Agent, AgentSpec, RuntimeEvent, Usage
from core.runtimes.containment import ContainmentSlot


class Capability(StrEnum):
    """What a runtime declares it can do; the docs' capability table is built from these."""

    EXEC = "exec"  # run an input and return a result
    STREAM = "stream"  # output arrives while the exec runs
    ABORT = "abort"  # stop the running exec, keep the agent
    KILL = "kill"  # end the agent and everything it started
    HEALTH = "health"  # answer a health probe
    TIMEOUT = "timeout"  # honour a per-exec timeout
    PERSISTENT_PROCESS = "persistent_process"  # one long-lived process per agent
    STEER = "steer"  # inject a message into a running exec
    COST = "cost"  # reports usage and cost
    TOOLS = "tools"  # runs tool calls (bash, read, write, edit...)
    RESUME = "resume"  # can continue a previous session
    MODEL = "model"  # drives an LLM: spawn needs a model (--model, else defaults.model)


class HealthState(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # alive but not answering as it should
    DEAD = "dead"  # the process is gone


class HealthReport(BaseModel):
    state: HealthState
    detail: str = ""


@dataclass
class AgentHandle:
    """The runtime's live hold on one agent process, kept in memory by the daemon."""

    agent_id: str
    workspace: Path
    pid: int | None = None
    pid_started_at: float | None = None
    # Runtime-private state (the subprocess object, pipes, locks...).
    state: dict[str, Any] = field(default_factory=dict)


# Asked by a runtime with a model before each model call, with (agent id, exec id, usage
# and cost of the exec so far): a reason refuses the call (a budget is exhausted), None
# lets it go. The engine's budget service answers (core.engine.budgets).
TurnGate = Callable[[str, str, Usage, Decimal | None], Awaitable[str | None]]


async def no_turn_gate(agent_id: str, exec_id: str, usage: Usage, cost: Decimal | None) -> None:
    return None


# Told by a runtime with a model when its provider's usage limit ended an exec, with
# (agent id, exec id, provider, seconds until the limit resets, the provider's message):
# the engine pauses that provider's agents until then (core.engine.pauses).
UsageLimitHook = Callable[[str, str, str, float, str], Awaitable[None]]


async def no_usage_limit_hook(
    agent_id: str, exec_id: str, provider: str, retry_after: float, message: str
) -> None:
    return None


@dataclass(frozen=True)
class RuntimeContext:
    """What the engine gives a runtime when it creates it."""

    home: Path
    options: dict[str, Any] = field(default_factory=dict)
    # ``[defaults] env_passthrough``: daemon variables agents may see (core.runtimes.environment).
    env_passthrough: tuple[str, ...] = ()
    # ``[policy] deny``: the rule a command a runtime runs for its model matches (None: it
    # may run). Asked at each command, so a config reload applies at once.
    deny: Callable[[str], DenyMatch | None] = lambda command: None
    # Where the agent's processes are kept so that a kill ends them all: a runtime that
    # starts processes launches them through ``containment.wrap`` (the engine chooses
    # the kind at start; core.runtimes.containment).
    containment: ContainmentSlot = field(default_factory=ContainmentSlot)
    # Budgets: asked before each model call (``TurnGate``).
    turn_gate: TurnGate = no_turn_gate
    # Provider pauses: told when a usage limit ended an exec (``UsageLimitHook``).
    usage_limit: UsageLimitHook = no_usage_limit_hook


@runtime_checkable
class AgentRuntime(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    async def spawn(
        self,
        agent_id: str,
        spec: AgentSpec,
        workspace: Path,
        *,
        model: ResolvedModel | None = None,
    ) -> AgentHandle:
        """Start the agent's process in ``workspace`` (which exists); return when it is ready.

        ``model`` is the resolved ``spec.model`` (endpoint, key, prices) for LLM runtimes.
        Raises ``core.errors.RuntimeFailure`` naming the cause if it cannot start.
        """
        ...

    def exec(
        self, handle: AgentHandle, input: str, *, exec_id: str, timeout: float | None
    ) -> AsyncIterator[RuntimeEvent]:
        """Run ``input``; yield output as it comes; the last item is an ``ExecResult``."""
        ...

    async def steer(self, handle: AgentHandle, message: str) -> bool:
        """Deliver ``message`` to the running exec (between turns); False if none runs.

        Runtimes without the STEER capability raise ``core.errors.InvalidInput``.
        """
        ...

    async def abort(self, handle: AgentHandle) -> bool:
        """Stop the running exec (its result says ``aborted``); False if none was running."""
        ...

    async def kill(self, handle: AgentHandle) -> None:
        """End the agent and every process it started. Safe to call twice."""
        ...

    async def health(self, handle: AgentHandle) -> HealthReport: ...

    async def wait_exit(self, handle: AgentHandle) -> int:
        """Resolve with the exit code when the agent's process ends, for whatever reason."""
        ...

    async def recover(self, agent: Agent) -> str:
        """Called at daemon start for an agent that was live when the daemon last ran.

        The daemon cannot re-attach to a process it did not start, so this ends any
        surviving process and returns the reason to record with status ``lost``.
        """
        ...
