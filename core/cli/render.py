"""Pure renderers: domain records to table rows and lines, for the CLI (no I/O here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from core.models import Agent, AuditEntry, ExecRecord, RuntimeInfo


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
