"""Benchmarks of real runtimes through the real engine (``godel bench``, ``make bench``).

Nothing here is mocked: agents are spawned by an embedded ``Engine`` on a temporary
``GODEL_HOME`` (real SQLite, real processes, the real scripted model server over HTTP).

- ``spawn``: spawn-to-ready time per agent (sequential), and resident memory per agent.
- ``exec``: the same input run through the engine and through the runtime alone, with
  the two interleaved (A, B, A, B...) so that machine noise hits both alike; the figure
  that matters is the ratio of their medians (the engine's overhead).

``common`` holds the shared parts, ``agents`` the single-agent benchmarks (spawn, exec),
``fleet`` the many-agent ones (dispatch, swarm, stop).
"""

from core.bench.agents import ExecBench, RawPi, SpawnBench, bench_exec, bench_spawn
from core.bench.common import Machine, Stats, bench_engine, model_server_process
from core.bench.fleet import (
    DispatchBench,
    StopBench,
    SwarmBench,
    bench_dispatch,
    bench_stop,
    bench_swarm,
)

__all__ = [
    "DispatchBench",
    "ExecBench",
    "Machine",
    "RawPi",
    "SpawnBench",
    "Stats",
    "StopBench",
    "SwarmBench",
    "bench_dispatch",
    "bench_engine",
    "bench_exec",
    "bench_spawn",
    "bench_stop",
    "bench_swarm",
    "model_server_process",
]
