"""Benchmarks of many agents and tasks: queue throughput, swarm start, and the
daemon's threads, memory and stop time with 1,000 agents."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time

import psutil
from pydantic import BaseModel

from core.bench.common import DEFAULT_INPUT, bench_engine
from core.engine import Engine


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
        done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
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
    failure_sample: list[str] = []  # why (the first few), so a failure is never silent
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
            failure_sample=[*errors, *more_errors][:3],
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
