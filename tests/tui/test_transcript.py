"""Stored log rows to the agent log's lines: the rows are made by core.activity, as the
daemon stores them, so a change of that format shows here."""

from __future__ import annotations

from decimal import Decimal

from core.activity import activity_line
from core.events import AgentActivity
from core.models import ToolCallFinished, ToolCallStarted, TurnUsage, Usage
from godel_tui.panes.transcript import RESULT_LINES, ROW_MAX, Transcript, stored_in_log, stored_text

X = "exec-1"


def call(name: str, **args: object) -> str:
    return activity_line(ToolCallStarted(exec_id=X, call_id="c", name=name, arguments=args))


def result(output: str, error: bool = False) -> str:
    return activity_line(
        ToolCallFinished(exec_id=X, call_id="c", name="bash", output=output, is_error=error)
    )


def test_a_tool_call_is_one_line_naming_what_it_runs() -> None:
    t = Transcript()
    lines, out = t.row("system", call("bash", command="ls -la\nwc -l"), X)
    assert out == ""
    assert lines == [("▶ exec exec-1", "bold cyan"), ("→ tool bash: ls -la (+1 line)", "bold cyan")]
    assert t.row("system", call("write", path="a.txt", content="1\n2\n3"), X)[0] == [
        ("→ tool write: a.txt (3 lines)", "bold cyan")
    ]


def test_a_tool_result_shows_its_size_and_first_lines() -> None:
    t = Transcript()
    t.row("stdout", "x", X)
    output = "\n".join(f"out {i}" for i in range(20))
    lines, _ = t.row("system", result(output), X)
    assert lines[0] == ("← result bash (20 lines)", "green")
    assert [text for text, _ in lines[1:-1]] == [f"  │ out {i}" for i in range(RESULT_LINES)]
    assert lines[-1][0] == f"  … {20 - RESULT_LINES} more lines: godel exec show {X}"
    assert t.row("system", result("boom", error=True), X)[0][0] == (
        "✗ error bash (1 line)",
        "bold red",
    )
    assert t.row("system", result(""), X)[0] == [("← result bash (no output)", "green")]


def test_a_result_cut_by_the_store_is_summarised_not_shown() -> None:
    t = Transcript()
    row = result("y\n" * 40_000)
    first, rest = row[:ROW_MAX], row[ROW_MAX:]
    head, _ = t.row("system", first, X)
    assert head[1][0].startswith("← result bash")  # after the exec start line
    assert t.row("system", rest, X)[0] == [
        (f"  … {rest.count(chr(10)):,} more lines: godel exec show {X}", "dim italic")
    ]
    usage = TurnUsage(
        exec_id=X, model="m", usage=Usage(input_tokens=1200, output_tokens=5), cost_usd=Decimal(1)
    )
    # The piece ended with the row's newline: the next row is a row of its own.
    assert t.row("system", activity_line(usage), X)[0] == [
        ("· tokens 1,200 in / 5 out, $1.000000 (m)", "magenta")
    ]


def test_output_streams_and_exec_starts() -> None:
    t = Transcript()
    assert t.row("stderr", "err\n", X) == ([("▶ exec exec-1", "bold cyan")], "err\n")
    assert t.row("stdout", "out", X) == ([], "out")
    assert t.row("stdout", "next", "exec-2")[0] == [("▶ exec exec-2", "bold cyan")]
    assert t.row("stdout", "again", X)[0] == []  # marked once, even if it shows up again
    assert t.row("system", "output truncated: 5 bytes not kept\n", X)[0] == [
        ("output truncated: 5 bytes not kept", "italic yellow")
    ]


def test_only_activity_outside_the_stored_log_comes_from_events() -> None:
    tool = AgentActivity(agent_id="a", exec_id=X, kind="tool_call", data={"name": "bash"})
    refused = AgentActivity(agent_id="a", exec_id="", kind="policy", data={"rule": "deny"})
    breaker = AgentActivity(agent_id="a", exec_id="", kind="breaker", data={})
    assert stored_in_log(tool)
    assert not stored_in_log(refused) and not stored_in_log(breaker)


def test_a_replayed_activity_reads_as_the_stored_line() -> None:
    ev = ToolCallStarted(exec_id=X, call_id="c", name="bash", arguments={"command": "ls"})
    data = ev.model_dump(mode="json", exclude={"kind", "exec_id"})
    activity = AgentActivity(agent_id="a", exec_id=X, kind="tool_call", data=data)
    assert stored_text(activity) == activity_line(ev)
    assert stored_text(AgentActivity(agent_id="a", exec_id=X, kind="nope")) == ""
