"""The ``noop`` runtime: every exec succeeds at once with no output, in-process.

It measures the control plane alone (queue, routing, store, audit): `godel bench
dispatch --runtime noop`. It is also handy to dry-run a plan. It runs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

from core.errors import InvalidInput
from core.llm.catalog_types import ResolvedModel
from core.models import Agent, AgentSpec, ExecResult, ExecStatus, RuntimeEvent
from core.runtimes.base import (
    AgentHandle,
    Capability,
    HealthReport,
    HealthState,
    RuntimeContext,
)


class NoopRuntime:
    name: ClassVar[str] = "noop"
    description: ClassVar[str] = "Runs nothing: every exec succeeds at once (measures Godel itself)"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.EXEC, Capability.KILL, Capability.HEALTH}
    )

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    async def spawn(
        self, agent_id: str, spec: AgentSpec, workspace: Path, *, model: ResolvedModel | None = None
    ) -> AgentHandle:
        return AgentHandle(agent_id=agent_id, workspace=workspace, state={"dead": asyncio.Event()})

    async def exec(
        self, handle: AgentHandle, input: str, *, exec_id: str, timeout: float | None
    ) -> AsyncIterator[RuntimeEvent]:
        yield ExecResult(exec_id=exec_id, status=ExecStatus.SUCCEEDED, exit_code=0)

    async def steer(self, handle: AgentHandle, message: str) -> bool:
        raise InvalidInput("the noop runtime runs nothing to steer")

    async def abort(self, handle: AgentHandle) -> bool:
        return False

    async def kill(self, handle: AgentHandle) -> None:
        handle.state["dead"].set()

    async def health(self, handle: AgentHandle) -> HealthReport:
        if handle.state["dead"].is_set():
            return HealthReport(state=HealthState.DEAD, detail="killed")
        return HealthReport(state=HealthState.HEALTHY, detail="in-process, runs nothing")

    async def wait_exit(self, handle: AgentHandle) -> int:
        await handle.state["dead"].wait()
        return 0

    async def recover(self, agent: Agent) -> str:
        return "in-process noop agent ended with the previous daemon"
