"""The decisions of one pi exec, as a pure state machine: fed facts, it says what to do.

:class:`RunLoop` is fed, in order, the parsed messages pi writes (:mod:`.protocol`) and
the I/O facts the driver observes (pi answered the prompt, an abort went out, pi exited,
a wait ran out...). Each :meth:`RunLoop.feed` returns a :class:`Step`: the Godel events to
emit, the commands to write to pi, and whether the exec is finished; :meth:`RunLoop.result`
then gives the :class:`~core.models.ExecResult`. No asyncio, no subprocess, no clock: times
are passed in. :class:`~core.runtimes.pi.runtime.PiRuntime` drives it; the unit tests feed
it recordings of the real pi (``tests/fixtures/pi``).

When is a run over? Not simply at ``agent_end``: after a retryable error pi emits
``agent_end`` and then ``auto_retry_start``, and runs again. So an erroring ``agent_end``
starts a grace period; the run is over when it passes without a new ``agent_start``, or
when ``auto_retry_end`` reports the retries used up. A run asked to stop (abort, timeout)
is over once pi has also answered the ``abort``: pi answers after the aborted run ended.

Budgets: pi runs its own loop, so Godel cannot hold its next model call. At each
assistant message that calls tools (another model call follows them) the step asks the
driver to consult the turn gate with the exec's usage and cost so far; a refusal
(:class:`BudgetRefused`) is acted on at that turn's ``turn_end`` (its tools have run):
an ``abort`` goes to pi. pi starts its next model call as it writes ``turn_end``, so that
call is usually under way when the abort lands: at most one extra call, counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from core.llm.catalog_types import ModelPrices
from core.llm.prices import cost
from core.models import (
    AssistantText,
    ExecResult,
    ExecStatus,
    OutputChunk,
    RuntimeEvent,
    RuntimeNotice,
    ToolCallFinished,
    ToolCallStarted,
    TurnUsage,
    Usage,
)
from core.runtimes.pi.protocol import (
    AgentEnd,
    AgentStart,
    AssistantMessageEnd,
    ExtensionError,
    Other,
    PiMessage,
    Response,
    RetryEnd,
    RetryStart,
    TextDelta,
    ToolEnd,
    ToolStart,
    ToolUpdate,
    UserMessage,
    looks_retryable,
)

# After an agent_end with an error, how long to wait for auto_retry_start. pi writes it
# right after agent_end (same tick), so the wait only covers scheduling delays; errors
# pi retries get a longer allowance, since ending early would leave pi running.
RETRY_GRACE_S = 3.0
ERROR_GRACE_S = 0.5
STOP_WAIT_S = 10.0  # how long an aborted or timed-out exec waits for pi to stop


def not_stopped() -> str:
    """Why a stuck run holds the agent, when nothing more is known (e.g. a frozen pi)."""
    return f"pi did not stop within {STOP_WAIT_S:g}s of the abort"


# --- facts the driver observes (pi's own messages are the other facts) ---------------


@dataclass(frozen=True, slots=True)
class PromptAnswered:
    """pi answered the exec's ``prompt`` command; None: pi is gone (:class:`Exited` follows)."""

    response: Response | None


@dataclass(frozen=True, slots=True)
class AbortRequested:
    """The user asked to abort the exec (``PiRuntime.abort``), as opposed to a timeout."""


@dataclass(frozen=True, slots=True)
class AbortSent:
    """An ``abort`` command went to pi, whoever sent it."""


@dataclass(frozen=True, slots=True)
class AbortAnswered:
    """pi answered the last ``abort`` sent (it does so once the run has stopped)."""


@dataclass(frozen=True, slots=True)
class BudgetRefused:
    """The turn gate refused the exec's next model call (a budget is exhausted)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Exited:
    """The pi process exited with ``code`` (negative: killed by that signal)."""

    code: int


@dataclass(frozen=True, slots=True)
class Tick:
    """The wait up to :meth:`RunLoop.next_deadline` ran out with nothing to read."""


Fact = (
    PiMessage
    | PromptAnswered
    | AbortRequested
    | AbortSent
    | AbortAnswered
    | BudgetRefused
    | Exited
    | Tick
)


@dataclass(frozen=True, slots=True)
class Step:
    """What one fact calls for: write ``commands`` to pi, then emit ``events``."""

    events: tuple[RuntimeEvent, ...] = ()
    commands: tuple[dict[str, Any], ...] = ()
    done: bool = False  # the exec is finished: only the result is left
    # Ask the turn gate now (usage and cost so far): pi will call the model again.
    gate: bool = False


class OutputDiff:
    """Turns the accumulated snapshots of a tool's output into the pieces appended.

    pi keeps only the tail of a long output; once a snapshot no longer extends what was
    sent, streaming stops (the tool result still carries pi's tail).
    """

    TRUNCATED = "\n[pi truncated this output; the tool result keeps its tail]\n"

    def __init__(self) -> None:
        self._sent = ""
        self._broken = False

    def update(self, snapshot: str) -> str:
        if self._broken:
            return ""
        if snapshot.startswith(self._sent):
            piece, self._sent = snapshot[len(self._sent) :], snapshot
            return piece
        self._broken = True
        return self.TRUNCATED

    def final(self, text: str) -> str:
        """The rest of the output at the end (pi's status lines included)."""
        return self.update(text)


class RunLoop:
    """One prompt run by pi, from the ``prompt`` command to the :class:`ExecResult`.

    A driver loops: while not :attr:`finished`, wait for the next fact until
    :meth:`next_deadline` (feeding :class:`Tick` if none came), :meth:`feed` it, write the
    step's commands to pi (an abort sent is then an :class:`AbortSent`), emit its events;
    then :meth:`result`. Facts come from that driver, except :class:`AbortRequested` and
    :class:`AbortSent`, which whoever aborts feeds at once (their steps are empty), so a
    fact read later is judged with them.
    """

    def __init__(
        self,
        exec_id: str,
        *,
        model: str,
        prices: ModelPrices | None,
        retry: bool,
        started: float,
        timeout: float | None,
    ) -> None:
        self.exec_id = exec_id
        self._model = model
        self._prices = prices
        self._retry = retry  # pi's auto-retry is on (settings.json)
        self._started = started
        self._timeout = timeout
        self._deadline = None if timeout is None else started + timeout
        self.usage = Usage()
        self.cost: Decimal | None = Decimal(0) if prices is not None else None
        self.output = ""  # the text of the last assistant message
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.retries = 0
        self.prompt_error: str | None = None
        self.accepted = False  # pi answered the prompt command
        self.over = False  # pi's run is over (or refused): nothing left to stop
        self.aborted = False
        self.timed_out = False
        self.abort: Literal["none", "sent", "answered"] = "none"
        self.exit_code: int | None = None
        self.stuck = False  # pi did not stop when asked
        self._end_grace: float | None = None  # an erroring agent_end: wait this for a retry
        self._stop_deadline: float | None = None
        self._user_messages = 0
        self._diffs: dict[str, OutputDiff] = {}
        self.refusal: str | None = None  # the turn gate's refusal (a budget is exhausted)
        self.budget_stop = False  # the abort for that refusal went to pi
        self._calls_after_stop = 0  # model calls pi made after it (they were under way)
        self._gate = False

    @property
    def finished(self) -> bool:
        """Nothing more to wait for: pi exited, is stuck, or its run is over and answered."""
        return self.exit_code is not None or self.stuck or (self.over and self.abort != "sent")

    def next_deadline(self) -> float | None:
        """When to feed :class:`Tick` if nothing arrives before (None: wait for ever)."""
        limits = [
            t for t in (self._deadline, self._end_grace, self._stop_deadline) if t is not None
        ]
        return min(limits) if limits else None

    def feed(self, fact: Fact, now: float) -> Step:
        """Take in one fact observed at ``now``; what to send and emit, and if done."""
        events: list[RuntimeEvent] = []
        commands: list[dict[str, Any]] = []
        self._gate = False
        self._on(fact, now, events, commands)
        return Step(tuple(events), tuple(commands), self.finished, self._gate)

    def _on(
        self,
        fact: Fact,
        now: float,
        events: list[RuntimeEvent],
        commands: list[dict[str, Any]],
    ) -> None:
        xid = self.exec_id
        if isinstance(fact, Tick):
            self._on_tick(now, commands)
        elif isinstance(fact, PromptAnswered):
            if fact.response is None:
                return  # pi is gone: Exited follows
            self.accepted = True
            if not fact.response.success:
                self.prompt_error = fact.response.error or "pi refused the prompt"
                self.over = True
            elif (self.timed_out or self.aborted) and self.abort == "none":
                # The stop was asked for before pi had taken the prompt.
                commands.append({"type": "abort"})
        elif isinstance(fact, AbortRequested):
            if not self.timed_out:
                self.aborted = True
        elif isinstance(fact, AbortSent):
            self.abort = "sent"
            if self._stop_deadline is None:
                self._stop_deadline = now + STOP_WAIT_S
        elif isinstance(fact, AbortAnswered):
            if self.abort == "sent":
                self.abort = "answered"
        elif isinstance(fact, BudgetRefused):
            if self.refusal is None:
                self.refusal = fact.reason
        elif isinstance(fact, Exited):
            self.exit_code = fact.code
        elif isinstance(fact, TextDelta):
            if fact.text:
                events.append(AssistantText(exec_id=xid, text=fact.text))
        elif isinstance(fact, UserMessage):
            self._user_messages += 1
            if self._user_messages > 1:  # the first one is the prompt itself
                events.append(RuntimeNotice(exec_id=xid, message=f"steer delivered: {fact.text}"))
        elif isinstance(fact, AssistantMessageEnd):
            self._on_message_end(fact, events)
        elif isinstance(fact, ToolStart | ToolUpdate | ToolEnd):
            self._on_tool(fact, events)
        elif isinstance(fact, AgentStart):
            self._end_grace = None  # a retry (or a continuation) started
            if self.abort == "answered":
                # pi answered the abort before this run began: stop it too.
                commands.append({"type": "abort"})
        elif isinstance(fact, AgentEnd):
            if fact.stop_reason is not None:
                self.stop_reason, self.error = fact.stop_reason, fact.error_message
            if fact.stop_reason != "error":
                self.over = True
            else:
                retryable = self._retry and looks_retryable(fact.error_message)
                self._end_grace = now + (RETRY_GRACE_S if retryable else ERROR_GRACE_S)
        elif isinstance(fact, RetryStart):
            self._end_grace = None
            self.retries = fact.attempt
            events.append(
                RuntimeNotice(
                    exec_id=xid,
                    message=(
                        f"model call failed ({fact.error}); retry {fact.attempt}"
                        f"/{fact.max_attempts} in {fact.delay_ms} ms"
                    ),
                )
            )
        elif isinstance(fact, RetryEnd):
            if fact.success:
                events.append(RuntimeNotice(exec_id=xid, message=f"retry {fact.attempt} succeeded"))
            else:
                self._end_grace = None
                self.stop_reason = "error"
                self.error = fact.final_error or self.error
                self.retries = fact.attempt
                self.over = True
        elif isinstance(fact, ExtensionError):
            events.append(RuntimeNotice(exec_id=xid, message=f"pi extension error: {fact.message}"))
        elif isinstance(fact, Other) and fact.type == "turn_end":
            self._on_turn_end(commands)
        # Responses, dialogs, malformed lines and unused events change nothing here.

    def _on_turn_end(self, commands: list[dict[str, Any]]) -> None:
        # The refused turn's tools have run: stop pi before (or during) its next call.
        if self.refusal is None or self.budget_stop or self.over:
            return
        self.budget_stop = True
        if self.abort == "none":
            commands.append({"type": "abort"})

    def _on_tick(self, now: float, commands: list[dict[str, Any]]) -> None:
        if self._end_grace is not None and now >= self._end_grace:
            self.over = True  # pi did not retry: the error is final
            self._end_grace = None
        elif self._stop_deadline is not None and now >= self._stop_deadline:
            self.stuck = True
        elif self._deadline is not None and now >= self._deadline:
            self._deadline = None
            if not self.aborted:
                self.timed_out = True
            self._stop_deadline = now + STOP_WAIT_S
            if self.accepted and self.abort == "none":
                commands.append({"type": "abort"})

    def _on_message_end(self, msg: AssistantMessageEnd, events: list[RuntimeEvent]) -> None:
        if self.budget_stop and msg.usage.total_tokens:
            self._calls_after_stop += 1
        elif msg.stop_reason == "toolUse" and self.refusal is None and self.abort == "none":
            self._gate = True
        if not (self.budget_stop and msg.stop_reason == "aborted" and not msg.text):
            self.output = msg.text  # (the empty message of a call the abort cut is not)
        self.stop_reason, self.error = msg.stop_reason, msg.error_message
        self.usage = _add(self.usage, msg.usage)
        turn_cost = reported_cost(msg.cost_total, msg.usage, self._prices)
        if self.cost is not None and turn_cost is not None:
            self.cost += turn_cost
        if msg.usage.total_tokens:
            events.append(
                TurnUsage(
                    exec_id=self.exec_id, model=self._model, usage=msg.usage, cost_usd=turn_cost
                )
            )

    def _on_tool(self, msg: ToolStart | ToolUpdate | ToolEnd, events: list[RuntimeEvent]) -> None:
        xid = self.exec_id
        # Bash output also streams as stdout, so `godel agent logs` shows what commands print.
        if isinstance(msg, ToolStart):
            if msg.name == "bash":
                self._diffs[msg.call_id] = OutputDiff()
            events.append(
                ToolCallStarted(exec_id=xid, call_id=msg.call_id, name=msg.name, arguments=msg.args)
            )
        elif isinstance(msg, ToolUpdate):
            diff = self._diffs.get(msg.call_id)
            piece = diff.update(msg.text) if diff is not None else ""
            if piece:
                events.append(OutputChunk(exec_id=xid, stream="stdout", data=piece))
        else:
            diff = self._diffs.pop(msg.call_id, None)
            piece = diff.final(msg.output) if diff is not None else ""
            if piece:
                events.append(OutputChunk(exec_id=xid, stream="stdout", data=piece))
            events.append(
                ToolCallFinished(
                    exec_id=xid,
                    call_id=msg.call_id,
                    name=msg.name,
                    output=msg.output,
                    is_error=msg.is_error,
                )
            )

    # --- the end ------------------------------------------------------------------

    def should_settle(self, killing: bool) -> bool:
        """Ask pi whether it still streams before the result (it refuses prompts until not)."""
        return self.exit_code is None and not self.stuck and not killing

    def result(
        self,
        now: float,
        *,
        killing: bool = False,
        late_steers: int = 0,
        stderr_tail: str = "",
        stuck_why: str | None = None,
    ) -> ExecResult:
        """The exec's result, once :attr:`finished`.

        ``killing``: the agent is being killed; ``late_steers``: steers pi still holds
        (from the settle probe); ``stderr_tail``: pi's last stderr lines, for an exit;
        ``stuck_why``: why pi did not stop, as the agent's health reports it (default
        :func:`not_stopped`), so the exec and the agent give one reason.
        """
        reasons: list[str] = []
        if late_steers:
            reasons.append(
                f"{late_steers} steer message(s) came after the last turn; "
                "pi will deliver them with the next prompt"
            )
        # kill() aborts a busy pi before ending it: that abort is not the user's.
        killed = killing and self.stop_reason == "aborted" and not (self.aborted or self.timed_out)
        status: ExecStatus
        code: int | None
        if self.exit_code is not None or killed:
            status, code = ExecStatus.INTERRUPTED, None
            if killing:
                reasons.insert(0, "agent was killed")
            else:
                reasons.insert(
                    0,
                    f"pi exited with code {self.exit_code} during the exec"
                    + (f": {stderr_tail}" if stderr_tail else ""),
                )
        elif self.timed_out:
            status, code = ExecStatus.TIMED_OUT, 124
            reasons.insert(0, f"timed out after {self._timeout:g}s")
        elif self.aborted:
            status, code = ExecStatus.ABORTED, 130
            reasons.insert(0, "aborted")
        elif self.budget_stop and self.refusal is not None:
            status, code = ExecStatus.FAILED, 1
            why = self.refusal
            if self._calls_after_stop:
                why += (
                    f"; pi had already made {self._calls_after_stop} more model call(s) "
                    "before it stopped (counted)"
                )
            reasons.insert(0, why)
        elif self.stop_reason == "aborted":
            status, code = ExecStatus.ABORTED, 130
            reasons.insert(0, "aborted")
        elif self.prompt_error is not None:
            status, code = ExecStatus.FAILED, 1
            reasons.insert(0, self.prompt_error)
        elif self.stop_reason == "error":
            status, code = ExecStatus.FAILED, 1
            why = self.error or "the model call failed"
            if self.retries:
                why += f" (after {self.retries} retries)"
            reasons.insert(0, why)
        else:
            status, code = ExecStatus.SUCCEEDED, 0
            if self.stop_reason == "length":
                reasons.insert(0, "the model stopped at its output token limit")
        if self.stuck:
            # The engine then records the agent unhealthy with this same reason (its
            # health says so) until pi lets the run go: not idle, not silently busy.
            reasons.append(f"its command could not be ended: {stuck_why or not_stopped()}")
        return ExecResult(
            exec_id=self.exec_id,
            status=status,
            exit_code=code,
            output=self.output,
            usage=self.usage,
            cost_usd=self.cost,
            reason="; ".join(reasons),
            duration_s=now - self._started,
        )


def reported_cost(
    reported: float | None, usage: Usage, prices: ModelPrices | None
) -> Decimal | None:
    """pi's own cost report, preferred; tokens x price only if pi reported none.

    pi computes cost in binary floats (0.00011999999999999999 for 0.00012); rounding to
    1e-12 dollars restores the decimal figure. Without prices pi reports 0, which would
    be a lie: the cost is unknown.
    """
    if prices is None:
        return None
    if reported is None:
        return cost(usage, prices)
    return Decimal(repr(reported)).quantize(Decimal("1e-12")).normalize()


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_read_tokens=a.cache_read_tokens + b.cache_read_tokens,
        cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
    )
