"""Benchmarks of single agents: spawn-to-ready time and memory, and exec latency through
the engine against the runtime alone (and, for pi, a bare JSONL driver)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel

from core.bench.common import DEFAULT_INPUT, Stats, bench_engine, result_ok, tree_rss_mib
from core.engine import Engine
from core.models import AgentSpec
from core.runtimes.base import Capability


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
        env, args = pi_command(rt.find_pi(), agent_dir, model, "raw-pi", {})
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
        rss = [tree_rss_mib(a.pid) for a in agents if a.pid]
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
            return dt if result_ok(res) else -dt

        async def via_runtime() -> float:
            t0 = time.perf_counter()
            res: Any = None
            async for ev in rt.exec(direct, text, exec_id="exec-direct", timeout=600):
                res = ev
            dt = time.perf_counter() - t0
            return dt if result_ok(res) else -dt

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
