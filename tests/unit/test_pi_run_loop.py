"""pi's run loop (``core.runtimes.pi.run_loop``) fed recordings of the real pi; no Node.

The recordings under ``tests/fixtures/pi`` are what pi 0.73.1 wrote on stdout, line for
line, with the commands sent to it (``scripts/record_pi_jsonl.py`` makes them). A replay
does what ``PiRuntime.exec`` does: every line through the parser, the answer to the
prompt and to the abort as facts, a wait that runs out as a ``Tick``, on a fake clock
(one line every 10 ms).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest

from core.llm.catalog_types import ModelPrices
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
    Response,
    RetryEnd,
    RetryStart,
    parse_line,
)
from core.runtimes.pi.run_loop import (
    ERROR_GRACE_S,
    RETRY_GRACE_S,
    STOP_WAIT_S,
    AbortAnswered,
    AbortRequested,
    AbortSent,
    BudgetRefused,
    Exited,
    Fact,
    PromptAnswered,
    RunLoop,
    Tick,
    reported_cost,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pi"
PRICES = ModelPrices(input_mtok=Decimal(1), output_mtok=Decimal(2))  # what was recorded with
LINE_S = 0.01
ABORT = {"type": "abort"}
Stop = Literal["user", "timeout", "kill"]


def recording(name: str) -> tuple[list[bytes], dict[str, Any]]:
    lines = (FIXTURES / f"{name}.jsonl").read_bytes().splitlines()
    meta = json.loads((FIXTURES / f"{name}.sent.json").read_text())
    return lines, meta


def recorded_usage(name: str) -> Usage:
    """The assistant messages' usage summed from the raw JSON (not through the parser)."""
    total = Usage()
    for line in recording(name)[0]:
        obj = json.loads(line)
        msg = obj.get("message", {})
        if obj["type"] == "message_end" and msg.get("role") == "assistant":
            u = msg["usage"]
            total = Usage(
                input_tokens=total.input_tokens + u["input"],
                output_tokens=total.output_tokens + u["output"],
            )
    return total


def expected_cost(usage: Usage) -> Decimal:
    return (
        usage.input_tokens * PRICES.input_mtok + usage.output_tokens * PRICES.output_mtok
    ) / Decimal(1_000_000)


@dataclass
class Replay:
    machine: RunLoop
    events: list[RuntimeEvent] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    finished_at: str = ""  # the type of the last fact fed
    unread: list[bytes] = field(default_factory=list)  # lines after the exec finished
    result: ExecResult | None = None
    now: float = 0.0

    def feed(self, fact: Fact) -> None:
        step = self.machine.feed(fact, self.now)
        self.events.extend(step.events)
        self.commands.extend(step.commands)
        for command in step.commands:
            if command == ABORT:  # what the driver does: send it, which is a fact too
                self.machine.feed(AbortSent(), self.now)
        self.finished_at = type(fact).__name__
        assert step.done == self.machine.finished

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.of(AssistantText))

    @property
    def stdout(self) -> str:
        return "".join(e.data for e in self.of(OutputChunk))

    @property
    def notices(self) -> list[str]:
        return [e.message for e in self.of(RuntimeNotice)]


def replay(
    name: str,
    *,
    stop: Stop = "user",
    timeout: float | None = None,
    exit_after: int | None = None,
    prices: ModelPrices | None = PRICES,
    retry: bool = True,
) -> Replay:
    """Feed recording ``name`` to a fresh run loop, as the runtime would, to its result.

    ``stop`` says who sent the recorded abort (the user's ``abort()``, a timeout, or
    ``kill()``); ``exit_after``: pi dies after that many lines.
    """
    lines, meta = recording(name)
    sent: dict[int, list[dict[str, Any]]] = {}
    for s in meta["sent"]:
        sent.setdefault(s["after_line"], []).append(s["command"])
    prompt_at = next(s["after_line"] for s in meta["sent"] if s["command"]["type"] == "prompt")
    started = prompt_at * LINE_S
    machine = RunLoop(
        "exec-1", model="scripted", prices=prices, retry=retry, started=started, timeout=timeout
    )
    r = Replay(machine, now=started)
    for i in range(prompt_at, len(lines)):
        if machine.finished:
            r.unread = lines[i:]
            break
        r.now = max(r.now, i * LINE_S)
        if exit_after is not None and i == exit_after:
            r.feed(Exited(-9))
            continue
        for command in sent.get(i, []):
            if command["type"] != "abort":
                continue  # the steer changes nothing here: pi reports its delivery
            if stop == "timeout":
                deadline = machine.next_deadline()
                assert deadline is not None and timeout is not None
                assert deadline == pytest.approx(started + timeout)
                r.now = deadline
                r.feed(Tick())  # the machine asks for the abort itself
            else:
                if stop == "user":
                    r.feed(AbortRequested())
                r.feed(AbortSent())
        msg = parse_line(lines[i])
        assert msg is not None
        if isinstance(msg, Response):
            if msg.command == "prompt":
                r.feed(PromptAnswered(msg))
            elif msg.command == "abort":
                r.feed(AbortAnswered())
            continue  # get_state and steer answers go to whoever asked, not to the exec
        r.feed(msg)
    while not machine.finished:  # nothing more to read: the waits run out
        deadline = machine.next_deadline()
        assert deadline is not None, "the loop would wait for ever"
        r.now = max(r.now, deadline)
        r.feed(Tick())
    r.result = machine.result(r.now + LINE_S, killing=stop == "kill", stderr_tail="tail")
    return r


def only_fence_left(r: Replay) -> bool:
    """Everything pi wrote for the prompt was read before the exec finished."""
    return [json.loads(line)["id"] for line in r.unread] == ["fence-0"]


# --- recordings ---------------------------------------------------------------------


def test_plain_answer() -> None:
    r = replay("answer")
    assert r.result is not None
    assert r.result.status is ExecStatus.SUCCEEDED and r.result.exit_code == 0
    assert r.text == r.result.output == "You said: hello there"
    assert r.finished_at == "AgentEnd" and only_fence_left(r)
    assert r.commands == [] and r.notices == []
    usage = recorded_usage("answer")
    assert r.result.usage == usage and usage.output_tokens > 0
    assert r.result.cost_usd == expected_cost(usage)
    (turn,) = r.of(TurnUsage)
    assert turn.model == "scripted" and turn.usage == usage and turn.cost_usd == r.result.cost_usd
    assert r.result.reason == ""
    assert r.result.duration_s == pytest.approx(r.now + LINE_S - 1 * LINE_S)


@pytest.mark.parametrize("name", ["echo_hello", "echo_hello_anthropic"])
def test_bash_tool_call(name: str) -> None:
    r = replay(name)
    assert r.result is not None and r.result.status is ExecStatus.SUCCEEDED
    (started,) = r.of(ToolCallStarted)
    (finished,) = r.of(ToolCallFinished)
    assert (started.name, started.arguments) == ("bash", {"command": "echo hello"})
    assert (finished.call_id, finished.output, finished.is_error) == (
        started.call_id,
        "hello\n",
        False,
    )
    assert r.stdout == "hello\n"  # bash output also streams as stdout
    # Started, its output, finished: in that order.
    kinds = [type(e) for e in r.events if not isinstance(e, AssistantText | TurnUsage)]
    assert kinds == [ToolCallStarted, OutputChunk, ToolCallFinished]
    assert r.result.output == r.text == "Ran `echo hello`; output:\nhello\n"
    usage = recorded_usage(name)
    assert r.result.usage == usage
    turns = r.of(TurnUsage)
    assert len(turns) == 2
    assert sum(t.usage.total_tokens for t in turns) == usage.total_tokens
    # pi's float dollars (0.0006119999999999999 in the anthropic run) come out exact.
    assert r.result.cost_usd == expected_cost(usage)
    assert sum((t.cost_usd or Decimal(0) for t in turns), Decimal(0)) == r.result.cost_usd
    assert only_fence_left(r)


def test_failing_command() -> None:
    r = replay("failing_command")
    (finished,) = r.of(ToolCallFinished)
    assert finished.is_error and finished.output == "oops\n\n\nCommand exited with code 3"
    # The output as it streamed, then the rest of pi's final text (its status line).
    assert [e.data for e in r.of(OutputChunk)] == ["oops\n", "\n\nCommand exited with code 3"]
    # The command failed, the exec did not: the model answered about it.
    assert r.result is not None and r.result.status is ExecStatus.SUCCEEDED
    assert r.result.output.endswith("Command exited with code 3")


def test_server_error_ends_after_pis_retries() -> None:
    r = replay("server_error_retries")
    assert r.result is not None
    assert r.result.status is ExecStatus.FAILED and r.result.exit_code == 1
    assert r.result.reason == "503 scripted failure: HTTP 503 (after 2 retries)"
    # Ended by auto_retry_end, not by any of the three agent_end before it.
    assert r.finished_at == "RetryEnd" and only_fence_left(r)
    assert r.notices == [
        "model call failed (503 scripted failure: HTTP 503); retry 1/2 in 200 ms",
        "model call failed (503 scripted failure: HTTP 503); retry 2/2 in 400 ms",
    ]
    assert r.of(TurnUsage) == [] and r.result.usage == Usage()
    assert r.result.cost_usd == Decimal(0)


def test_an_erroring_agent_end_waits_for_a_retry() -> None:
    lines, _ = recording("server_error_retries")
    m = RunLoop("x", model="m", prices=None, retry=True, started=0.0, timeout=None)
    first_end = next(i for i, line in enumerate(lines) if b'"type":"agent_end"' in line)
    for line in lines[2 : first_end + 1]:
        msg = parse_line(line)
        assert msg is not None
        m.feed(msg, 1.0)
    # A 503 is retryable: the longer grace; then auto_retry_start ends the wait.
    assert not m.finished and m.next_deadline() == 1.0 + RETRY_GRACE_S
    msg = parse_line(lines[first_end + 1])
    assert isinstance(msg, RetryStart)
    m.feed(msg, 1.1)
    assert m.next_deadline() is None and not m.finished


def test_client_error_ends_after_the_short_grace() -> None:
    r = replay("client_error")
    assert r.result is not None
    assert r.result.status is ExecStatus.FAILED and r.result.exit_code == 1
    assert r.result.reason == "400 scripted failure: HTTP 400"
    # No retry follows a 400: the grace period ran out (a Tick), no retry notice.
    assert r.finished_at == "Tick" and r.notices == []
    agent_end_at = next(
        i for i, line in enumerate(recording("client_error")[0]) if b"agent_end" in line
    )
    assert r.now == pytest.approx(agent_end_at * LINE_S + ERROR_GRACE_S)


def test_user_abort_mid_tool() -> None:
    r = replay("abort_mid_tool")
    assert r.result is not None
    assert r.result.status is ExecStatus.ABORTED and r.result.exit_code == 130
    assert r.result.reason == "aborted"
    (finished,) = r.of(ToolCallFinished)
    assert finished.is_error and finished.output == "Command aborted"
    # pi's agent_end comes first; the exec ends at the abort's answer, which follows it.
    assert r.finished_at == "AbortAnswered" and only_fence_left(r)
    assert r.commands == []  # abort() sent it, not the loop


def test_timeout_mid_tool() -> None:
    r = replay("abort_mid_tool", stop="timeout", timeout=0.5)
    assert r.result is not None
    assert r.result.status is ExecStatus.TIMED_OUT and r.result.exit_code == 124
    assert r.result.reason == "timed out after 0.5s"
    assert r.commands == [ABORT]
    assert r.finished_at == "AbortAnswered"


def test_kill_mid_tool_is_an_interruption() -> None:
    # kill() aborts a busy pi first: the aborted run is not the user's abort.
    r = replay("abort_mid_tool", stop="kill")
    assert r.result is not None
    assert r.result.status is ExecStatus.INTERRUPTED and r.result.exit_code is None
    assert r.result.reason == "agent was killed"


def test_pi_exiting_mid_tool() -> None:
    lines, _ = recording("abort_mid_tool")
    tool_start = next(i for i, line in enumerate(lines) if b"tool_execution_start" in line)
    r = replay("abort_mid_tool", exit_after=tool_start + 1)
    assert r.result is not None
    assert r.result.status is ExecStatus.INTERRUPTED and r.result.exit_code is None
    assert r.result.reason == "pi exited with code -9 during the exec: tail"
    assert r.finished_at == "Exited"
    assert not r.machine.should_settle(killing=False)  # nobody to ask


def test_steer_delivered_between_turns() -> None:
    r = replay("steer")
    assert r.result is not None and r.result.status is ExecStatus.SUCCEEDED
    assert r.notices == ["steer delivered: also say banana"]
    assert r.result.output == "You said: also say banana"
    assert len(r.of(TurnUsage)) == 2
    assert only_fence_left(r)


@pytest.mark.parametrize("name", ["answer", "echo_hello", "failing_command", "steer"])
def test_unknown_prices_mean_unknown_cost(name: str) -> None:
    r = replay(name, prices=None)
    assert r.result is not None and r.result.cost_usd is None
    assert r.result.usage.total_tokens > 0
    assert {t.cost_usd for t in r.of(TurnUsage)} == {None}


# --- facts no recording has ----------------------------------------------------------


def loop(timeout: float | None = None) -> RunLoop:
    return RunLoop("x", model="m", prices=PRICES, retry=True, started=0.0, timeout=timeout)


def ok(command: str) -> PromptAnswered:
    return PromptAnswered(Response(command=command, success=True, id="godel-1"))


def test_a_refused_prompt_fails_the_exec() -> None:
    m = loop()
    step = m.feed(PromptAnswered(Response("prompt", False, "godel-1", "busy")), 0.1)
    assert step.done and m.over
    assert m.should_settle(killing=False)
    result = m.result(0.2)
    assert result.status is ExecStatus.FAILED and result.reason == "busy"


def test_an_abort_before_pi_took_the_prompt_is_sent_once_it_has() -> None:
    m = loop()
    assert m.feed(AbortRequested(), 0.1).commands == ()  # nothing to stop yet
    assert m.aborted
    step = m.feed(ok("prompt"), 0.2)
    assert step.commands == (ABORT,) and not step.done
    m.feed(AbortSent(), 0.2)
    assert m.feed(ok("prompt"), 0.2).commands == ()  # already sent


def test_a_run_starting_after_the_abort_was_answered_is_aborted_too() -> None:
    m = loop()
    m.feed(ok("prompt"), 0.0)
    m.feed(AbortRequested(), 0.1)
    m.feed(AbortSent(), 0.1)
    m.feed(AgentEnd("error", "503 overloaded"), 0.2)
    m.feed(AbortAnswered(), 0.2)
    step = m.feed(AgentStart(), 0.3)  # pi's retry began anyway
    assert step.commands == (ABORT,) and not step.done
    m.feed(AbortSent(), 0.3)
    m.feed(AgentEnd("aborted", None), 0.4)
    assert not m.finished  # the second abort is not answered yet
    m.feed(AbortAnswered(), 0.5)
    assert m.finished
    assert m.result(0.5).status is ExecStatus.ABORTED


def test_a_timeout_before_pi_took_the_prompt() -> None:
    m = loop(timeout=1.0)
    assert m.next_deadline() == 1.0
    step = m.feed(Tick(), 1.0)
    assert step.commands == () and m.timed_out  # not accepted: nothing to abort yet
    assert m.next_deadline() == 1.0 + STOP_WAIT_S
    assert m.feed(ok("prompt"), 1.1).commands == (ABORT,)


def test_pi_not_stopping_when_asked_is_stuck() -> None:
    m = loop()
    m.feed(ok("prompt"), 0.0)
    m.feed(AbortRequested(), 1.0)
    m.feed(AbortSent(), 1.0)
    assert m.next_deadline() == 1.0 + STOP_WAIT_S
    assert not m.feed(Tick(), 5.0).done  # early: nothing happens
    step = m.feed(Tick(), 1.0 + STOP_WAIT_S)
    assert step.done and m.stuck and not m.should_settle(killing=False)
    result = m.result(12.0)
    assert result.status is ExecStatus.ABORTED
    # The agent's health gives the same reason; the engine marks the agent unhealthy.
    assert result.reason == (
        f"aborted; its command could not be ended: pi did not stop within {STOP_WAIT_S:g}s "
        "of the abort"
    )
    assert "busy" not in result.reason
    frozen = m.result(12.0, stuck_why="the pi process is stopped (frozen)")
    assert frozen.reason == (
        "aborted; its command could not be ended: the pi process is stopped (frozen)"
    )


def test_an_error_pi_does_not_retry_gets_the_short_grace() -> None:
    m = RunLoop("x", model="m", prices=None, retry=False, started=0.0, timeout=None)
    m.feed(ok("prompt"), 0.0)
    m.feed(AgentEnd("error", "503 overloaded"), 1.0)  # retryable, but retries are off
    assert m.next_deadline() == 1.0 + ERROR_GRACE_S


def test_retries_that_succeed() -> None:
    m = loop()
    m.feed(ok("prompt"), 0.0)
    m.feed(AgentEnd("error", "503 overloaded"), 0.1)
    m.feed(RetryStart(1, 2, 200, "503 overloaded"), 0.1)
    m.feed(AgentStart(), 0.3)
    usage = Usage(input_tokens=10, output_tokens=2)
    m.feed(AssistantMessageEnd("done", "stop", None, usage, 0.000014), 0.4)
    step = m.feed(RetryEnd(True, 1, None), 0.4)
    assert [e.message for e in step.events if isinstance(e, RuntimeNotice)] == ["retry 1 succeeded"]
    assert m.feed(AgentEnd("stop", None), 0.5).done
    result = m.result(0.5)
    assert result.status is ExecStatus.SUCCEEDED and result.output == "done"
    assert result.cost_usd == Decimal("0.000014")


def test_length_and_late_steers_are_reasons() -> None:
    m = loop()
    m.feed(ok("prompt"), 0.0)
    m.feed(AssistantMessageEnd("cut", "length", None, Usage(output_tokens=5), None), 0.1)
    m.feed(AgentEnd("length", None), 0.1)
    result = m.result(0.2, late_steers=2)
    assert result.status is ExecStatus.SUCCEEDED
    assert result.reason == (
        "the model stopped at its output token limit; 2 steer message(s) came after "
        "the last turn; pi will deliver them with the next prompt"
    )
    assert result.cost_usd == expected_cost(Usage(output_tokens=5))  # no report: tokens x price


def test_reported_cost_rounds_pis_floats() -> None:
    usage = Usage(input_tokens=120)
    assert reported_cost(0.00011999999999999999, usage, PRICES) == Decimal("0.00012")
    assert reported_cost(0.0, usage, None) is None


def test_a_budget_refusal_stops_pi_at_the_end_of_the_turn() -> None:
    """The gate is asked after the tool-calling message; its refusal sends the abort at
    that turn's end (the tool has run). Here pi had already made its next call (the
    recording goes on): it is counted, and said."""
    lines, meta = recording("echo_hello")
    prompt_at = next(s["after_line"] for s in meta["sent"] if s["command"]["type"] == "prompt")
    machine = RunLoop(
        "exec-1", model="scripted", prices=PRICES, retry=True, started=0.0, timeout=None
    )
    gates = 0
    commands: list[dict[str, Any]] = []
    events: list[RuntimeEvent] = []
    for line in lines[prompt_at:]:
        msg = parse_line(line)
        assert msg is not None
        if isinstance(msg, Response):
            if msg.command != "prompt":
                continue
            step = machine.feed(PromptAnswered(msg), 0.0)
        else:
            step = machine.feed(msg, 0.0)
        events.extend(step.events)
        if step.commands:
            commands.extend(step.commands)
            # The abort goes out after the tool finished, and before any later output.
            assert [type(e) for e in events if isinstance(e, ToolCallFinished)]
            machine.feed(AbortSent(), 0.0)
        if step.gate:
            gates += 1
            machine.feed(BudgetRefused("budget exhausted: project at $1.01 of $1.00"), 0.0)
    assert gates == 1 and commands == [ABORT]
    assert not machine.finished  # pi has not answered the abort yet
    machine.feed(AbortAnswered(), 0.0)
    assert machine.finished
    result = machine.result(1.0)
    assert (result.status, result.exit_code) == (ExecStatus.FAILED, 1)
    assert result.reason == (
        "budget exhausted: project at $1.01 of $1.00; pi had already made 1 more model "
        "call(s) before it stopped (counted)"
    )
    assert result.usage == recorded_usage("echo_hello")
    assert result.cost_usd == expected_cost(result.usage)
