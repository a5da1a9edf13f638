"""``godel events``: the engine's event stream, past and live, as text or JSON lines."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from typing import Any

import click

from core.cli.common import Ctx, fail, pass_ctx, request, sync_command

# The fields worth a glance per event type, in order (the rest are in --json).
_SUMMARY = {
    "agent.created": ("agent_id", "runtime", "swarm", "name"),
    "agent.spawned": ("agent_id", "pid"),
    "agent.status_changed": ("agent_id", "previous", "status", "source", "reason"),
    "agent.output": ("agent_id", "exec_id", "stream", "data"),
    "agent.activity": ("agent_id", "exec_id", "kind"),
    "exec.started": ("agent_id", "exec_id", "input"),
    "exec.finished": ("agent_id", "exec_id", "status", "exit_code", "reason"),
    "task.changed": ("task_id", "swarm", "previous", "status", "agent_id", "error"),
    "task.routed": ("task_id", "agent_id", "swarm", "strategy", "reason"),
    "task.finished": ("task_id", "status", "agent_id", "reason"),
    "swarm.autoscaled": ("swarm", "from_agents", "to_agents", "reason"),
    "audit.appended": ("seq_no", "action", "subject", "actor", "result"),
    "daemon.started": ("pid", "version"),
    "daemon.stopping": ("reason",),
    "config.changed": ("digest", "sources"),
    "queue.pressure": ("scope", "fraction", "capacity"),
    "runtime.anomaly": ("runtime", "message"),
}


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(event: dict[str, Any]) -> str:
    """One line: seq, local time, type, the fields that matter for its type."""
    kind = str(event.get("type", "?"))
    at = str(event.get("at", ""))
    with contextlib.suppress(ValueError):
        at = datetime.fromisoformat(at).astimezone().strftime("%H:%M:%S.%f")[:-3]
    if kind == "swarm.changed":
        s = event.get("swarm") or {}
        fields = f"swarm={s.get('name')} status={s.get('status')} desired={s.get('desired')} "
        fields += f"strategy={s.get('strategy')}"
    else:
        keys = _SUMMARY.get(kind) or [k for k in event if k not in ("type", "seq", "at")]
        fields = " ".join(
            f"{k}={_short(event[k])}" for k in keys if event.get(k) not in (None, "", [], {})
        )
    return f"{event.get('seq', 0):>8} {at} {kind:<22} {fields}".rstrip()


@click.command("events")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming live events (Ctrl-C ends).")
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="TYPE",
    help="Only this event type (repeatable; 'task.*' matches a family).",
)
@click.option("--agent", metavar="AGENT", help="Only events of this agent (id or name).")
@click.option("--swarm", metavar="SWARM", help="Only events of this swarm or its agents.")
@click.option("--task", metavar="TASK", help="Only events of this task.")
@click.option(
    "--since",
    "after_seq",
    type=click.IntRange(min=0),
    metavar="SEQ",
    help="Resume after this seq (a gap since then is reported).",
)
@click.option(
    "--last",
    type=click.IntRange(0, 10_000),
    default=20,
    show_default=True,
    help="First show the last N kept events that match (ignored with --since; "
    "with --file, the file's last N: --since 0 shows it all).",
)
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, exists=True),
    help="Read a recording (the daemon's events.jsonl, `--record` output) instead.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON event per line (the recording format)."
)
@pass_ctx
@sync_command
def events(
    ctx: Ctx,
    follow: bool,
    types: tuple[str, ...],
    agent: str | None,
    swarm: str | None,
    task: str | None,
    after_seq: int | None,
    last: int,
    path: str | None,
    as_json: bool,
) -> None:
    """Show what the engine did: the last events, or a live stream with --follow.

    \b
    Examples:
      godel events --follow                      # everything, live
      godel events --type task.* --swarm api -f  # one swarm's task events
      godel events --agent shell-3f9a1c --json   # JSON lines, as recorded
      godel events --since 1200 -f               # resume after seq 1200
      godel events --file rec.jsonl --since 0    # a whole recording

    A line "-- N events missed --" marks a gap (the stream fell behind, or --since is
    older than what the daemon keeps): `godel agent list` shows the current state.
    """

    def show(event: dict[str, Any]) -> None:
        if event.get("type") == "events.dropped":
            count = event.get("count", 0)
            click.echo(
                f"-- {count} event(s) missed: resync from `godel agent list` / view.snapshot --",
                err=True,
            )
            if not as_json:
                return
        if as_json:
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        else:
            sys.stdout.write(render(event) + "\n")
        sys.stdout.flush()

    if path is not None:
        if follow:
            fail("--follow reads the live stream; with --file, leave it out", 2)
        _from_file(path, types, agent, swarm, task, after_seq, last, show)
        return
    params: dict[str, Any] = {"follow": follow}
    if types:
        params["types"] = list(types)
    for key, value in (("agent", agent), ("swarm", swarm), ("task", task)):
        if value is not None:
            params[key] = value
    if after_seq is not None:
        params["after_seq"] = after_seq
    else:
        params["last"] = last
    request(ctx, "events.subscribe", params, on_stream=show)
    if follow:
        click.echo("godel: the daemon stopped; the stream ended", err=True)


def _from_file(
    path: str,
    types: tuple[str, ...],
    agent: str | None,
    swarm: str | None,
    task: str | None,
    after_seq: int | None,
    last: int,
    show: Any,
) -> None:
    # A recording is read with the engine's own tolerant reader (pydantic: only here),
    # and folded into views as it goes, so that --swarm finds a swarm's agents and
    # --agent takes a name, as on the live stream.
    from core.events import ReadStats, read_recording
    from core.views import Views
    from core.views.filter import EventFilter

    try:
        flt = EventFilter.make(set(types) or None, None, swarm, task)
    except ValueError as e:
        fail(str(e), 2)
    views = Views()
    stats = ReadStats()
    matched: list[dict[str, Any]] = []
    for event in read_recording(path, stats):
        views.apply(event)
        if after_seq is not None and event.seq <= after_seq:
            continue
        if not flt.matches(event, views):
            continue
        if agent is not None:
            agent_id = getattr(event, "agent_id", None)
            cell = views.agents.get(agent_id) if agent_id else None
            if agent not in (agent_id, cell.name if cell else None):
                continue
        matched.append(event.model_dump(mode="json"))
    for event_json in matched if after_seq is not None else matched[-last:] if last else []:
        show(event_json)
    if stats.skipped:
        click.echo(f"godel: {path}: {stats.describe()}", err=True)
