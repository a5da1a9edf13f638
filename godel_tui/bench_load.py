"""The load of ``godel bench tui``: paced ``agent.exec`` calls on a daemon's agents, in a
process of its own (so that it takes no time from the console's loop it loads).

``python -m godel_tui.bench_load HOME EXECS_PER_S SECONDS`` runs ``EXECS_PER_S`` execs a
second, spread over every live agent and a few connections, for ``SECONDS``; then
prints one JSON line: what it sent, what failed (and the first error), how long it took.
An agent is given one exec at a time; when the daemon falls behind, the calls in flight
are capped, and what could not be sent is counted as ``behind``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from core.api.client import DaemonClient
from core.errors import GodelError
from core.paths import GodelPaths

CONNECTIONS = 4
TICK_S = 0.005
MAX_IN_FLIGHT = 256


async def run_load(paths: GodelPaths, execs_per_s: float, seconds: float) -> dict[str, Any]:
    clients = [DaemonClient(paths) for _ in range(CONNECTIONS)]
    for c in clients:
        await c.connect()
    try:
        snap = await clients[0].call("view.snapshot")
        agents = [a["id"] for a in snap["agents"] if a["status"] == "idle"]
        if not agents:
            raise GodelError("no idle agent to load")
        busy: set[str] = set()
        tasks: set[asyncio.Task[None]] = set()
        out: dict[str, Any] = {"sent": 0, "ok": 0, "errors": 0, "behind": 0, "first_error": ""}

        async def one(client: DaemonClient, agent: str) -> None:
            try:
                await client.call("agent.exec", {"id": agent, "input": "bench"})
                out["ok"] += 1
            except (GodelError, OSError) as e:
                out["errors"] += 1
                out["first_error"] = out["first_error"] or str(getattr(e, "message", e))
            finally:
                busy.discard(agent)

        pick = itertools.cycle(agents)
        conn = itertools.cycle(clients)
        loop = asyncio.get_running_loop()
        start = loop.time()
        due = 0.0
        while (now := loop.time()) - start < seconds:
            due = (now - start) * execs_per_s - out["sent"] - out["behind"]
            for _ in range(int(due)):
                agent = next(pick)
                if agent in busy or len(tasks) >= MAX_IN_FLIGHT:
                    out["behind"] += 1
                    continue
                busy.add(agent)
                out["sent"] += 1
                t = asyncio.create_task(one(next(conn), agent))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(TICK_S)
        if tasks:
            await asyncio.wait(tasks)
        out["seconds"] = loop.time() - start
        return out
    finally:
        for c in clients:
            await c.close()


def main() -> int:
    home, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    t0 = time.perf_counter()
    try:
        out = asyncio.run(run_load(GodelPaths.resolve(Path(home)), rate, seconds))
    except GodelError as e:
        print(json.dumps({"error": e.message, "seconds": time.perf_counter() - t0}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
