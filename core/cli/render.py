"""Pure renderers: the daemon's JSON replies to table rows and lines (no I/O here).

They take the plain dicts the daemon sends (shapes in ``core.api.shapes``) and import
neither pydantic nor the engine, so read-only commands stay fast. A key the reply lacks
shows as ``?`` (a daemon older or newer than this client), a null one as ``-``.
Renderers of benchmarks and streamed exec results take them as typed objects, imported
only for type checking; the commands that build them load them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from core.api.shapes import (
        AgentObject,
        AuditEntryObject,
        ExecObject,
        ExecShowObject,
        ModelObject,
        RuntimeObject,
        TaskObject,
        VerifyReport,
    )
    from core.api.shapes import LogLine as LogLineObject
    from core.models import ExecResult, RuntimeEvent

UNKNOWN = "?"  # the reply lacks the field
NONE = "-"  # the field is null: there is none (no swarm, no task, cost not known)

# How the seed system named runtimes in its messages ("Spawned Pi agent: pi-...").
_RUNTIME_LABELS = {"pi": "Pi"}


def runtime_label(runtime: str) -> str:
    return _RUNTIME_LABELS.get(runtime, runtime)


@functools.cache
def _event_adapter() -> TypeAdapter[RuntimeEvent]:
    # Loaded on the first streamed exec event only: pydantic costs ~0.1 s to import.
    from pydantic import TypeAdapter

    from core.models import RuntimeEvent

    return TypeAdapter(RuntimeEvent)


def exec_event_text(data: Any) -> tuple[str, str]:
    """(stream, text) to print for one streamed exec event; text "" prints nothing."""
    from pydantic import ValidationError

    from core.activity import activity_line

    try:
        ev = _event_adapter().validate_python(data)
    except ValidationError:
        return "stderr", ""
    if ev.kind == "output":
        return ev.stream, ev.data
    if ev.kind == "assistant_text":
        return "stdout", ev.text
    if ev.kind == "usage":
        return "stderr", ""  # summed up at the end
    return "stderr", activity_line(ev)


def money(value: object) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def usd(value: object) -> str:
    """``$0.001408``, ``$1.2``: a cost as sent (a decimal string); ``-`` when unknown.

    Unknown is never shown as 0: a price or a usage report was missing.
    """
    if value is None:
        return NONE
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return UNKNOWN
    text = f"{d:.6f}".rstrip("0").rstrip(".")
    return f"${text}"


def exec_summary(result: ExecResult) -> str:
    """``tokens: 1,384 in / 12 out · cost $0.001408`` for LLM execs; "" for shell ones."""
    u = result.usage
    if u.total_tokens == 0 and result.cost_usd is None:
        return ""
    cache = ""
    if u.cache_read_tokens or u.cache_write_tokens:
        cache = f" ({u.cache_read_tokens:,} cache read, {u.cache_write_tokens:,} cache write)"
    return (
        f"tokens: {u.input_tokens:,} in / {u.output_tokens:,} out{cache} · "
        f"cost {money(result.cost_usd)} · {result.duration_s:.2f}s"
    )


def exec_failure(exec_id: str, status: str, reason: str) -> str:
    """``exec exec-ab12 failed: the model endpoint ... refused the connection`` (the
    status as ``exec show`` and ``--json`` name it)."""
    why = f": {reason}" if reason and reason != status.replace("_", " ") else ""
    return f"exec {exec_id or '(not started)'} {status}{why}"


MODEL_HEADERS = ("NAME", "PROVIDER", "API", "UPSTREAM ID", "IN/MTOK", "OUT/MTOK", "PRICES", "KEY")


def model_row(m: ModelObject) -> tuple[str, ...]:
    p = m.get("prices")
    key_state = "set" if m.get("api_key_set") else "NOT SET"
    key = "not needed" if m.get("scripted") else f"{m.get('api_key_env')} {key_state}"
    return (
        m["name"],
        m.get("provider", UNKNOWN),
        m.get("api", UNKNOWN),
        m.get("upstream_id", UNKNOWN),
        "?" if p is None else f"${p['input_mtok']}",
        "?" if p is None else f"${p['output_mtok']}",
        "unknown" if p is None else p.get("source") or "unknown",
        key,
    )


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time from a reply (UTC when it names no zone); None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def ago(when: datetime, now: datetime | None = None) -> str:
    """``4s``, ``3m``, ``2h``, ``5d``: how long ago, compact like kubectl's AGE."""
    now = now or datetime.now(UTC)
    s = max(0, int((now - when).total_seconds()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _utc(t: datetime | None) -> str:
    return UNKNOWN if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago_at(value: object, now: datetime | None = None) -> str:
    """``ago`` of a reply's ISO time; ``?`` when the reply has none."""
    t = parse_time(value)
    return UNKNOWN if t is None else ago(t, now)


def _text(obj: Mapping[str, Any], key: str) -> str:
    """A field as text: ``?`` when absent, ``-`` when null or empty."""
    if key not in obj:
        return UNKNOWN
    value = obj[key]
    return NONE if value is None or value == "" else str(value)


AGENT_HEADERS = ("ID", "NAME", "SWARM", "RUNTIME", "STATUS", "TASK", "TOKENS", "COST")


def agent_status(a: AgentObject, now: datetime | None = None) -> str:
    """``busy (probe, 3s)``: the status, where it came from and how long ago."""
    source = a.get("status_source") or UNKNOWN
    return f"{a.get('status') or UNKNOWN} ({source}, {ago_at(a.get('status_at'), now)})"


def agent_tokens(a: AgentObject) -> str:
    tokens = a.get("tokens")
    if not isinstance(tokens, Mapping) or not isinstance(tokens.get("total"), int):
        return UNKNOWN
    return f"{tokens['total']:,}"


def agent_cost(a: AgentObject) -> str:
    """``$0.0014``; ``-`` unknown; ``≥$0.0014`` when some execs' price was unknown."""
    if "cost_usd" not in a:
        return UNKNOWN
    cost = usd(a["cost_usd"])
    return f"≥{cost}" if a.get("cost_unknown_execs") and cost.startswith("$") else cost


def agent_row(a: AgentObject, now: datetime | None = None) -> tuple[str, ...]:
    return (
        _text(a, "id"),
        _text(a, "name"),
        _text(a, "swarm"),
        _text(a, "runtime"),
        agent_status(a, now),
        _text(a, "current_task"),
        agent_tokens(a),
        agent_cost(a),
    )


RUNTIME_HEADERS = ("NAME", "CAPABILITIES", "SOURCE", "DESCRIPTION")


def runtime_row(r: RuntimeObject) -> tuple[str, ...]:
    error = r.get("error")
    desc = r.get("description", UNKNOWN) if error is None else f"FAILED TO LOAD: {error}"
    return (r["name"], ",".join(r.get("capabilities", [])) or NONE, _text(r, "source"), desc)


AUDIT_HEADERS = ("SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "RESULT")


def audit_row(e: AuditEntryObject) -> tuple[str, ...]:
    ts = parse_time(e.get("ts"))
    return (
        str(e["seq"]),
        UNKNOWN if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        _text(e, "actor"),
        _text(e, "action"),
        _text(e, "subject"),
        _text(e, "result"),
    )


def verify_summary(report: VerifyReport) -> str:
    """The one line ``godel audit verify`` prints (as ``core.audit.VerifyReport``)."""
    if report["ok"]:
        return f"audit chain intact: {report['checked']} entries verified"
    return f"audit chain broken at entry {report['first_bad_seq']}: {report['problem']}"


EXEC_HEADERS = ("EXEC", "STATUS", "EXIT", "STARTED", "INPUT")


def exec_row(x: ExecObject, now: datetime | None = None) -> tuple[str, ...]:
    text = x.get("input", "")
    inp = text if len(text) <= 50 else text[:47] + "..."
    exit_code = x.get("exit_code")
    return (
        x["id"],
        _text(x, "status"),
        NONE if exit_code is None else str(exit_code),
        ago_at(x.get("started_at"), now) + " ago",
        inp.replace("\n", " "),
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain aligned columns (like kubectl): easy to read and to grep."""
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for r in (headers, *rows):
        cells = [c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def breaker_text(a: AgentObject, now: datetime | None = None) -> str:
    """``open (2m ago): 5 consecutive failures; open for 30s``; ``?`` from an older daemon."""
    state = a.get("breaker")
    if not state:
        return UNKNOWN
    since = f" ({ago_at(a.get('breaker_at'), now)} ago)" if a.get("breaker_at") else ""
    detail = a.get("health_detail")
    return f"{state}{since}{': ' + detail if detail else ''}"


def agent_detail(
    a: AgentObject, execs: Sequence[ExecObject] | None, now: datetime | None = None
) -> str:
    """``godel agent get``; ``execs`` None when the daemon could not list them."""
    created = parse_time(a.get("created_at"))
    tokens = a.get("tokens")
    if isinstance(tokens, Mapping):
        token_text = (
            f"{tokens.get('total', 0):,} ({tokens.get('input', 0):,} in, "
            f"{tokens.get('output', 0):,} out, {tokens.get('cache_read', 0):,} cache read, "
            f"{tokens.get('cache_write', 0):,} cache write)"
        )
    else:
        token_text = UNKNOWN
    skills = a.get("skills")
    lines = [
        f"ID:         {_text(a, 'id')}",
        f"Name:       {_text(a, 'name')}",
        f"Swarm:      {_text(a, 'swarm')}",
        f"Runtime:    {_text(a, 'runtime')}",
        f"Model:      {_text(a, 'model')}",
        f"Skills:     {UNKNOWN if skills is None else ', '.join(skills) or NONE}",
        f"Workspace:  {_text(a, 'workspace')}",
        f"PID:        {_text(a, 'pid')}",
        f"Status:     {a.get('status') or UNKNOWN} (source: "
        f"{a.get('status_source') or UNKNOWN}, {ago_at(a.get('status_at'), now)} ago)",
        f"Reason:     {_text(a, 'status_reason')}",
        f"Breaker:    {breaker_text(a, now)}",
        f"Task:       {_text(a, 'current_task')}",
        f"Exec:       {_text(a, 'current_exec')}",
        f"Execs:      {_text(a, 'execs')}",
        f"Tokens:     {token_text}",
        f"Cost:       {agent_cost(a)}",
        f"Created:    {_utc(created)}",
    ]
    if execs:
        lines += ["", "Recent execs:", table(EXEC_HEADERS, [exec_row(x, now) for x in execs])]
    elif execs is None:
        lines += ["", "Recent execs: ? (this daemon cannot list them)"]
    return "\n".join(lines)


TASK_HEADERS = ("TASK", "STATUS", "PRIORITY", "SWARM", "AGENT", "TRIES", "AGE", "INPUT")


def task_row(t: TaskObject, now: datetime | None = None) -> tuple[str, ...]:
    """A task object (``task.list`` item) as a table row."""
    text = t["input"]
    inp = text if len(text) <= 40 else text[:37] + "..."
    return (
        t["id"],
        t["status"],
        t["priority"],
        t["swarm"] or "-",
        t["lease_agent"] or "-",
        f"{t['attempts']}/{t['max_attempts']}",
        ago_at(t["created_at"], now),
        inp.replace("\n", " "),
    )


def task_detail(
    t: TaskObject, output: Sequence[LogLineObject] | None = None, now: datetime | None = None
) -> str:
    """``godel task get``; ``output`` is the last attempt's stored output (``exec.get``),
    None when there is none to read."""
    status, error, agent = t["status"], t["error"], t["lease_agent"]
    final = status in ("succeeded", "failed", "cancelled")
    lines = [
        f"ID:          {t['id']}",
        f"Status:      {status}" + (f" ({error})" if error and final else ""),
    ]
    if error and not final:
        # Running or queued again: the error is an earlier attempt's, not the status's.
        lines.append(f"Last error:  {error} (an earlier attempt)")
    if t.get("waiting"):
        lines.append(f"Waiting:     {t['waiting']}")
    lines += [
        f"Priority:    {t['priority']}",
        f"Swarm:       {t['swarm'] or '-'}",
        f"Runtime:     {t['runtime'] or 'any'}",
        f"Skills:      {', '.join(t['skills']) or '-'}",
        f"Depends on:  {', '.join(t['depends_on']) or '-'}"
        + (f" ({t['deps_pending']} pending)" if t["deps_pending"] else ""),
        f"Attempts:    {t['attempts']} of {t['max_attempts']}",
        f"Agent:       {agent or '-'}"
        + ("" if status == "running" or not agent else " (last attempt)"),
        f"Created:     {ago_at(t['created_at'], now)} ago",
        f"Input:       {t['input']}",
    ]
    r = t["result"]
    if r is not None:
        code = r["exit_code"]
        lines.append(
            f"Last result: {r['status']}, exit {NONE if code is None else code}, "
            f"{r['duration_s']:.2f}s (exec {r['exec_id'] or NONE})"
        )
        if r["reason"] and r["reason"] not in error:  # else the error line says it already
            lines.append(f"Reason:      {r['reason']}")
        streams = _by_stream(output) if output is not None else {"stdout": r["output"]}
        for stream in ("stdout", "stderr"):
            text = streams.get(stream, "")
            if not text:
                continue
            cut = ""
            if len(text) > TASK_OUTPUT_CHARS:
                text = text[-TASK_OUTPUT_CHARS:]
                cut = (
                    f" (the last {TASK_OUTPUT_CHARS} characters; `godel exec show {r['exec_id']}`)"
                )
            lines += [f"{stream.capitalize()}:{cut}", *("  " + ln for ln in text.splitlines())]
    return "\n".join(lines)


TASK_OUTPUT_CHARS = 2000  # of each stream, in `task get`


def _by_stream(output: Sequence[LogLineObject]) -> dict[str, str]:
    parts: dict[str, list[str]] = {}
    for line in output:
        parts.setdefault(line.get("stream", "stdout"), []).append(line.get("data", ""))
    return {stream: "".join(texts) for stream, texts in parts.items()}


def exec_detail(shown: ExecShowObject, now: datetime | None = None) -> str:
    """``godel exec show``: the exec's record, then its output stream by stream."""
    x = shown["exec"]
    usage = x.get("usage")
    if isinstance(usage, Mapping):
        tokens = (
            f"{usage.get('input_tokens', 0):,} in / {usage.get('output_tokens', 0):,} out"
            f" ({usage.get('cache_read_tokens', 0):,} cache read, "
            f"{usage.get('cache_write_tokens', 0):,} cache write)"
        )
    else:
        tokens = UNKNOWN
    started, finished = parse_time(x.get("started_at")), parse_time(x.get("finished_at"))
    took = ""
    if started is not None and finished is not None:
        took = f" ({(finished - started).total_seconds():.2f}s)"
    exit_code = x.get("exit_code")
    lines = [
        f"Exec:       {_text(x, 'id')}",
        f"Agent:      {_text(x, 'agent_id')}",
        f"Status:     {_text(x, 'status')}",
        f"Exit code:  {NONE if exit_code is None else exit_code}",
        f"Reason:     {_text(x, 'reason')}",
        f"Started:    {_utc(started)} ({ago_at(x.get('started_at'), now)} ago)",
        f"Finished:   {_utc(finished) if finished else NONE}{took}",
        f"By:         {_text(x, 'actor')}",
        f"Model:      {_text(x, 'model')}",
        f"Tokens:     {tokens}",
        f"Cost:       {usd(x['cost_usd']) if 'cost_usd' in x else UNKNOWN}",
        f"Input:      {x.get('input', UNKNOWN)}",
    ]
    streams = _by_stream(shown.get("output") or [])
    for stream in ("stdout", "stderr", "system"):
        text = streams.get(stream, "")
        if stream == "system" and not text:
            continue  # only LLM agents report tool calls and usage
        title = {"system": "Activity"}.get(stream, stream.capitalize())
        lines += ["", f"{title}:" + ("" if text else f" {NONE}")]
        lines += ["  " + ln for ln in text.splitlines()]
    if shown.get("truncated"):
        lines += ["", "(more output is stored than was read: `godel agent logs` has it all)"]
    return "\n".join(lines)


SWARM_HEADERS = (
    "SWARM",
    "RUNTIME",
    "STRATEGY",
    "AGENTS",
    "DESIRED",
    "READY",
    "RUNNING",
    "DONE",
    "FAILED",
)


def swarm_row(s: dict[str, Any]) -> tuple[str, ...]:
    """A swarm object (``swarm.list`` item) as a table row."""
    tasks = s.get("tasks_by_status") or {}
    live = sum((s.get("agents_by_status") or {}).values())
    return (
        s["name"],
        s["runtime"] + (f" ({s['model']})" if s.get("model") else ""),
        s["strategy"],
        str(live),
        str(s["desired"]),
        str(tasks.get("ready", 0)),
        str(tasks.get("running", 0)),
        str(tasks.get("succeeded", 0)),
        str(tasks.get("failed", 0)),
    )


def swarm_detail(s: dict[str, Any]) -> str:
    """One swarm object (``swarm.status``), as text."""
    agents = ", ".join(f"{n} {k}" for k, n in sorted((s.get("agents_by_status") or {}).items()))
    tasks = ", ".join(f"{n} {k}" for k, n in sorted((s.get("tasks_by_status") or {}).items()))
    ready = ", ".join(f"{n} {k}" for k, n in (s.get("ready_by_priority") or {}).items())
    return "\n".join(
        [
            f"Swarm:      {s['name']}",
            f"Runtime:    {s['runtime']}" + (f", model {s['model']}" if s.get("model") else ""),
            f"Skills:     {', '.join(s['skills']) or '-'}",
            f"Strategy:   {s['strategy']}",
            f"Agents:     {agents or 'none'} (desired {s['desired']}, "
            f"min {s['min_agents']}, max {s['max_agents']})",
            f"Tasks:      {tasks or 'none'}",
            f"Ready:      {ready or 'none'}",
            f"Capacity:   {s['capacity']} active tasks",
            *_short_of_desired(s),
        ]
    )


def _short_of_desired(s: Mapping[str, Any]) -> list[str]:
    """Fewer live agents than desired: say so, and where the reason is."""
    live = sum((s.get("agents_by_status") or {}).values())
    if live >= s["desired"]:
        return []
    name = s["name"]
    return [
        f"Short:      {live} of {s['desired']} agents run; why: "
        f"`godel agent list --all --swarm {name}`, `godel audit list --subject {name}`"
    ]


def route_explain_text(result: dict[str, Any]) -> str:
    now = result["now"]
    lines = [
        f"Task {result['task']['id']} ({result['task']['status']}), runtime "
        f"{result['task'].get('runtime') or 'any'}, skills "
        f"{', '.join(result['task']['skills']) or '-'}",
        f"Now: strategy {now['strategy']}: "
        + (f"would choose {now['chosen']}" if now["chosen"] else "no agent")
        + f" ({now['reason']})",
    ]
    rows = []
    for c in now.get("candidates") or []:
        parts = " ".join(f"{k}={v:.3f}" for k, v in sorted(c["parts"].items()))
        score = "-" if c["score"] is None else f"{c['score']:.4f}"
        mark = "*" if c["agent_id"] == now["chosen"] else " "
        rows.append((mark + c["agent_id"], score, parts or "-", c["excluded"] or "-"))
    if rows:
        lines += ["", table(("AGENT", "SCORE", "PARTS", "EXCLUDED"), rows)]
    past = result.get("past") or []
    if past:
        lines += ["", "Past decisions:"]
        for e in past:
            p = e["payload"]
            lines.append(
                f"  {e['ts'][:19]}  {e['result']}  ({p.get('strategy', '')}: {p.get('reason', '')})"
            )
    return "\n".join(lines)
