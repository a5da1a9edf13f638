"""Records the console fixtures (``tests/tui/fixtures/*.jsonl``) from a real daemon.

The snapshot tests (``tests/tui/test_snapshots.py``) and ``make screenshots`` replay it;
run this only to change what they show, then review and update the snapshots
(``pytest tests/tui/test_snapshots.py --snapshot-update``, ``make screenshots``):

    .venv/bin/python -m tests.tui.make_fixture [console|runs]

What it records, through the console's own recorder (``DaemonFeed(record=...)``): three
swarms and three named shell agents, tasks that succeed, one that fails, long ones still
running at the end, output on ``builder``, an agent whose process is killed by hand
(failed, ``process_exit``: what the attention line counts) and one killed by the user.
Then the file is made stable: times shifted to start at ``T0``, ids, pids and paths
replaced by fixed ones in the order they first appear.

``runs`` records ``fixtures/do_run.jsonl`` instead (the runs view's scene): in a git
repository, one ``godel do`` plan that merges, one whose task fails, and one still running
when the recording ends (its first task waits for a file written after it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.api.client import connect
from core.events import Event
from core.models import AgentStatus
from core.paths import GodelPaths
from core.views import Views, ViewSnapshot
from godel_tui.feed import DaemonFeed, FeedState
from tests.conftest import Godel, _env

FIXTURE = Path(__file__).parent / "fixtures" / "console.jsonl"
DO_FIXTURE = Path(__file__).parent / "fixtures" / "do_run.jsonl"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@shop.invalid",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@shop.invalid",
}
T0 = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)
HOME = "/home/dev/.local/share/godel"
PROJECT = "/home/dev/shop"

_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_ID = re.compile(r"\b(shell|task|exec|dec)-([0-9a-f]{6,})\b")
_RUN = re.compile(r"\bdo-\d{8}-\d{6}-[0-9a-f]{4}\b")
_SHA = re.compile(r"(?<![\w-])(?:[0-9a-f]{40}|[0-9a-f]{12})(?![\w-])")  # commits


class Sink:
    """What the recorder saw, folded, to wait on."""

    def __init__(self) -> None:
        self.views = Views()
        self.connected = False
        self.changed = asyncio.Event()  # set by each thing the feed delivers

    def feed_snapshot(self, snapshot: ViewSnapshot, note: str) -> None:
        self.views = Views(snapshot)
        self.changed.set()

    def feed_event(self, event: Event) -> None:
        self.views.apply(event)
        self.changed.set()

    def feed_state(self, state: FeedState) -> None:
        self.connected = state.connected
        self.changed.set()

    async def wait(self, what: str, cond: Callable[[], bool], within: float = 60.0) -> None:
        """Until ``cond`` holds, checked after each thing the feed delivers."""
        try:
            async with asyncio.timeout(within):
                while not cond():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise SystemExit(f"make_fixture: never saw {what} within {within:g}s") from None


def agent_id(g: Godel, name: str) -> str:
    r = g.run("agent", "get", name, "--json", check=True)
    return str(json.loads(r.stdout)["id"])


async def record(g: Godel, raw: Path) -> None:
    run = g.run
    for swarm, count in (("api", 4), ("web", 3), ("batch", 2)):
        run("swarm", "create", swarm, "--runtime", "shell", "--count", str(count), check=True)
    for name in ("builder", "reviewer", "scratch"):
        run("agent", "spawn", "--runtime", "shell", "--name", name, check=True)

    sink = Sink()
    feed = DaemonFeed(GodelPaths.resolve(g.home), sink, autostart=False, record=raw)
    task = asyncio.create_task(feed.run())
    try:
        await sink.wait("the recorder connected", lambda: sink.connected)
        script = (
            "echo 'building shop (3 packages)'; "
            'for p in core api web; do echo "  compiled $p"; done; '
            "echo 'warning: web/legacy.py is deprecated' >&2; echo done"
        )
        await asyncio.to_thread(run, "agent", "exec", "builder", script, check=True)
        await asyncio.to_thread(
            run, "task", "submit", "--swarm", "api", "echo ok", "echo built", "true", check=True
        )
        await asyncio.to_thread(
            run, "task", "submit", "--swarm", "web", "--priority", "high", "exit 3", check=True
        )
        await asyncio.to_thread(run, "task", "submit", "--swarm", "batch", "sleep 600", check=True)
        await asyncio.to_thread(
            run, "task", "submit", "--swarm", "batch", "sleep 600", "--priority", "low", check=True
        )

        def tasks_settled() -> bool:
            tasks = [*sink.views.tasks_active.values()]
            done = sink.views.task_counts
            running = sum(1 for t in tasks if t.status in ("running", "leased"))
            failed = sum(c.get("failed", 0) for c in done.values())
            ok = sum(c.get("succeeded", 0) for c in done.values())
            return running == 2 and failed == 1 and ok == 3

        await sink.wait("the tasks settled", tasks_settled)
        scratch = agent_id(g, "scratch")
        pid = json.loads(run("agent", "get", scratch, "--json", check=True).stdout)["pid"]
        os.kill(int(pid), signal.SIGKILL)  # by hand: the console must see it die
        await asyncio.to_thread(run, "agent", "kill", "reviewer", check=True)

        def ended() -> bool:
            a = sink.views.agents
            reviewer = next((c for c in a.values() if c.name == "reviewer"), None)
            return (
                a[scratch].status is AgentStatus.FAILED
                and reviewer is not None
                and reviewer.status is AgentStatus.STOPPED
            )

        await sink.wait("scratch failed and reviewer stopped", ended)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def record_runs(g: Godel, raw: Path) -> None:
    """Three ``do.run`` calls, as ``godel do`` makes them, through the daemon."""
    repo = g.cwd
    paths = GodelPaths.resolve(g.home)
    sink = Sink()
    feed = DaemonFeed(paths, sink, autostart=False, record=raw)
    task = asyncio.create_task(feed.run())
    client = await connect(paths, autostart=False)
    go = repo.parent / "go"
    base = {"repo": str(repo), "agents": 1, "strategy": "careful", "runtime": "shell"}
    greet = [
        {"name": "greeting", "input": "echo hello > hello.txt"},
        {"name": "farewell", "input": "echo bye > bye.txt"},
        {"name": "readme", "input": "echo '# shop' > README.md", "depends_on": ["greeting"]},
    ]
    lint = [
        {"name": "format", "input": "echo formatted > fmt.txt"},
        {"name": "lint", "input": "echo 'lint: 2 errors' >&2; exit 3", "depends_on": ["format"]},
    ]
    hold = f"while [ ! -e {go} ]; do sleep 0.05; done; echo done > slow.txt"
    slow = [
        {"name": "migrate", "input": hold},
        {"name": "reindex", "input": "echo reindexed > idx.txt", "depends_on": ["migrate"]},
    ]
    running: asyncio.Task[object] | None = None
    try:
        await sink.wait("the recorder connected", lambda: sink.connected)
        await client.call(
            "do.run",
            {**base, "intent": "add the greeting files", "plan": {"tasks": greet}, "gate": "true"},
        )
        await client.call(
            "do.run", {**base, "intent": "format and lint", "plan": {"tasks": lint}, "gate": "true"}
        )
        running = asyncio.create_task(
            client.call(
                "do.run", {**base, "intent": "migrate the database", "plan": {"tasks": slow}}
            )
        )

        def migrating() -> bool:
            runs = [r for r in sink.views.runs.values() if r.intent == "migrate the database"]
            return bool(runs) and any(t.agent_id for t in runs[0].tasks)

        await sink.wait("the third run's first task running", migrating)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        go.touch()  # the third run ends after the recording
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
        await client.close()


def normalise(text: str, tmp: Path) -> str:
    """Times from ``T0``, ids and pids in order of appearance, paths fixed."""
    first = _ISO.search(text)
    assert first is not None
    shift = T0 - _parse(first.group())

    def when(m: re.Match[str]) -> str:
        t = _parse(m.group()) + shift
        return t.isoformat(timespec="microseconds").replace("+00:00", "Z")

    ids: dict[str, str] = {}

    def ident(m: re.Match[str]) -> str:
        key = m.group()
        if key not in ids:
            n = sum(1 for k in ids if k.startswith(m.group(1) + "-")) + 1
            ids[key] = f"{m.group(1)}-{n:0{len(m.group(2))}d}"
        return ids[key]

    pids: dict[str, str] = {}

    def pid(m: re.Match[str]) -> str:
        pids.setdefault(m.group(2), str(41000 + 17 * len(pids)))
        return m.group(1) + pids[m.group(2)]

    text = text.replace(str(tmp / "home"), HOME).replace(str(tmp / "project"), PROJECT)
    text = text.replace(str(tmp), "/tmp/godel")
    runs: dict[str, str] = {}
    text = _RUN.sub(
        lambda m: runs.setdefault(m.group(), f"do-20260302-0930{len(runs):02d}-a{len(runs):03x}"),
        text,
    )
    shas: dict[str, str] = {}

    def sha(m: re.Match[str]) -> str:
        n = shas.setdefault(m.group()[:12], f"{len(shas) + 1:x}")
        return ("c0ffee" + n * 40)[: len(m.group())]

    text = _SHA.sub(sha, text)
    text = _ISO.sub(when, text)
    text = _ID.sub(ident, text)
    text = re.sub(r"\w[\w.-]*\(uid=\d+\)", "dev(uid=1000)", text)  # who ran the CLI
    return re.sub(r'("pid": ?|process |pid=|pid )(\d+)', pid, text)


def _parse(s: str) -> datetime:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "console"
    if which not in ("console", "runs"):
        raise SystemExit(f"make_fixture: no fixture {which!r} (console, runs)")
    out = FIXTURE if which == "console" else DO_FIXTURE
    with tempfile.TemporaryDirectory(prefix="godel-fixture-") as d:
        tmp = Path(d)
        (tmp / "project").mkdir()
        env = _env(tmp / "home", tmp)
        if which == "runs":
            env.update(GIT_ENV)  # the daemon commits with it
            for cmd in (
                ["git", "init", "-q", "-b", "main"],
                ["git", "commit", "-q", "--allow-empty", "-m", "start"],
            ):
                subprocess.run(cmd, cwd=tmp / "project", env=env, check=True, capture_output=True)
        g = Godel(home=tmp / "home", cwd=tmp / "project", env=env)
        g.run("daemon", "start", check=True)
        raw = tmp / "raw.jsonl"
        try:
            asyncio.run(record(g, raw) if which == "console" else record_runs(g, raw))
        finally:
            g.run("daemon", "stop", timeout=60)
        text = normalise(raw.read_text(), tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    lines = text.count("\n")
    print(f"wrote {out} ({lines} lines)", file=sys.stderr)


if __name__ == "__main__":
    main()
