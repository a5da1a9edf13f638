"""The ``native`` runtime: Godel's own agent loop over an OpenAI-compatible or Anthropic API.

No Node, no extra process: the loop runs in the daemon's event loop and talks to the model
with httpx (``core.llm.openai`` / ``core.llm.anthropic``). Tools (``native_tools``) are
``bash``, ``read``, ``write`` and ``edit``, all confined to the agent's workspace: a path
that resolves outside it (``..``, an absolute path, a symlink) is refused and reported as
a ``PolicyViolation``, which the engine audits. So is a ``bash`` command that matches a
``[policy] deny`` rule (``core.config.policy``), before it runs.

The conversation persists across execs of one agent, as a pi session does. An exec ends
on a final answer (a turn without tool calls), at the turn limit, on abort or timeout.
Steer messages are delivered between turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

from core.config.policy import DENY_RULE
from core.errors import AgentUnavailable, GodelError, InvalidInput, RuntimeFailure
from core.llm.catalog_types import ResolvedModel
from core.llm.clients import make_client
from core.llm.prices import cost
from core.llm.types import (
    ChatMessage,
    ChatRequest,
    Finish,
    LLMClient,
    TextDelta,
    ToolCall,
    ToolCallDone,
    UsageLimited,
    UsageReport,
)
from core.models import (
    Agent,
    AgentSpec,
    AssistantText,
    ExecResult,
    ExecStatus,
    PolicyViolation,
    RuntimeEvent,
    RuntimeNotice,
    ToolCallFinished,
    ToolCallStarted,
    TurnUsage,
    Usage,
)
from core.runtimes.base import (
    AgentHandle,
    Capability,
    HealthReport,
    HealthState,
    RuntimeContext,
)
from core.runtimes.environment import agent_environment
from core.runtimes.native_tools import (
    SYSTEM_PROMPT,
    TOOLS,
    PathRefused,
    ToolError,
    kill_tools,
    run_tool,
)

DEFAULT_MAX_TURNS = 20
TOOL_OUTPUT_CAP = 64 * 1024  # characters of tool output sent back to the model


@dataclass
class _Agent:
    """One native agent's live state (in the daemon's memory)."""

    agent_id: str
    workspace: Path
    model: ResolvedModel
    client: LLMClient
    # The scrubbed environment of its bash tool: the model's key stays in the daemon.
    env: dict[str, str]
    # Prefix of every bash command: puts it in the agent's box (core.runtimes.containment).
    launch: list[str] = field(default_factory=list)
    history: list[ChatMessage] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    abort_reason: ExecStatus | None = None
    steer: list[str] = field(default_factory=list)
    tool_procs: set[asyncio.subprocess.Process] = field(default_factory=set)
    dead: asyncio.Event = field(default_factory=asyncio.Event)


def _make_client(model: ResolvedModel, ctx: RuntimeContext) -> LLMClient:
    timeout = float(ctx.options.get("request_timeout", 600))
    retries = int(ctx.options.get("max_retries", 3))
    return make_client(model, timeout=timeout, max_retries=retries)


class NativeRuntime:
    name: ClassVar[str] = "native"
    description: ClassVar[str] = (
        "Godel's own agent loop (bash, read, write, edit) over any OpenAI-compatible or "
        "Anthropic endpoint; no Node needed"
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.EXEC,
            Capability.STREAM,
            Capability.ABORT,
            Capability.KILL,
            Capability.HEALTH,
            Capability.TIMEOUT,
            Capability.STEER,
            Capability.COST,
            Capability.TOOLS,
            Capability.MODEL,
        }
    )

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx
        self.max_turns = int(ctx.options.get("max_turns", DEFAULT_MAX_TURNS))

    @staticmethod
    def _state(handle: AgentHandle) -> _Agent:
        state = handle.state.get("native")
        assert isinstance(state, _Agent)
        return state

    async def spawn(
        self,
        agent_id: str,
        spec: AgentSpec,
        workspace: Path,
        *,
        model: ResolvedModel | None = None,
    ) -> AgentHandle:
        if model is None:
            raise InvalidInput("the native runtime needs a model (--model)", runtime=self.name)
        if not await asyncio.to_thread(workspace.is_dir):
            raise RuntimeFailure(f"workspace {workspace} is not a directory", agent_id=agent_id)
        env = agent_environment(agent_id, spec.env, passthrough=self.ctx.env_passthrough)
        launch, env = self.ctx.containment.wrap(agent_id, [], env)
        agent = _Agent(agent_id, workspace, model, _make_client(model, self.ctx), env, launch)
        return AgentHandle(agent_id=agent_id, workspace=workspace, state={"native": agent})

    async def exec(
        self, handle: AgentHandle, input: str, *, exec_id: str, timeout: float | None
    ) -> AsyncIterator[RuntimeEvent]:
        agent = self._state(handle)
        if agent.dead.is_set():
            raise AgentUnavailable(f"agent {agent.agent_id} has been killed")
        if agent.task is not None:
            raise AgentUnavailable(f"agent {agent.agent_id} is busy", agent_id=agent.agent_id)
        queue: asyncio.Queue[RuntimeEvent] = asyncio.Queue()
        started = time.monotonic()
        agent.abort_reason = None
        agent.task = asyncio.create_task(self._loop(agent, input, exec_id, queue, started))
        timer = (
            asyncio.get_running_loop().call_later(timeout, self._stop, agent, ExecStatus.TIMED_OUT)
            if timeout is not None
            else None
        )
        try:
            while True:
                ev = await queue.get()
                yield ev
                if isinstance(ev, ExecResult):
                    return
        finally:
            if timer is not None:
                timer.cancel()
            task = agent.task
            if task is not None and not task.done():  # the caller went away: abort
                self._stop(agent, ExecStatus.ABORTED)
                with contextlib.suppress(BaseException):
                    await task
            agent.task = None

    def _stop(self, agent: _Agent, why: ExecStatus) -> None:
        if agent.task is not None and not agent.task.done():
            agent.abort_reason = why
            agent.task.cancel()

    async def _loop(
        self,
        agent: _Agent,
        input: str,
        exec_id: str,
        queue: asyncio.Queue[RuntimeEvent],
        started: float,
    ) -> None:
        total = Usage()
        total_cost: Decimal | None = Decimal(0) if agent.model.prices is not None else None
        answer = ""
        status, reason = ExecStatus.SUCCEEDED, ""
        exit_code: int | None = 0
        agent.history.append(ChatMessage(role="user", content=input))
        try:
            for _turn in range(self.max_turns):
                while agent.steer:  # delivered between turns, as pi does
                    msg = agent.steer.pop(0)
                    agent.history.append(ChatMessage(role="user", content=msg))
                    queue.put_nowait(RuntimeNotice(exec_id=exec_id, message=f"steer: {msg}"))
                # A budget exhausted meanwhile refuses the next billable turn; the one
                # that ran finished.
                refusal = await self.ctx.turn_gate(agent.agent_id, exec_id, total, total_cost)
                if refusal is not None:
                    status, exit_code, reason = ExecStatus.FAILED, 1, refusal
                    break
                text, calls, usage, finish = await self._turn(agent, exec_id, queue)
                total = _add(total, usage)
                turn_cost = cost(usage, agent.model.prices)
                if total_cost is not None and turn_cost is not None:
                    total_cost += turn_cost
                queue.put_nowait(
                    TurnUsage(
                        exec_id=exec_id, model=agent.model.name, usage=usage, cost_usd=turn_cost
                    )
                )
                agent.history.append(ChatMessage(role="assistant", content=text, tool_calls=calls))
                if finish.stop_reason == "error":
                    status, exit_code = ExecStatus.FAILED, 1
                    reason = finish.error or "the model returned an error"
                    break
                if calls:
                    for call in calls:
                        agent.history.append(await self._run_tool(agent, exec_id, call, queue))
                    continue
                answer = text
                if agent.steer:
                    continue  # a steer that arrived during the last turn still counts
                if finish.stop_reason == "length":
                    reason = "the answer hit the max_tokens limit"
                break
            else:
                status, exit_code = ExecStatus.FAILED, 1
                reason = f"turn limit reached ({self.max_turns} turns) before a final answer"
        except asyncio.CancelledError:
            why = agent.abort_reason or ExecStatus.ABORTED
            status = why
            exit_code = 124 if why is ExecStatus.TIMED_OUT else 130
            reason = "timed out" if why is ExecStatus.TIMED_OUT else "aborted"
            if agent.dead.is_set():
                status, exit_code, reason = ExecStatus.INTERRUPTED, None, "the agent was killed"
            await kill_tools(agent.tool_procs)
            _close_dangling_calls(agent.history)
        except UsageLimited as e:
            # Not the task's failure: the engine pauses the provider and requeues the task.
            status, exit_code, reason = ExecStatus.FAILED, 1, f"usage limit: {e.message}"
            await self.ctx.usage_limit(
                agent.agent_id, exec_id, agent.model.provider, e.retry_after, e.message
            )
        except GodelError as e:
            status, exit_code, reason = ExecStatus.FAILED, 1, e.message
        queue.put_nowait(
            ExecResult(
                exec_id=exec_id,
                status=status,
                exit_code=exit_code,
                output=answer,
                usage=total,
                cost_usd=total_cost,
                reason=reason,
                duration_s=round(time.monotonic() - started, 6),
            )
        )

    async def _turn(
        self, agent: _Agent, exec_id: str, queue: asyncio.Queue[RuntimeEvent]
    ) -> tuple[str, list[ToolCall], Usage, Finish]:
        request = ChatRequest(
            model=agent.model.upstream_id,
            system=SYSTEM_PROMPT.format(workspace=agent.workspace),
            messages=agent.history,
            tools=TOOLS,
            max_tokens=agent.model.max_tokens,
        )
        text: list[str] = []
        calls: list[ToolCall] = []
        usage = Usage()
        finish = Finish(stop_reason="error", error="the stream ended without a finish")
        async for ev in agent.client.stream(request):
            if isinstance(ev, TextDelta):
                text.append(ev.text)
                queue.put_nowait(AssistantText(exec_id=exec_id, text=ev.text))
            elif isinstance(ev, ToolCallDone):
                calls.append(ev.call)
            elif isinstance(ev, UsageReport):
                usage = ev.usage
            elif isinstance(ev, Finish):
                finish = ev
        return "".join(text), calls, usage, finish

    async def _run_tool(
        self, agent: _Agent, exec_id: str, call: ToolCall, queue: asyncio.Queue[RuntimeEvent]
    ) -> ChatMessage:
        queue.put_nowait(
            ToolCallStarted(
                exec_id=exec_id, call_id=call.id, name=call.name, arguments=call.arguments
            )
        )
        is_error = False
        command = call.arguments.get("command") if call.name == "bash" else None
        denied = self.ctx.deny(command) if isinstance(command, str) else None
        try:
            if denied is not None:
                # Checked before anything runs; the model hears why, the engine audits it.
                assert isinstance(command, str)
                detail = denied.detail(command)
                queue.put_nowait(PolicyViolation(exec_id=exec_id, rule=DENY_RULE, detail=detail))
                raise ToolError(denied.refusal)
            output = await run_tool(
                call, agent.workspace, agent.env, agent.tool_procs, launch=agent.launch
            )
        except PathRefused as e:
            is_error, output = True, f"refused: {e}"
            queue.put_nowait(
                PolicyViolation(exec_id=exec_id, rule="workspace_confinement", detail=str(e))
            )
        except (ToolError, OSError, ValueError) as e:
            is_error, output = True, str(e)
        if len(output) > TOOL_OUTPUT_CAP:
            output = output[:TOOL_OUTPUT_CAP] + f"\n[output truncated at {TOOL_OUTPUT_CAP} chars]"
        queue.put_nowait(
            ToolCallFinished(
                exec_id=exec_id, call_id=call.id, name=call.name, output=output, is_error=is_error
            )
        )
        return ChatMessage(
            role="tool",
            content=output,
            tool_call_id=call.id,
            tool_name=call.name,
            is_error=is_error,
        )

    async def steer(self, handle: AgentHandle, message: str) -> bool:
        agent = self._state(handle)
        if agent.task is None or agent.task.done():
            return False
        agent.steer.append(message)
        return True

    async def abort(self, handle: AgentHandle) -> bool:
        agent = self._state(handle)
        if agent.task is None or agent.task.done():
            return False
        self._stop(agent, ExecStatus.ABORTED)
        return True

    async def kill(self, handle: AgentHandle) -> None:
        agent = self._state(handle)
        if agent.dead.is_set():
            return
        agent.dead.set()
        self._stop(agent, ExecStatus.INTERRUPTED)
        await kill_tools(agent.tool_procs)
        await agent.client.aclose()

    async def health(self, handle: AgentHandle) -> HealthReport:
        agent = self._state(handle)
        if agent.dead.is_set():
            return HealthReport(state=HealthState.DEAD, detail="killed")
        busy = agent.task is not None and not agent.task.done()
        return HealthReport(
            state=HealthState.HEALTHY,
            detail=f"in-process agent loop ({'busy' if busy else 'idle'}); "
            f"model {agent.model.name} at {agent.model.base_url}",
        )

    async def wait_exit(self, handle: AgentHandle) -> int:
        await self._state(handle).dead.wait()
        return 0

    async def recover(self, agent: Agent) -> str:
        return "in-process native agent ended with the previous daemon"


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_read_tokens=a.cache_read_tokens + b.cache_read_tokens,
        cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
    )


def _close_dangling_calls(history: list[ChatMessage]) -> None:
    """After an abort, answer tool calls that never ran, so the next request is valid."""
    if not history or history[-1].role == "user":
        return
    answered = set()
    for msg in reversed(history):
        if msg.role == "tool" and msg.tool_call_id:
            answered.add(msg.tool_call_id)
        elif msg.role == "assistant":
            for call in msg.tool_calls:
                if call.id not in answered:
                    history.append(
                        ChatMessage(
                            role="tool",
                            content="[aborted before it ran]",
                            tool_call_id=call.id,
                            tool_name=call.name,
                            is_error=True,
                        )
                    )
            break
