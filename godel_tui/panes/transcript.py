"""The agent log's lines, made readable: pure text, no widgets.

The daemon stores an LLM agent's activity in the agent's log as it happens
(``core.activity.activity_line``: one ``system`` row per tool call, tool result, usage,
notice or refusal of an exec), so ``agent.logs`` is the one source of the transcript,
history and live alike, stitched by the daemon without gaps or repeats. Here those rows
become styled lines: a tool call on one line, a tool result as a count and its first
lines. Only activity outside an exec (a command refused before it ran, a circuit
breaker's transitions) is not stored; the pane shows those from the event feed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from core.activity import activity_line
from core.events import AgentActivity, ExecFinished, ExecStarted
from core.models import ExecStatus, RuntimeEvent

Line = tuple[str, str]  # (text, style)

RESULT_LINES = 6  # of a tool's output shown under its result line
ARG_CHARS = 300  # of a tool call's arguments
MARKED_MAX = 256  # exec ids remembered as already marked
# The store cuts a longer row in pieces of this many characters
# (core.engine.execs.OUTPUT_ROW_MAX); an activity line otherwise ends with a newline.
ROW_MAX = 64 * 1024

STREAM_STYLES = {"stdout": "", "stderr": "red", "system": "italic yellow"}
# The kinds core.activity writes to the stored log when they belong to an exec.
STORED_KINDS = frozenset({"tool_call", "tool_result", "usage", "policy", "notice"})
_USAGE = re.compile(r"^· (?P<model>.+?): (?P<inp>\d+) in / (?P<out>\d+) out, cost (?P<cost>.+)$")
# A row starting so is never the rest of a cut one: the exec's output cap notice.
_NOT_A_PIECE = ("output truncated:",)
_FINISH_STYLES = {
    ExecStatus.SUCCEEDED: "bold green",
    ExecStatus.ABORTED: "bold yellow",
}


def stored_in_log(ev: AgentActivity) -> bool:
    """True if ``agent.logs`` carries this activity already (not to be shown twice)."""
    return bool(ev.exec_id) and ev.kind in STORED_KINDS


_RUNTIME_EVENT: TypeAdapter[RuntimeEvent] = TypeAdapter(RuntimeEvent)


def stored_text(ev: AgentActivity) -> str:
    """The line the daemon stores for ``ev`` (for a replay, where no store is read)."""
    try:
        rt = _RUNTIME_EVENT.validate_python({**ev.data, "kind": ev.kind, "exec_id": ev.exec_id})
    except ValidationError:
        return ""
    return activity_line(rt)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _cut(text: str, limit: int = ARG_CHARS) -> str:
    first, _, rest = text.partition("\n")
    more = rest.count("\n") + 1 if rest else 0
    if len(first) > limit:
        first = first[:limit] + "…"
    return f"{first} (+{plural(more, 'line')})" if more else first


def _args(args: Any) -> str:
    if not isinstance(args, dict):
        return _cut(str(args))
    if isinstance(args.get("command"), str):
        return _cut(args["command"])
    if isinstance(args.get("path"), str):
        content = args.get("content")
        size = (
            f" ({plural(content.count(chr(10)) + 1, 'line')})" if isinstance(content, str) else ""
        )
        return _cut(args["path"]) + size
    return _cut(json.dumps(args, ensure_ascii=False)) if args else ""


def tool_call(first: str) -> list[Line]:
    """``→ NAME {json}`` as ``→ tool NAME: <command or path or arguments>``."""
    name, _, raw = first[2:].partition(" ")
    try:
        summary = _args(json.loads(raw)) if raw else ""
    except ValueError:  # cut by the store (a huge argument): show its start
        summary = _cut(raw)
    return [(f"→ tool {name}: {summary}" if summary else f"→ tool {name}", "bold cyan")]


def tool_result(text: str, exec_id: str | None) -> list[Line]:
    """``← NAME: OUTPUT`` (``✗`` for an error) as a count and the first lines."""
    error = text.startswith("✗")
    name, _, output = text[2:].partition(": ")
    lines = output.split("\n") if output else []
    what = f"✗ error {name}" if error else f"← result {name}"
    count = f"({plural(len(lines), 'line')})" if lines else "(no output)"
    out: list[Line] = [(f"{what} {count}", "bold red" if error else "green")]
    out += [(f"  │ {line}", "dim") for line in lines[:RESULT_LINES]]
    if len(lines) > RESULT_LINES:
        out.append((_more(len(lines) - RESULT_LINES, exec_id), "dim italic"))
    return out


def _more(n: int, exec_id: str | None) -> str:
    where = f": godel exec show {exec_id}" if exec_id else ""
    return f"  … {plural(n, 'more line')}{where}"


def usage(first: str) -> Line:
    m = _USAGE.match(first)
    if m is None:
        return (first, "magenta")
    cost = m["cost"] if m["cost"].startswith("$") else f"cost {m['cost']}"
    return (
        f"· tokens {int(m['inp']):,} in / {int(m['out']):,} out, {cost} ({m['model']})",
        "magenta",
    )


class Transcript:
    """Stored log rows to lines, for one agent. It remembers which execs have a start
    line already, and whether the last system row was a tool call or result that the
    store cut in pieces (a piece past the first is summarised, not shown)."""

    def __init__(self) -> None:
        self._marked: dict[str, None] = {}  # ordered set, bounded
        self._exec: str | None = None  # of the last row
        self._open: str | None = None  # "call" or "result": a following piece continues it

    def mark(self, exec_id: str) -> bool:
        """Record that ``exec_id`` has its start line; False if it had one already."""
        if exec_id in self._marked:
            return False
        self._marked[exec_id] = None
        if len(self._marked) > MARKED_MAX:
            del self._marked[next(iter(self._marked))]
        return True

    def row(self, stream: str, data: str, exec_id: str | None) -> tuple[list[Line], str]:
        """One stored row: (whole lines to write first, output to write as a stream)."""
        lines: list[Line] = []
        if exec_id and exec_id != self._exec:
            self._open = None
            if self.mark(exec_id):
                lines.append((f"▶ exec {exec_id}", "bold cyan"))
        self._exec = exec_id
        if stream != "system":
            self._open = None
            return lines, data
        return lines + self._system(data, exec_id), ""

    def _system(self, data: str, exec_id: str | None) -> list[Line]:
        text = data.rstrip("\n")
        first = text.partition("\n")[0]
        was, self._open = self._open, None
        cut = len(data) >= ROW_MAX or not data.endswith("\n")  # more of it follows
        if was is not None and not first.startswith(_NOT_A_PIECE):
            self._open = was if cut else None
            if was == "result":  # the rest of a long tool output
                return [(_more(text.count("\n") + 1, exec_id), "dim italic")]
            return []  # the rest of a huge argument: already cut on the call line
        if first.startswith("→ "):
            self._open = "call" if cut else None
            return tool_call(first)
        if first.startswith(("← ", "✗ ")):
            self._open = "result" if cut else None
            return tool_result(text, exec_id)
        if _USAGE.match(first):
            return [usage(first)]
        if first.startswith("! "):
            return [(line, "bold red") for line in text.split("\n")]
        return [(line, STREAM_STYLES["system"]) for line in text.split("\n")]


def started(ev: ExecStarted) -> Line:
    what = _cut(ev.input, 200)
    return (f"▶ exec {ev.exec_id}: {what}" if what else f"▶ exec {ev.exec_id}", "bold cyan")


def finished(ev: ExecFinished) -> Line:
    parts = [f"■ exec {ev.exec_id} {ev.status.value}"]
    if ev.exit_code is not None and ev.status is not ExecStatus.SUCCEEDED:
        parts.append(f"(exit {ev.exit_code})")
    d = ev.duration_s
    parts.append(f"in {d * 1000:.0f} ms" if d < 1 else f"in {d:.1f} s")
    if ev.cost_usd is not None:
        parts.append(f"· ${ev.cost_usd}")
    text = " ".join(parts) + (f": {ev.reason}" if ev.reason else "")
    return (text, _FINISH_STYLES.get(ev.status, "bold red"))


def activity(ev: AgentActivity) -> Line:
    """An activity the stored log does not carry."""
    d = ev.data
    if ev.kind == "policy":
        return (f"! refused ({d.get('rule', '?')}): {d.get('detail', '')}", "bold red")
    if ev.kind == "breaker":
        return (
            f"· circuit breaker {d.get('from', '?')} → {d.get('to', '?')}: {d.get('reason', '')}",
            "yellow",
        )
    return (f"· {ev.kind}: {_cut(json.dumps(d, ensure_ascii=False))}", "italic yellow")
