"""The lines ``godel do`` (and ``godel demo``) print for a run: one per ``do.*`` event, and
the report after. Pure functions of the JSON the engine sends, so a face renders a run
without importing the engine (the console's demo imports this)."""

from __future__ import annotations

from typing import Any

__all__ = ["event_line", "report_lines"]


def event_line(e: dict[str, Any]) -> str | None:
    """The line printed for a ``do.*`` event (None: nothing to print)."""
    kind = e.get("type")
    if kind == "do.step":
        return str(e.get("line", ""))
    if kind == "do.started":
        gate = f", gate `{e['gate']}`" if e.get("gate") else ", no gate"
        return (
            f"run {e['run']}: {e['intent']!r} in {e['repo']} on {e['base']} "
            f"({e['strategy']}, at most {e['agents']} at once{gate})"
        )
    if kind == "do.planned":
        tasks = e.get("tasks") or []
        levels = 1 + max((int(t.get("level", 0)) for t in tasks), default=0)
        spent = ""
        if e.get("tokens") is not None:
            spent = f"; planning took {e['tokens']} tokens"
            spent += f", ${e['cost_usd']}" if e.get("cost_usd") is not None else ", cost unknown"
        return f"plan ({e['source']}): {len(tasks)} tasks in {levels} levels{spent}"
    return None


def report_lines(r: dict[str, Any]) -> list[str]:
    """The report printed after a run's lines (``DoReport`` as JSON): per task, merged or
    why not, then the overlaps and the outcome."""
    out = [
        "",
        f"run {r['run']}: {r['base']} {r['base_before'][:12]} -> {r['base_after'][:12]} "
        f"({r['strategy']}, {r['elapsed_s']:.1f}s)",
    ]
    for t in r["tasks"]:
        gate = t["gate"]["line"] if t.get("gate") else "-"
        tokens = str(t["tokens"]) if t.get("tokens") is not None else "-"
        cost = f"${t['cost_usd']}" if t.get("cost_usd") is not None else "-"
        state = "merged" if t["merged"] else "NOT merged"
        retried = " (retried once)" if t.get("retried") else ""
        out.append(
            f"  {t['task']} [{t['runtime']}]: {state}{retried}; "
            f"files {', '.join(t['files']) or '-'}; gate {gate}; tokens {tokens}; cost {cost}"
        )
        if not t["merged"]:
            out.append(f"    why: {t['reason']}")
    for o in r["overlaps"]:
        out.append(f"  overlap: {o['line']}")
    out.append(f"{r['outcome']} (exit {r['exit_code']})")
    return out
