"""Benchmarks of real runtimes through the real engine (``godel bench``, ``make bench``).

Nothing here is mocked: agents are spawned by an embedded ``Engine`` on a temporary
``GODEL_HOME`` (real SQLite, real processes, the real scripted model server over HTTP).

- ``spawn``: spawn-to-ready time per agent (sequential), and resident memory per agent.
- ``exec``: the same input run through the engine and through the runtime alone, with
  the two interleaved (A, B, A, B...) so that machine noise hits both alike; the figure
  that matters is the ratio of their medians (the engine's overhead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel

from core.config import load_config
from core.engine import Engine, build_engine
from core.models import AgentSpec, ExecResult, ExecStatus
from core.paths import GodelPaths
from core.runtimes.base import Capability
from core.runtimes.registry import known_runtime_names

DEFAULT_INPUT = {"shell": "true", "native": "run: true", "pi": "run: true"}


class Stats(BaseModel):
    n: int
    mean: float
    p50: float
    p95: float
    min: float
    max: float

    @classmethod
    def of(cls, xs: list[float]) -> Stats:
        s = sorted(xs)
        return cls(
            n=len(s),
            mean=statistics.fmean(s),
            p50=statistics.median(s),
            p95=s[min(len(s) - 1, round(0.95 * (len(s) - 1)))],
            min=s[0],
            max=s[-1],
        )


class Machine(BaseModel):
    cpus: int
    cpu_model: str
    memory_gib: float
    python: str
    platform: str

    @classmethod
    def here(cls) -> Machine:
        model = platform.processor() or ""
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        return cls(
            cpus=os.cpu_count() or 0,
            cpu_model=model,
            memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
            python=platform.python_version(),
            platform=platform.platform(),
        )


class SpawnBench(BaseModel):
    runtime: str
    model: str | None
    count: int
    failures: int
    spawn_to_ready_s: Stats
    rss_mib_per_agent: Stats | None  # None for in-process runtimes
    in_process_rss_mib_total: float | None  # daemon RSS growth for in-process agents
    total_s: float


class ExecBench(BaseModel):
    runtime: str
    model: str | None
    input: str
    runs: int
    engine_s: Stats  # through Engine.exec (store, audit, events)
    runtime_s: Stats  # the runtime class alone
    # The baseline: pi driven by a bare JSONL loop for pi, else the runtime alone.
    direct_s: Stats
    direct_kind: str
    overhead_ratio: float  # engine p50 / direct p50
    failures: int


class RawPi:
    """pi driven directly: the same binary, flags and config, and a bare JSONL loop."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._n = 0

    @classmethod
    async def start(cls, engine: Engine, model_name: str, workspace: Path) -> RawPi:
        from core.runtimes.pi import PiRuntime, pi_command, settings_json, write_config

        model = await engine.models.resolve(model_name)
        rt = engine.registry.get("pi")
        assert isinstance(rt, PiRuntime)
        agent_dir = engine.paths.home / "raw-pi"
        write_config(agent_dir, model, settings_json())
        env, args = pi_command(rt.find_pi(), agent_dir, model, {})
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=workspace,
            env=env,
            limit=64 * 2**20,
            start_new_session=True,
        )
        raw = cls(proc)
        await raw._idle()
        return raw

    async def _send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
        await self.proc.stdin.drain()

    async def _until(self, pred: Any) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError("pi exited")
            msg: dict[str, Any] = json.loads(line)
            if pred(msg):
                return msg

    async def _idle(self) -> None:
        """pi refuses a prompt until it reports it stopped streaming (``get_state``)."""
        while True:
            self._n += 1
            rid = f"s{self._n}"
            await self._send({"id": rid, "type": "get_state"})
            msg = await self._until(lambda m, rid=rid: m.get("id") == rid)
            if not msg["data"]["isStreaming"]:
                return

    async def prompt(self, text: str) -> bool:
        await self._send({"id": "p", "type": "prompt", "message": text})
        end = await self._until(lambda m: m.get("type") == "agent_end")
        await self._idle()
        messages = end.get("messages") or [{}]
        return bool(messages[-1].get("stopReason") != "error")

    async def close(self) -> None:
        from core.runtimes.process import terminate_group

        if self.proc.stdin is not None:
            self.proc.stdin.close()
        await terminate_group(self.proc.pid, grace=2.0)
        await self.proc.wait()


@contextlib.asynccontextmanager
async def model_server_process() -> AsyncIterator[str]:
    """The scripted model server in a process of its own, as a real endpoint would be.

    (The daemon runs it as a thread; in a benchmark that would make the engine path
    compete with the server for the GIL and inflate the engine's overhead.)
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.cli.main",
        "model",
        "serve",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        m = re.search(r"on (http://\S+) ", line)
        if not m:
            raise RuntimeError(f"the scripted model server did not start: {line!r}")
        yield m.group(1)
    finally:
        proc.terminate()
        await proc.wait()


@contextlib.asynccontextmanager
async def bench_engine(home: Path | None = None) -> AsyncIterator[Engine]:
    """An embedded engine on a throwaway home (the same class the daemon runs), with the
    scripted model server out of process."""
    async with model_server_process() as url, _engine(home, url) as engine:
        yield engine


@contextlib.asynccontextmanager
async def _engine(home: Path | None, scripted_url: str) -> AsyncIterator[Engine]:
    async def url() -> str:
        return scripted_url

    with tempfile.TemporaryDirectory(prefix="godel-bench-") as tmp:
        paths = GodelPaths.resolve(home or tmp)
        paths.ensure()
        loaded = load_config(known_runtime_names())
        engine = build_engine(paths, config=loaded, scripted_url=url)
        await engine.start(actor="bench")
        try:
            yield engine
        finally:
            await engine.stop(reason="bench done", actor="bench")


def _tree_rss_mib(pid: int) -> float:
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for q in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += q.memory_info().rss
    return total / 2**20


async def bench_spawn(runtime: str, count: int, model: str | None = None) -> SpawnBench:
    async with bench_engine() as engine:
        me = psutil.Process()
        rss_before = me.memory_info().rss
        times: list[float] = []
        failures = 0
        ids: list[str] = []
        t_all = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            try:
                agent = await engine.spawn_agent(
                    AgentSpec(runtime=runtime, model=model), actor="bench"
                )
            except Exception:
                failures += 1
                continue
            times.append(time.perf_counter() - t0)
            ids.append(agent.id)
        total = time.perf_counter() - t_all
        agents = [await engine.get_agent(i) for i in ids]
        rss = [_tree_rss_mib(a.pid) for a in agents if a.pid]
        in_process = None
        if not rss and agents:
            in_process = round((me.memory_info().rss - rss_before) / 2**20, 1)
        used_model = agents[0].model if agents else model
        return SpawnBench(
            runtime=runtime,
            model=used_model,
            count=count,
            failures=failures,
            spawn_to_ready_s=Stats.of(times or [0.0]),
            rss_mib_per_agent=Stats.of(rss) if rss else None,
            in_process_rss_mib_total=in_process,
            total_s=total,
        )


async def bench_exec(
    runtime: str, runs: int, input: str | None = None, model: str | None = None
) -> ExecBench:
    """Engine path vs the runtime driven directly, interleaved, on one agent each."""
    text = input or DEFAULT_INPUT.get(runtime, "true")
    async with bench_engine() as engine:
        rt = engine.registry.get(runtime)
        agent = await engine.spawn_agent(AgentSpec(runtime=runtime, model=model), actor="bench")
        resolved = None
        if Capability.MODEL in rt.capabilities:
            resolved = await engine.models.resolve(agent.model or "scripted")
        ws = engine.paths.home / "direct-ws"
        ws.mkdir()
        direct = await rt.spawn(
            "direct-000000", AgentSpec(runtime=runtime, model=agent.model), ws, model=resolved
        )
        failures = 0
        raw: RawPi | None = None
        if runtime == "pi":
            raw_ws = engine.paths.home / "raw-ws"
            raw_ws.mkdir()
            raw = await RawPi.start(engine, agent.model or "scripted", raw_ws)

        async def via_raw() -> float:
            assert raw is not None
            t0 = time.perf_counter()
            ok = await raw.prompt(text)
            dt = time.perf_counter() - t0
            return dt if ok else -dt

        async def via_engine() -> float:
            t0 = time.perf_counter()
            res: Any = None
            async for ev in engine.exec(agent.id, text, actor="bench"):
                res = ev
            dt = time.perf_counter() - t0
            return dt if _ok(res) else -dt

        async def via_runtime() -> float:
            t0 = time.perf_counter()
            res: Any = None
            async for ev in rt.exec(direct, text, exec_id="exec-direct", timeout=600):
                res = ev
            dt = time.perf_counter() - t0
            return dt if _ok(res) else -dt

        paths: list[tuple[Any, list[float]]] = [(via_engine, []), (via_runtime, [])]
        if raw is not None:
            paths.append((via_raw, []))
        # Warm every path (first calls pay for lazy imports and connection set-up).
        for fn, _ in paths:
            await fn()
        for _ in range(runs):
            for fn, out in paths:  # interleaved: noise hits every path alike
                dt = await fn()
                if dt < 0:
                    failures += 1
                out.append(abs(dt))
        await rt.kill(direct)
        if raw is not None:
            await raw.close()
        ea, er = Stats.of(paths[0][1]), Stats.of(paths[1][1])
        ed = Stats.of(paths[2][1]) if raw is not None else er
        return ExecBench(
            runtime=runtime,
            model=agent.model,
            input=text,
            runs=runs,
            engine_s=ea,
            runtime_s=er,
            direct_s=ed,
            direct_kind="bare pi JSONL driver" if raw is not None else "runtime alone",
            overhead_ratio=round(ea.p50 / ed.p50, 4) if ed.p50 else 0.0,
            failures=failures,
        )


def _ok(result: Any) -> bool:
    return isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED


class DispatchBench(BaseModel):
    runtime: str
    agents: int
    tasks: int
    failures: int
    submit_s: float
    total_s: float  # first submit to last completion
    tasks_per_s: float


class SwarmBench(BaseModel):
    runtime: str
    model: str | None
    count: int
    failures: int
    all_ready_s: float
    spawn_concurrency: int


async def _wait_final(engine: Engine, swarm: str, n: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = await engine.task_counts(swarm)
        done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "dead", "cancelled"))
        if done >= n or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.02)


async def bench_dispatch(runtime: str, tasks: int, agents: int = 8) -> DispatchBench:
    """Submit ``tasks`` (in batches of 1,000) to a swarm and time submit → all complete."""
    from core.models import SwarmSpec, TaskSpec

    text = {"shell": "true", "noop": "noop"}.get(runtime, DEFAULT_INPUT.get(runtime, "true"))
    async with bench_engine() as engine:
        await engine.create_swarm(
            SwarmSpec(name="bench", runtime=runtime, count=agents, capacity=tasks * 2 + 10),
            actor="bench",
        )
        t0 = time.perf_counter()
        for start in range(0, tasks, 1000):
            batch = [
                TaskSpec(input=text, swarm="bench", max_attempts=1)
                for _ in range(min(1000, tasks - start))
            ]
            await engine.submit_tasks(batch, actor="bench")
        t_submit = time.perf_counter() - t0
        counts = await _wait_final(engine, "bench", tasks, timeout=600)
        total = time.perf_counter() - t0
        ok = counts.get("succeeded", 0)
        return DispatchBench(
            runtime=runtime,
            agents=agents,
            tasks=tasks,
            failures=tasks - ok,
            submit_s=round(t_submit, 4),
            total_s=round(total, 4),
            tasks_per_s=round(ok / total, 1) if total else 0.0,
        )


async def bench_swarm(runtime: str, count: int, model: str | None = None) -> SwarmBench:
    """Create a swarm of ``count`` agents; time until every one is ready."""
    from core.models import SwarmSpec

    async with bench_engine() as engine:
        t0 = time.perf_counter()
        _, agents, errors = await engine.create_swarm(
            SwarmSpec(name="bench", runtime=runtime, count=count, model=model, max_agents=count),
            actor="bench",
        )
        elapsed = time.perf_counter() - t0
        return SwarmBench(
            runtime=runtime,
            model=agents[0].model if agents else model,
            count=count,
            failures=len(errors),
            all_ready_s=round(elapsed, 3),
            spawn_concurrency=min(
                engine.config.config.queue.spawn_concurrency,
                int(getattr(engine.registry.get(runtime), "max_parallel_spawns", 1 << 30)),
            ),
        )


class StopBench(BaseModel):
    runtime: str
    count: int
    failures: int  # agents that did not spawn
    child_watcher: str  # how the daemon learns of its children's exits
    threads_before: int  # the daemon process's OS threads, before the swarm
    threads_with_agents: int  # ... with ``count`` agents running
    rss_mib_before: float
    rss_mib_with_agents: float
    daemon_kib_per_agent: float  # the daemon's RSS growth / count
    tree_mib_per_agent: float  # mean RSS of an agent's process tree
    spawn_s: float  # create_swarm until every agent is ready
    destroy_s: float  # destroy_swarm with ``count`` live agents
    stop_s: float  # Engine.stop with ``count`` live agents
    left_running: int  # agent processes still alive after destroy and stop (want 0)


def _trees_rss_mib(pids: list[int]) -> list[float]:
    """Resident memory of each pid's process tree, from one pass over the process table
    (a ``children(recursive=True)`` per agent would walk the table once per agent)."""
    kids: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for proc in psutil.process_iter(["ppid", "memory_info"]):
        info = proc.info
        if info["memory_info"] is None:
            continue
        kids.setdefault(int(info["ppid"]), []).append(proc.pid)
        rss[proc.pid] = info["memory_info"].rss
    out = []
    for pid in pids:
        total, stack = 0, [pid]
        while stack:
            p = stack.pop()
            total += rss.get(p, 0)
            stack.extend(kids.get(p, ()))
        out.append(total / 2**20)
    return out


def _still_running(pids: list[int]) -> int:
    n = 0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                n += 1
    return n


async def bench_stop(runtime: str = "shell", count: int = 1000) -> StopBench:
    """What ``count`` live agents cost the daemon, and how long stopping them takes.

    One swarm measures threads and memory, then ``destroy_swarm``; a second swarm is
    left running and the engine stops with it (``bench_engine``'s own stop on exit is
    then a no-op).
    """
    import warnings

    from core.models import SwarmSpec
    from core.runtimes.children import install_child_watcher

    # As the daemon does when its engine starts; here before the scripted model
    # server's process too, so that no child of this process is watched by a thread.
    install_child_watcher()
    watcher = "asyncio's default (pidfd where the kernel has it)"
    get_watcher = getattr(asyncio, "get_child_watcher", None)  # gone in Python 3.14
    if sys.version_info < (3, 12) and get_watcher is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            watcher = type(get_watcher()).__name__
    me = psutil.Process()

    def spec(name: str) -> SwarmSpec:
        return SwarmSpec(name=name, runtime=runtime, count=count, max_agents=count)

    async with bench_engine() as engine:
        threads_before, rss_before = me.num_threads(), me.memory_info().rss
        t0 = time.perf_counter()
        _, agents, errors = await engine.create_swarm(spec("bench"), actor="bench")
        spawn_s = time.perf_counter() - t0
        threads_with, rss_with = me.num_threads(), me.memory_info().rss
        pids = [a.pid for a in agents if a.pid]
        trees = await asyncio.to_thread(_trees_rss_mib, pids)
        t0 = time.perf_counter()
        await engine.destroy_swarm("bench", actor="bench")
        destroy_s = time.perf_counter() - t0
        left = _still_running(pids)

        _, agents, more_errors = await engine.create_swarm(spec("bench-stop"), actor="bench")
        pids = [a.pid for a in agents if a.pid]
        t0 = time.perf_counter()
        await engine.stop(reason="bench stop", actor="bench")
        stop_s = time.perf_counter() - t0
        left += _still_running(pids)
        n = max(count, 1)
        return StopBench(
            runtime=runtime,
            count=count,
            failures=len(errors) + len(more_errors),
            child_watcher=watcher,
            threads_before=threads_before,
            threads_with_agents=threads_with,
            rss_mib_before=round(rss_before / 2**20, 1),
            rss_mib_with_agents=round(rss_with / 2**20, 1),
            daemon_kib_per_agent=round((rss_with - rss_before) / 1024 / n, 1),
            tree_mib_per_agent=round(statistics.fmean(trees), 2) if trees else 0.0,
            spawn_s=round(spawn_s, 3),
            destroy_s=round(destroy_s, 3),
            stop_s=round(stop_s, 3),
            left_running=left,
        )
