"""The exec service: run input on an agent, steer and abort it, and keep its output.

An exec runs in its own task, so it is recorded to the end even if the caller goes
away; a caller that stops reading early aborts it (as closing ssh does). Its start (with
the agent going ``busy``) and its end (with its output, usage, cost and the agent back
to ``idle``) are one transaction each. Output streams live on the bus and reaches the
store in batches (every 100 ms or 256 rows, and always with the exec's end).
This is federation's ``Executor`` port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from core.activity import activity_line
from core.audit import AuditDraft
from core.config.policy import DENY_RULE
from core.engine.budgets import BudgetService
from core.engine.context import EngineContext
from core.engine.live import LiveAgent
from core.engine.status import StatusEvents
from core.errors import AgentNotFound, AgentUnavailable, ExecNotFound, InvalidInput, PolicyDenied
from core.events import AgentActivity, AgentOutput, ExecFinished, ExecStarted, SubscriptionClosed
from core.models import (
    Agent,
    AgentStatus,
    AssistantText,
    ExecRecord,
    ExecResult,
    ExecStatus,
    LogLine,
    OutputChunk,
    PolicyViolation,
    RuntimeEvent,
    RuntimeNotice,
    StatusChange,
    StatusSource,
    new_id,
    utcnow,
)
from core.runtimes.base import Capability, HealthState
from core.store import ops

log = logging.getLogger("godel.engine")
# Memory per reader is one page, never one exec: `agent logs` streams the store in pages
# of about LOGS_PAGE_BYTES (each sent before the next is read), and a stored row is at most
# OUTPUT_ROW_MAX characters (a larger chunk is split), so a page is bounded as well.
SHOW_MAX_BYTES = 1024 * 1024  # of output in one `exec.get` reply (built whole)
LOGS_PAGE_BYTES = 256 * 1024
OUTPUT_ROW_MAX = 64 * 1024
# Characters of output an exec's caller may lag by: as much as an exec keeps by default,
# so that a caller misses nothing unless the cap was raised and it is that far behind.
CALLER_BEHIND_MAX = 16 * 1024 * 1024

OUTPUT_FLUSH_INTERVAL = 0.1  # seconds between batched writes of agent output
OUTPUT_FLUSH_ROWS = 256
OUTPUT_FLUSH_CHARS = 1024 * 1024  # or this much output: 256 rows can be 16 MiB
MIB = 1024 * 1024

Stream = Literal["stdout", "stderr", "system"]


@dataclass
class _OutputBudget:
    """One exec's output allowance (``[defaults] exec_output_max_bytes``): what is past
    it is counted, not stored nor published, so one loud exec cannot fill memory, the
    store or the event log."""

    cap: int
    kept: int = 0
    dropped: int = 0

    def take(self, data: str) -> str | None:
        """The part of ``data`` that fits (all of it, a head, or None)."""
        n = len(data) if data.isascii() else len(data.encode())
        room = self.cap - self.kept
        if n <= room:
            self.kept += n
            return data
        part = _head_bytes(data, room) if room > 0 else ""
        k = len(part.encode())
        self.kept += k
        self.dropped += n - k
        return part or None

    def notice(self) -> str:
        cap = self.cap
        size = f"{cap // MIB} MiB" if cap % MIB == 0 else f"{cap:,} bytes"
        return (
            f"output truncated: {self.dropped:,} bytes not kept "
            f"(cap {size}; [defaults] exec_output_max_bytes)"
        )


class _CallerQueue:
    """What an exec's caller has not read yet. The exec never waits for its caller (it
    is recorded to the end whatever the caller does), so a caller more than
    ``CALLER_BEHIND_MAX`` of output behind misses chunks (stored all the same) and is
    told how much before what it gets next: a slow reader cannot fill the daemon."""

    def __init__(self, agent_id: str, exec_id: str) -> None:
        self._queue: asyncio.Queue[RuntimeEvent] = asyncio.Queue()
        self._agent_id = agent_id
        self._exec_id = exec_id
        self._chars = 0  # of output queued
        self._skipped = 0

    def put_nowait(self, ev: RuntimeEvent) -> None:
        if isinstance(ev, OutputChunk):
            n = len(ev.data)
            # Once behind, skip until the caller has read all it has: one gap, not many.
            if self._chars and (self._skipped or self._chars + n > CALLER_BEHIND_MAX):
                self._skipped += n
                return
            self._chars += n
        if self._skipped:
            self._queue.put_nowait(
                RuntimeNotice(
                    exec_id=self._exec_id,
                    message=f"{self._skipped:,} characters of output not streamed here (read "
                    f"too slowly); they are stored: `godel agent logs {self._agent_id}`",
                )
            )
            self._skipped = 0
        self._queue.put_nowait(ev)

    async def get(self) -> RuntimeEvent:
        ev = await self._queue.get()
        if isinstance(ev, OutputChunk):
            self._chars -= len(ev.data)
        return ev


def _ended(status: ExecStatus) -> str:
    return "timed out" if status is ExecStatus.TIMED_OUT else "was aborted"


def _head_bytes(text: str, n: int) -> str:
    """The longest start of ``text`` that is at most ``n`` bytes in UTF-8."""
    if text.isascii():
        return text[:n]
    return text.encode()[:n].decode(errors="ignore")


def _tail_bytes(text: str, n: int) -> str:
    if text.isascii():
        return text[-n:] if n else ""
    return text.encode()[-n:].decode(errors="ignore") if n else ""


@dataclass(frozen=True)
class ExecOutput:
    """One exec as ``godel exec show`` prints it."""

    record: ExecRecord
    output: list[LogLine]
    truncated: bool  # more lines are stored than were read


class ExecService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._output: list[ops.OutputRow] = []
        self._output_chars = 0  # in self._output
        self._budgets: dict[str, _OutputBudget] = {}  # of running execs
        self._flusher: asyncio.Task[None] | None = None
        # Told (by build: the health service) when an ended exec leaves its agent held.
        self.on_held: Callable[[str, str], None] = lambda agent_id, reason: None
        # Set by build: reserves an exec's estimate before it starts, settles it after.
        self.budgets: BudgetService | None = None

    # lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="godel-output-flush")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()

    # looking agents up ----------------------------------------------------------------------

    async def get_agent(self, agent_id: str) -> Agent:
        agent = await self.ctx.store.get_agent(agent_id)
        if agent is None:
            raise AgentNotFound(f"agent {agent_id!r} not found", agent_id=agent_id)
        return agent

    async def live_agent(self, agent_id: str, action: str) -> LiveAgent:
        """The held agent ``agent_id`` (an id or a live agent's name), or why not."""
        live = self.ctx.live.get(agent_id)
        if live is not None and live.working:
            return live  # the live copy mirrors the store: skip a read on the hot path
        agent = await self.get_agent(agent_id)
        live = self.ctx.live.get(agent.id)
        if live is None or agent.status.is_terminal or live.stopping:
            why = f": {agent.status_reason}" if agent.status_reason else ""
            raise AgentUnavailable(
                f"cannot {action} agent {agent.id}: it is {agent.status.value}{why}",
                agent_id=agent.id,
                status=agent.status.value,
            )
        return live

    # exec ------------------------------------------------------------------------------------

    async def exec(
        self,
        agent_id: str,
        input: str,
        *,
        actor: str,
        timeout: float | None = None,
        task_id: str | None = None,
    ) -> AsyncIterator[RuntimeEvent]:
        """Run ``input`` on an agent; yields output and activity, ends with the result."""
        if not input.strip():
            raise InvalidInput("nothing to run: the input is empty")
        if timeout is not None and timeout <= 0:
            raise InvalidInput(f"timeout must be positive, got {timeout}", timeout=timeout)
        live = await self.live_agent(agent_id, "exec on")
        await self._check_policy(live, input, actor, task_id)
        if live.exec_id is not None:
            raise self.ctx.live.busy_error(live)
        if live.held is not None:
            raise AgentUnavailable(
                f"cannot exec on agent {live.id}: it is unhealthy: {live.held}; "
                "wait for it to recover or kill it",
                agent_id=live.id,
                status=AgentStatus.UNHEALTHY.value,
            )
        exec_id = new_id("exec")
        live.exec_id = exec_id
        live.task_id = task_id
        live.exec_begun = live.abort_pending = False
        if timeout is None:
            timeout = self.ctx.config.defaults.exec_timeout
        busy = StatusChange(
            status=AgentStatus.BUSY, source=StatusSource.RUNTIME_EVENT, reason=f"running {exec_id}"
        )
        record = ExecRecord(
            id=exec_id,
            agent_id=live.id,
            input=input,
            status=ExecStatus.RUNNING,
            started_at=utcnow(),
            actor=actor,
            model=live.agent.model,
        )
        status_events = StatusEvents(self.ctx, live.id, busy)
        reserved = False
        try:
            if self.budgets is not None:
                # Refused (BudgetExhausted) before anything is recorded or run.
                await self.budgets.reserve(live.agent, live.runtime.capabilities, exec_id, task_id)
                reserved = True
            await self.ctx.journal.commit(
                ops.StartExec(record, status=busy),
                audit=AuditDraft(
                    actor=actor,
                    action="agent.exec",
                    subject=live.id,
                    result="started",
                    payload={
                        "exec_id": exec_id,
                        "input": input,
                        "timeout": timeout,
                        "task_id": task_id,
                    },
                ),
                events=lambda prev: [
                    *status_events(prev),
                    ExecStarted(
                        agent_id=live.id,
                        exec_id=exec_id,
                        input=input,
                        actor=actor,
                        task_id=task_id,
                    ),
                ],
            )
        except BaseException:
            live.exec_id = None
            live.task_id = None
            if reserved and self.budgets is not None:
                await self.budgets.settle(exec_id, None)  # it never ran: release it all
            raise
        queue = _CallerQueue(live.id, exec_id)
        live.exec_task = asyncio.create_task(
            self._run(live, exec_id, input, timeout, actor, queue), name=exec_id
        )
        finished = False
        try:
            while True:
                ev = await queue.get()
                yield ev
                if isinstance(ev, ExecResult):
                    finished = True
                    return
        finally:
            if not finished and live.exec_id == exec_id:
                with contextlib.suppress(Exception):
                    await live.runtime.abort(live.handle)

    async def _check_policy(
        self, live: LiveAgent, input: str, actor: str, task_id: str | None
    ) -> None:
        """Refuse, and audit, input a ``[policy] deny`` rule matches, before anything runs.
        Only the input of a runtime without a model is a command; an LLM runtime's is a
        prompt (the native runtime checks the commands its model runs)."""
        if Capability.MODEL in live.runtime.capabilities:
            return
        match = self.ctx.config.policy.check(input)
        if match is None:
            return
        detail = match.detail(input)
        await self.ctx.journal.audit(
            AuditDraft(
                actor=actor,
                action="policy.violation",
                subject=live.id,
                result="refused",
                payload={"exec_id": None, "rule": DENY_RULE, "detail": detail, "task_id": task_id},
            ),
            events=[
                AgentActivity(
                    agent_id=live.id,
                    exec_id="",
                    kind="policy",
                    data={"rule": DENY_RULE, "detail": detail},
                )
            ],
        )
        raise PolicyDenied(
            f"cannot exec on agent {live.id}: {match.refusal} ([policy] deny)",
            agent_id=live.id,
            rule=match.number,
            pattern=match.rule,
        )

    async def _run(
        self,
        live: LiveAgent,
        exec_id: str,
        input: str,
        timeout: float | None,
        actor: str,
        queue: _CallerQueue,
    ) -> None:
        budget = _OutputBudget(self.ctx.config.defaults.exec_output_max_bytes)
        self._budgets[exec_id] = budget
        try:
            await self._drive(live, exec_id, input, timeout, actor, queue, budget)
        finally:
            # Cancelled or not: a budget outliving its exec would be a leak per exec.
            self._budgets.pop(exec_id, None)

    async def _drive(
        self,
        live: LiveAgent,
        exec_id: str,
        input: str,
        timeout: float | None,
        actor: str,
        queue: _CallerQueue,
        budget: _OutputBudget,
    ) -> None:
        agent_id = live.id
        started = time.monotonic()
        result: ExecResult | None = None
        try:
            async for ev in self._runtime_exec(live, input, exec_id, timeout):
                if isinstance(ev, OutputChunk):
                    data = self._keep(agent_id, exec_id, ev.stream, ev.data)
                    if data is None:
                        continue  # past the cap: counted only
                    self.ctx.journal.publish(
                        AgentOutput(
                            agent_id=agent_id,
                            exec_id=exec_id,
                            stream=ev.stream,
                            data=data,
                            task_id=live.task_id,
                        )
                    )
                    if (
                        len(self._output) >= OUTPUT_FLUSH_ROWS
                        or self._output_chars >= OUTPUT_FLUSH_CHARS
                    ):
                        await self.flush()
                    if data is not ev.data:
                        ev = ev.model_copy(update={"data": data})
                    queue.put_nowait(ev)
                elif isinstance(ev, ExecResult):
                    result = ev
                else:
                    await self._on_activity(agent_id, exec_id, ev, actor)
                    queue.put_nowait(ev)
        except Exception as e:
            log.exception("exec %s on %s failed", exec_id, agent_id)
            result = ExecResult(
                exec_id=exec_id,
                status=ExecStatus.INTERRUPTED,
                exit_code=None,
                reason=f"runtime error: {type(e).__name__}: {e}",
            )
        if result is None:
            result = ExecResult(
                exec_id=exec_id,
                status=ExecStatus.INTERRUPTED,
                exit_code=None,
                reason="the runtime ended the exec without a result",
            )
        result.duration_s = result.duration_s or round(time.monotonic() - started, 6)
        self._budgets.pop(exec_id, None)
        if len(result.output) > budget.cap:  # chars >= bytes/4: cheap first test
            result.output = _tail_bytes(result.output, budget.cap)
        if budget.dropped:
            notice = budget.notice()
            # Past the cap on purpose: the one line that says what is missing.
            self._output.append(ops.OutputRow(agent_id, exec_id, "system", utcnow(), notice))
            result.reason = f"{result.reason}; {notice}" if result.reason else notice
        idle: StatusChange | None = None
        if not live.stopping and agent_id in self.ctx.live:
            held = await self._still_held(live, result)
            if held is not None:
                live.held = (
                    f"exec {exec_id} {_ended(result.status)} and its command could not be "
                    f"ended: {held}"
                )
                result.reason = (
                    f"{result.reason}; the agent is unhealthy and takes no new work until "
                    "it recovers or is killed"
                )
                idle = StatusChange(
                    status=AgentStatus.UNHEALTHY,
                    source=StatusSource.RUNTIME_EVENT,
                    reason=live.held,
                )
                self.on_held(agent_id, live.held)
            else:
                idle = StatusChange(
                    status=AgentStatus.IDLE,
                    source=StatusSource.RUNTIME_EVENT,
                    reason=f"{exec_id} {result.status.value}",
                )
        # The exec's output, its end, its audit entry and the agent's return to idle
        # commit together: one transaction per exec end.
        rows, self._output, self._output_chars = self._output, [], 0
        finished = ExecFinished(
            task_id=live.task_id,
            agent_id=agent_id,
            exec_id=exec_id,
            status=result.status,
            exit_code=result.exit_code,
            duration_s=result.duration_s,
            reason=result.reason,
            model=live.agent.model,
            usage=result.usage,
            cost_usd=None if result.cost_usd is None else str(result.cost_usd),
            output_dropped=budget.dropped,
        )
        idle_events = StatusEvents(self.ctx, agent_id, idle) if idle else None
        try:
            await self.ctx.journal.commit(
                ops.FinishExec(
                    exec_id,
                    result.status,
                    result.exit_code,
                    result.reason,
                    utcnow(),
                    usage=result.usage,
                    cost_usd=result.cost_usd,
                    output=tuple(rows),
                    agent_status=(agent_id, idle) if idle else None,
                ),
                audit=AuditDraft(
                    actor=actor,
                    action="agent.exec.finish",
                    subject=agent_id,
                    result=result.status.value,
                    payload={
                        "exec_id": exec_id,
                        "exit_code": result.exit_code,
                        "reason": result.reason,
                        "duration_s": result.duration_s,
                        "tokens": result.usage.total_tokens,
                        "cost_usd": None if result.cost_usd is None else str(result.cost_usd),
                    },
                ),
                events=lambda prev: [*(idle_events(prev) if idle_events else ()), finished],
            )
            self._count_spend(live, result)
            if self.budgets is not None:
                try:
                    await self.budgets.settle(exec_id, result)
                except Exception:  # the exec is recorded; its reservation expires later
                    log.exception("exec %s: budget not settled", exec_id)
        finally:
            live.exec_id = None
            live.task_id = None
            live.exec_task = None
            queue.put_nowait(result)

    async def _still_held(self, live: LiveAgent, result: ExecResult) -> str | None:
        """Why the runtime could not end a timed-out or aborted exec's command (so the
        agent is not free), or None. Its health report says so: the runtime knows."""
        if result.status not in (ExecStatus.TIMED_OUT, ExecStatus.ABORTED):
            return None
        try:
            report = await live.runtime.health(live.handle)
        except Exception as e:  # the exec still ends and is recorded
            log.warning("exec %s: health check failed: %s", result.exec_id, e)
            return None
        return report.detail if report.state is HealthState.UNHEALTHY else None

    def _count_spend(self, live: LiveAgent, result: ExecResult) -> None:
        """Spend metrics, once per exec as it ends: with a task or without (``agent exec``)."""
        m, agent = self.ctx.metrics, live.agent
        usage = result.usage
        try:
            if usage.input_tokens or usage.output_tokens:
                m.inc_tokens(
                    agent.swarm,
                    agent.runtime,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                )
            if result.cost_usd is not None:
                m.inc_cost(agent.swarm, agent.runtime, result.cost_usd)
        except ValueError as e:  # a runtime's bad figure must not fail the recorded exec
            log.warning("exec %s: spend not counted: %s", result.exec_id, e)

    def _runtime_exec(
        self, live: LiveAgent, input: str, exec_id: str, timeout: float | None
    ) -> AsyncIterator[RuntimeEvent]:
        if live.abort_pending:
            return _aborted_before_start(exec_id)
        live.exec_begun = True
        return live.runtime.exec(live.handle, input, exec_id=exec_id, timeout=timeout)

    async def _abort(self, live: LiveAgent) -> bool:
        """Abort the agent's exec, also one announced but not yet begun by its runtime."""
        if live.exec_id is not None and not live.exec_begun:
            live.abort_pending = True
            return True
        return await live.runtime.abort(live.handle)

    def _keep(self, agent_id: str, exec_id: str, stream: Stream, data: str) -> str | None:
        """Buffer output for the store; returns what was kept (cut at the exec's cap),
        None when nothing was."""
        budget = self._budgets.get(exec_id)
        if budget is not None:
            kept = budget.take(data)
            if kept is None:
                return None
            data = kept
        at = utcnow()
        self._output_chars += len(data)
        if len(data) <= OUTPUT_ROW_MAX:
            self._output.append(ops.OutputRow(agent_id, exec_id, stream, at, data))
        else:  # stored rows stay small: a reader's page is bounded by rows, not by chunks
            self._output.extend(
                ops.OutputRow(agent_id, exec_id, stream, at, data[i : i + OUTPUT_ROW_MAX])
                for i in range(0, len(data), OUTPUT_ROW_MAX)
            )
        return data

    async def _on_activity(self, agent_id: str, exec_id: str, ev: RuntimeEvent, actor: str) -> None:
        """Tool calls, usage, notices: kept in the agent's log and published; a refused
        action is audited."""
        if isinstance(ev, AssistantText):
            text = self._keep(agent_id, exec_id, "stdout", ev.text)
            if text is not None:
                self.ctx.journal.publish(
                    AgentOutput(agent_id=agent_id, exec_id=exec_id, stream="stdout", data=text)
                )
            return
        data = ev.model_dump(mode="json", exclude={"kind", "exec_id"})
        line = activity_line(ev)
        if line:
            self._keep(agent_id, exec_id, "system", line)
        activity = AgentActivity(agent_id=agent_id, exec_id=exec_id, kind=ev.kind, data=data)
        if isinstance(ev, PolicyViolation):
            await self.ctx.journal.audit(
                AuditDraft(
                    actor=actor,
                    action="policy.violation",
                    subject=agent_id,
                    result="refused",
                    payload={"exec_id": exec_id, "rule": ev.rule, "detail": ev.detail},
                ),
                events=[activity],
            )
        else:
            self.ctx.journal.publish(activity)

    async def steer(self, agent_id: str, message: str, actor: str) -> bool:
        if not message.strip():
            raise InvalidInput("nothing to steer with: the message is empty")
        live = await self.live_agent(agent_id, "steer")
        delivered = await live.runtime.steer(live.handle, message)
        await self.ctx.journal.audit(
            AuditDraft(
                actor=actor,
                action="agent.steer",
                subject=live.id,
                result="ok" if delivered else "nothing running",
                payload={"exec_id": live.exec_id, "message": message},
            )
        )
        return delivered

    async def abort(self, agent_id: str, actor: str) -> bool:
        live = await self.live_agent(agent_id, "abort")
        aborted = await self._abort(live)
        await self.ctx.journal.audit(
            AuditDraft(
                actor=actor,
                action="agent.abort",
                subject=live.id,
                result="ok" if aborted else "nothing running",
                payload={"exec_id": live.exec_id},
            )
        )
        return aborted

    async def abort_quietly(self, agent_id: str) -> None:
        """Abort whatever the agent runs (a cancelled task's exec); never raises."""
        live = self.ctx.live.get(agent_id)
        if live is not None and not live.stopping:
            with contextlib.suppress(Exception):
                await self._abort(live)

    async def wait_exec_end(self, live: LiveAgent, limit_s: float = 10.0) -> None:
        """Let a running exec record its end (it ends once its process is gone)."""
        if live.exec_task is not None:
            # asyncio.wait: neither the exec's error nor its cancellation is raised here.
            await asyncio.wait([live.exec_task], timeout=limit_s)

    # output ------------------------------------------------------------------------------------

    async def flush(self) -> None:
        rows, self._output, self._output_chars = self._output, [], 0
        if rows:
            await self.ctx.journal.commit(ops.AppendOutput(tuple(rows)))

    async def _flush_loop(self) -> None:
        while True:
            await self.ctx.clock.sleep(OUTPUT_FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:
                log.exception("could not write agent output to the store")

    async def logs(
        self, agent_id: str, *, after_seq: int = 0, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        """Stored output of an agent, read page by page until a page comes back empty;
        with ``follow``, keep going until the agent ends.

        The store is the source of every line; the bus only says when to look again.
        The subscription is made before the first read, so nothing written in between
        is missed.
        """
        agent = await self.get_agent(agent_id)
        sub = (
            self.ctx.bus.subscribe(
                f"logs-{agent.id}",
                maxsize=64,
                # agent.activity: a tool call is stored as a "system" line without an
                # agent.output event; without it the reader would see it a second late.
                types={"agent.output", "agent.activity", "agent.status_changed"},
                max_bytes=0,  # wake-ups only: one output chunk queued at most, not 64
            )
            if follow
            else None
        )
        try:
            seq = after_seq
            ending = False
            while True:
                await self.flush()
                # One page at a time, each sent before the next is read (the emitter
                # waits for the socket to drain): a reader holds one page, not an exec.
                lines = await self.ctx.store.read_output(
                    agent.id, after_seq=seq, max_bytes=LOGS_PAGE_BYTES
                )
                for line in lines:
                    seq = line.seq
                    yield line
                if lines:
                    continue  # there may be more than one page's worth
                if sub is None:
                    return
                if ending:
                    return
                current = await self.ctx.store.get_agent(agent.id)
                if current is None or current.status.is_terminal:
                    # Its last output committed before its end: one more read gets it.
                    ending = True
                    continue
                # Anything for this agent (or a drop marker) means: look again.
                with contextlib.suppress(TimeoutError, SubscriptionClosed):
                    async with asyncio.timeout(1.0):
                        while True:
                            ev = await sub.get()
                            if getattr(ev, "agent_id", agent.id) == agent.id:
                                break
        finally:
            if sub is not None:
                sub.close()

    async def list_execs(self, agent_id: str, limit: int = 50) -> list[ExecRecord]:
        agent = await self.get_agent(agent_id)
        return await self.ctx.store.list_execs(agent.id, limit)

    async def get_exec(self, exec_id: str, *, limit: int = 10_000) -> ExecOutput:
        """One exec's record and its stored output (every stream, in order; the first
        ones, at most ``limit`` lines and ``SHOW_MAX_BYTES``)."""
        record = await self.ctx.store.get_exec(exec_id)
        if record is None:
            raise ExecNotFound(f"exec {exec_id!r} not found", exec_id=exec_id)
        if record.status is ExecStatus.RUNNING:
            await self.flush()  # what it printed so far
        # Bounded in bytes too: one reply must fit the client's message limit, and a
        # 200 MB output must not be held in the daemon to show it (`agent logs` streams).
        lines, truncated = await self.ctx.store.read_exec_output(
            exec_id, limit=limit, max_bytes=SHOW_MAX_BYTES
        )
        return ExecOutput(record, lines, truncated=truncated)


async def _aborted_before_start(exec_id: str) -> AsyncIterator[RuntimeEvent]:
    yield ExecResult(
        exec_id=exec_id,
        status=ExecStatus.ABORTED,
        exit_code=None,
        reason="aborted before it started",
    )
