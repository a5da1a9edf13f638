"""What every benchmark shares: statistics, the machine, an embedded engine on a
throwaway home with the scripted model server in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel

from core.config import load_config
from core.engine import Engine, build_engine
from core.models import ExecResult, ExecStatus
from core.paths import GodelPaths
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
    async def url(script: Path | None) -> str:
        # The benchmarks' config names no script: every scripted model is this server.
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


def tree_rss_mib(pid: int) -> float:
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


def result_ok(result: Any) -> bool:
    return isinstance(result, ExecResult) and result.status is ExecStatus.SUCCEEDED
