"""``godel demo``: a short real run against the daemon, printed as it happens.

Spawns shell agents, runs real commands in their workspaces at the same time, kills
one, and shows the agent table, the audit trail and its verification. Nothing here is
simulated: every line printed comes from the daemon's records.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from core.api.client import DaemonClient, connect, stop_daemon
from core.audit import VerifyReport
from core.cli import render
from core.models import ExecResult
from core.paths import GodelPaths
from core.views import AgentRow

JOBS = [
    ("python,tests", "python3 -c 'import sys; print(\"python\", sys.version.split()[0])'"),
    ("git", "git init -q . && git status --short --branch"),
    ("shell", "for i in 1 2 3; do echo step $i; sleep 0.2; done"),
    ("files", "printf 'hello\\n' > note.txt && wc -c note.txt"),
    ("docs", "echo 'writing to stderr' >&2; exit 3"),
]


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# Where the demo's lines go: stdout, or the console's notifications (godel_tui.demo).
_out: Callable[[str], None] = _print


def say(text: str = "") -> None:
    _out(text)


async def _exec(client: DaemonClient, agent: AgentRow, command: str) -> ExecResult:
    def on_stream(data: Any) -> None:
        for line in str(data.get("data", "")).splitlines():
            say(f"  [{agent.id}] {data.get('stream')}: {line}")

    raw = await client.call("agent.exec", {"id": agent.id, "input": command}, on_stream=on_stream)
    return ExecResult.model_validate(raw)


async def _llm_part(client: DaemonClient) -> None:
    """An LLM agent doing tool work against the scripted model server (offline)."""
    runtimes = {r["name"]: r for r in await client.call("runtime.list")}
    for runtime in ("native", "pi"):
        info = runtimes.get(runtime)
        if info is None or info.get("error"):
            say(f"\n(skipping the {runtime} runtime: {info and info.get('error')})")
            continue
        say(f"\n$ godel agent spawn --runtime {runtime} --model scripted")
        try:
            raw = await client.call("agent.spawn", {"runtime": runtime, "model": "scripted"})
        except Exception as e:  # e.g. pi not installed: say so, go on with the rest
            say(f"godel: {e}")
            continue
        agent = AgentRow.model_validate(raw)
        say(f"Spawned {render.runtime_label(runtime)} agent: {agent.id}")
        for prompt in ("run: echo hello from $GODEL_AGENT_ID", "write notes.txt: demo was here"):
            say(f'\n$ godel agent exec {agent.id} "{prompt}"')

            answer: list[str] = []

            def on_stream(data: Any, answer: list[str] = answer) -> None:
                stream, text = render.exec_event_text(data)
                if stream == "stdout":
                    answer.append(text)  # streamed in pieces; shown whole below
                    return
                for line in text.splitlines():
                    say(f"  > {line}")

            result = ExecResult.model_validate(
                await client.call(
                    "agent.exec", {"id": agent.id, "input": prompt}, on_stream=on_stream
                )
            )
            for line in "".join(answer).splitlines():
                say(f"  | {line}")
            say("  " + (render.exec_summary(result) or result.status.value))


async def run_demo(
    paths: GodelPaths,
    *,
    n_agents: int,
    keep: bool,
    out: Callable[[str], None] | None = None,
) -> int:
    global _out
    _out = out or _print
    say(f"Godel demo: home {paths.home}")
    client = await connect(paths)
    try:
        say(f"\n$ godel agent spawn --runtime shell  (x{n_agents})")
        agents = []
        for i in range(n_agents):
            skills = JOBS[i % len(JOBS)][0]
            raw = await client.call(
                "agent.spawn", {"runtime": "shell", "skills": skills.split(",")}
            )
            agent = AgentRow.model_validate(raw)
            agents.append(agent)
            say(f"Spawned {agent.runtime} agent: {agent.id} (pid {agent.pid}, skills {skills})")

        say("\n$ godel agent exec ...  (all agents at once)")
        results = await asyncio.gather(
            *(_exec(client, a, JOBS[i % len(JOBS)][1]) for i, a in enumerate(agents))
        )
        for a, r in zip(agents, results, strict=True):
            say(f"  {a.id}: {r.status.value}, exit {r.exit_code}, {r.duration_s:.2f}s")

        await _llm_part(client)

        say(f"\n$ godel agent kill {agents[-1].id}")
        await client.call("agent.kill", {"id": agents[-1].id})

        say("\n$ godel agent list --all")
        listed = await client.call("agent.list", {"include_ended": True})
        ours = {a.id for a in agents}
        say(
            render.table(
                render.AGENT_HEADERS, [render.agent_row(a) for a in listed if a["id"] in ours]
            )
        )

        say("\n$ godel audit list  (this run)")
        entries = await client.call("audit.list")
        say(render.table(render.AUDIT_HEADERS, [render.audit_row(e) for e in entries[-20:]]))

        say("\n$ godel audit verify")
        report = VerifyReport.model_validate(await client.call("audit.verify"))
        say(report.summary())
    finally:
        await client.close()
    if not keep:
        say("\n$ godel daemon stop")
        pid = await stop_daemon(paths)
        say(f"Daemon stopped (pid {pid}); every agent process ended with it.")
    return 0 if report.ok else 1
