"""Pure renderers: domain records to table rows and lines, for the CLI (no I/O here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from core.activity import activity_line
from core.models import (
    Agent,
    AuditEntry,
    ExecRecord,
    ExecResult,
    RuntimeEvent,
    RuntimeInfo,
    Swarm,
    Task,
)

if TYPE_CHECKING:
    from core.bench import ExecBench, SpawnBench
    from core.llm.catalog import ModelInfo

_EVENT: TypeAdapter[RuntimeEvent] = TypeAdapter(RuntimeEvent)

# How the seed system named runtimes in its messages ("Spawned Pi agent: pi-...").
_RUNTIME_LABELS = {"pi": "Pi"}


def runtime_label(runtime: str) -> str:
    return _RUNTIME_LABELS.get(runtime, runtime)


def exec_event_text(data: Any) -> tuple[str, str]:
    """(stream, text) to print for one streamed exec event; text "" prints nothing."""
    try:
        ev = _EVENT.validate_python(data)
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


MODEL_HEADERS = ("NAME", "PROVIDER", "API", "UPSTREAM ID", "IN/MTOK", "OUT/MTOK", "PRICES", "KEY")


def model_row(m: ModelInfo) -> tuple[str, ...]:
    p = m.prices
    key_state = "set" if m.api_key_set else "NOT SET"
    key = "not needed" if m.scripted else f"{m.api_key_env} {key_state}"
    return (
        m.name,
        m.provider,
        m.api,
        m.upstream_id,
        "?" if p is None else f"${p.input_mtok}",
        "?" if p is None else f"${p.output_mtok}",
        "unknown" if p is None else p.source,
        key,
    )


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


AGENT_HEADERS = ("ID", "NAME", "RUNTIME", "STATUS", "SINCE", "SOURCE", "PID", "SKILLS", "REASON")


def agent_row(a: Agent, now: datetime | None = None) -> tuple[str, ...]:
    return (
        a.id,
        a.name or "-",
        a.runtime,
        a.status.value,
        ago(a.status_at, now),
        a.status_source.value,
        str(a.pid) if a.pid else "-",
        ",".join(a.skills) or "-",
        a.status_reason or "-",
    )


RUNTIME_HEADERS = ("NAME", "CAPABILITIES", "SOURCE", "DESCRIPTION")


def runtime_row(r: RuntimeInfo) -> tuple[str, ...]:
    desc = r.description if r.error is None else f"FAILED TO LOAD: {r.error}"
    return (r.name, ",".join(r.capabilities) or "-", r.source, desc)


AUDIT_HEADERS = ("SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "RESULT")


def audit_row(e: AuditEntry) -> tuple[str, ...]:
    return (
        str(e.seq),
        e.ts.strftime("%Y-%m-%d %H:%M:%S"),
        e.actor,
        e.action,
        e.subject,
        e.result,
    )


EXEC_HEADERS = ("EXEC", "STATUS", "EXIT", "STARTED", "INPUT")


def exec_row(x: ExecRecord, now: datetime | None = None) -> tuple[str, ...]:
    inp = x.input if len(x.input) <= 50 else x.input[:47] + "..."
    return (
        x.id,
        x.status.value,
        "-" if x.exit_code is None else str(x.exit_code),
        ago(x.started_at, now) + " ago",
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


def agent_detail(a: Agent, execs: Sequence[ExecRecord], now: datetime | None = None) -> str:
    lines = [
        f"ID:         {a.id}",
        f"Name:       {a.name or '-'}",
        f"Runtime:    {a.runtime}",
        f"Model:      {a.model or '-'}",
        f"Skills:     {', '.join(a.skills) or '-'}",
        f"Workspace:  {a.workspace}",
        f"PID:        {a.pid or '-'}",
        f"Status:     {a.status.value} (source: {a.status_source.value}, "
        f"{ago(a.status_at, now)} ago)",
        f"Reason:     {a.status_reason or '-'}",
        f"Created:    {a.created_at.strftime('%Y-%m-%d %H:%M:%S UTC')}",
    ]
    if execs:
        lines += ["", "Recent execs:", table(EXEC_HEADERS, [exec_row(x, now) for x in execs])]
    return "\n".join(lines)


def bench_spawn_text(b: SpawnBench) -> str:
    s = b.spawn_to_ready_s
    lines = [
        f"spawn {b.runtime}{' (' + b.model + ')' if b.model else ''}: {b.count} agents, "
        f"{b.failures} failures, {b.total_s:.2f}s in all",
        f"  spawn-to-ready: p50 {s.p50 * 1000:.1f} ms, p95 {s.p95 * 1000:.1f} ms, "
        f"max {s.max * 1000:.1f} ms",
    ]
    if b.rss_mib_per_agent is not None:
        r = b.rss_mib_per_agent
        lines.append(f"  RSS per agent: median {r.p50:.1f} MiB, max {r.max:.1f} MiB")
    elif b.in_process_rss_mib_total is not None:
        lines.append(f"  in-process agents: engine RSS grew {b.in_process_rss_mib_total} MiB")
    return "\n".join(lines)


def bench_exec_text(b: ExecBench) -> str:
    return (
        f"exec {b.runtime}{' (' + b.model + ')' if b.model else ''} {b.input!r}: "
        f"{b.runs} runs each, {b.failures} failures\n"
        f"  through the engine: p50 {b.engine_s.p50 * 1000:.2f} ms, "
        f"p95 {b.engine_s.p95 * 1000:.2f} ms\n"
        f"  runtime alone:      p50 {b.runtime_s.p50 * 1000:.2f} ms, "
        f"p95 {b.runtime_s.p95 * 1000:.2f} ms\n"
        + (
            f"  {b.direct_kind}: p50 {b.direct_s.p50 * 1000:.2f} ms, "
            f"p95 {b.direct_s.p95 * 1000:.2f} ms\n"
            if b.direct_kind != "runtime alone"
            else ""
        )
        + f"  engine overhead vs {b.direct_kind}: {b.overhead_ratio:.3f}x"
    )


TASK_HEADERS = ("TASK", "STATUS", "PRIORITY", "SWARM", "AGENT", "TRIES", "AGE", "INPUT")


def task_row(t: Task, now: datetime | None = None) -> tuple[str, ...]:
    inp = t.input if len(t.input) <= 40 else t.input[:37] + "..."
    agent = t.lease_agent or "-"
    return (
        t.id,
        t.status.value,
        t.priority.value,
        t.swarm or "-",
        agent,
        f"{t.attempts}/{t.max_attempts}",
        ago(t.created_at, now),
        inp.replace("\n", " "),
    )


def task_detail(t: Task, now: datetime | None = None) -> str:
    lines = [
        f"ID:          {t.id}",
        f"Status:      {t.status.value}" + (f" ({t.error})" if t.error else ""),
        f"Priority:    {t.priority.value}",
        f"Swarm:       {t.swarm or '-'}",
        f"Skills:      {', '.join(t.skills) or '-'}",
        f"Depends on:  {', '.join(t.depends_on) or '-'}"
        + (f" ({t.deps_pending} pending)" if t.deps_pending else ""),
        f"Attempts:    {t.attempts} of {t.max_attempts}",
        f"Agent:       {t.lease_agent or '-'}"
        + ("" if t.status.value == "running" or not t.lease_agent else " (last attempt)"),
        f"Created:     {ago(t.created_at, now)} ago",
        f"Input:       {t.input}",
    ]
    if t.result is not None:
        r = t.result
        lines += [
            f"Last result: {r.status.value}, exit {r.exit_code}, {r.duration_s:.2f}s "
            f"(exec {r.exec_id})",
        ]
        if r.output:
            out = r.output if len(r.output) <= 400 else r.output[-400:]
            lines += ["Output:", *("  " + ln for ln in out.splitlines())]
    return "\n".join(lines)


SWARM_HEADERS = ("SWARM", "RUNTIME", "STRATEGY", "AGENTS", "DESIRED", "READY", "RUNNING", "DONE")


def swarm_row(status: dict[str, Any]) -> tuple[str, ...]:
    s = Swarm.model_validate(status["swarm"])
    tasks = status["tasks"]
    live = sum(status["agents_by_status"].values())
    return (
        s.name,
        s.runtime + (f" ({s.model})" if s.model else ""),
        s.strategy,
        str(live),
        str(s.desired),
        str(tasks.get("ready", 0)),
        str(tasks.get("running", 0)),
        str(tasks.get("succeeded", 0)),
    )


def swarm_detail(status: dict[str, Any]) -> str:
    s = Swarm.model_validate(status["swarm"])
    agents = ", ".join(f"{n} {k}" for k, n in sorted(status["agents_by_status"].items()))
    tasks = ", ".join(f"{n} {k}" for k, n in sorted(status["tasks"].items()))
    ready = ", ".join(f"{n} {k}" for k, n in status["ready_by_priority"].items())
    return "\n".join(
        [
            f"Swarm:      {s.name}",
            f"Runtime:    {s.runtime}" + (f", model {s.model}" if s.model else ""),
            f"Skills:     {', '.join(s.skills) or '-'}",
            f"Strategy:   {s.strategy}",
            f"Agents:     {agents or 'none'} (desired {s.desired}, "
            f"min {s.min_agents}, max {s.max_agents})",
            f"Tasks:      {tasks or 'none'}",
            f"Ready:      {ready or 'none'}",
            f"Capacity:   {s.capacity} active tasks",
        ]
    )


def route_explain_text(result: dict[str, Any]) -> str:
    now = result["now"]
    lines = [
        f"Task {result['task']['id']} ({result['task']['status']}), skills "
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
