"""Record what the real pi writes on stdout, for the pi run loop's unit tests.

Runs the pinned pi (``tools/pi``, installed by ``make setup``) in RPC mode against Godel's
scripted model server, a fresh pi per scenario, with the argv, environment and config
the runtime uses (:func:`core.runtimes.pi.pi_command`). For each scenario it writes, under
``tests/fixtures/pi/``:

* ``<scenario>.jsonl``: every stdout line, as pi wrote it;
* ``<scenario>.sent.json``: the prompt, the model API, pi's version, and the commands
  written to pi's stdin, each with ``after_line``: how many stdout lines had been read
  when it was written, so a replay can put both streams back in order.

Each scenario ends with a ``get_state`` asked until pi reports it is no longer streaming:
its answer fences off everything pi wrote for the prompt. Then stdin is closed, and pi
exits.

Usage: ``.venv/bin/python scripts/record_pi_jsonl.py [SCENARIO ...]`` (default: all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil

from core.llm.catalog_types import ModelPrices, ResolvedModel
from core.llm.scripted import ScriptedServer
from core.runtimes.base import RuntimeContext
from core.runtimes.pi import PiRuntime, pi_command, settings_json, write_config
from core.runtimes.pi.protocol import PI_VERSION, LineSplitter, encode_command
from core.runtimes.process import terminate_group

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "pi"
KEY_ENV = "GODEL_SCRIPTED_API_KEY"
PRICES = ModelPrices(input_mtok=Decimal(1), output_mtok=Decimal(2))  # as the tests use
STEP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    prompt: str
    # The stdout line that ends the prompt's run: an event type, or "response:<command>".
    until: str = "agent_end"
    api: str = "openai"
    # Sent once the first tool runs: "abort", or "steer:<message>".
    on_tool: str | None = None


SCENARIOS = [
    Scenario("answer", "hello there"),
    Scenario("echo_hello", "run: echo hello"),
    Scenario("echo_hello_anthropic", "run: echo hello", api="anthropic"),
    Scenario("failing_command", "run: echo oops; exit 3"),
    # pi retries a 503 twice (settings.json), then gives up with auto_retry_end.
    Scenario("server_error_retries", "fail: 503", until="auto_retry_end"),
    Scenario("client_error", "fail: 400"),
    Scenario("abort_mid_tool", "run: sleep 30", until="response:abort", on_tool="abort"),
    Scenario("steer", "run: sleep 1", on_tool="steer:also say banana"),
]


def model_for(server: ScriptedServer, api: str) -> ResolvedModel:
    return ResolvedModel(
        name="scripted",
        provider="scripted",
        api="openai" if api == "openai" else "anthropic",
        base_url=server.base_url + "/v1" if api == "openai" else server.base_url,
        upstream_id="scripted",
        api_key_env=KEY_ENV,
        api_key="scripted-key",
        prices=PRICES,
        context_window=32000,
        max_tokens=4096,
        scripted=True,
    )


class Recorder:
    """One pi process: its stdout lines as read, and the commands written to it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[bytes] = []
        self.sent: list[dict[str, Any]] = []
        self.objects: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        splitter = LineSplitter()
        while data := await self.proc.stdout.read(65536):
            for line in splitter.feed(data):
                self._got(line)
        rest = splitter.flush()
        if rest is not None:
            self._got(rest)
        self.objects.put_nowait(None)

    def _got(self, line: bytes) -> None:
        self.lines.append(line)
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                self.objects.put_nowait(obj)

    async def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.sent.append({"after_line": len(self.lines), "command": command})
        self.proc.stdin.write(encode_command(command))
        await self.proc.stdin.drain()

    async def next(self) -> dict[str, Any]:
        obj = await asyncio.wait_for(self.objects.get(), STEP_TIMEOUT_S)
        if obj is None:
            raise RuntimeError("pi closed its stdout")
        return obj

    async def answer(self, rid: str) -> dict[str, Any]:
        while True:
            obj = await self.next()
            if obj.get("type") == "response" and obj.get("id") == rid:
                return obj


async def wait_tool_process(pid: int, name: str) -> None:
    """Until pi has a descendant called ``name`` (the tool's command is running)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_TIMEOUT_S
    while loop.time() < deadline:
        for p in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if p.name() == name:
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no {name} process under pi {pid}")


def ends(obj: dict[str, Any], until: str) -> bool:
    if until.startswith("response:"):
        return obj.get("type") == "response" and obj.get("command") == until.split(":", 1)[1]
    return obj.get("type") == until


async def record(scenario: Scenario, pi_bin: str, server: ScriptedServer, tmp: Path) -> None:
    agent_dir = tmp / scenario.name / "pi"
    workspace = tmp / scenario.name / "ws"
    workspace.mkdir(parents=True)
    model = model_for(server, scenario.api)
    write_config(agent_dir, model, settings_json())
    env, args = pi_command(pi_bin, agent_dir, model, {})
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=workspace,
        env=env,
        start_new_session=True,
    )
    rec = Recorder(proc)
    try:
        await rec.send({"id": "ready", "type": "get_state"})
        await rec.answer("ready")
        await rec.send({"id": "prompt", "type": "prompt", "message": scenario.prompt})
        while True:
            obj = await rec.next()
            if obj.get("type") == "tool_execution_start" and scenario.on_tool:
                if scenario.on_tool == "abort":
                    await wait_tool_process(proc.pid, "sleep")
                    await rec.send({"id": "abort", "type": "abort"})
                else:
                    message = scenario.on_tool.removeprefix("steer:")
                    await rec.send({"id": "steer", "type": "steer", "message": message})
            if ends(obj, scenario.until):
                break
        # The fence: pi reports the run over (as the runtime's settle probe asks).
        for n in range(100):
            rid = f"fence-{n}"
            await rec.send({"id": rid, "type": "get_state"})
            state = await rec.answer(rid)
            data = state.get("data")
            if not (isinstance(data, dict) and data.get("isStreaming")):
                break
            await asyncio.sleep(0.02)
        assert proc.stdin is not None
        proc.stdin.close()  # an idle pi exits at EOF
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5.0)
        await asyncio.wait_for(rec.reader, 5.0)
    finally:
        if proc.returncode is None:
            await terminate_group(proc.pid, 2.0)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{scenario.name}.jsonl").write_bytes(b"".join(line + b"\n" for line in rec.lines))
    meta = {
        "scenario": scenario.name,
        "prompt": scenario.prompt,
        "api": scenario.api,
        "pi_version": PI_VERSION,
        "sent": rec.sent,
    }
    (OUT / f"{scenario.name}.sent.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{scenario.name}: {len(rec.lines)} lines, {len(rec.sent)} commands")


async def main(names: list[str]) -> None:
    pi_bin = PiRuntime(RuntimeContext(home=Path("/nonexistent"))).find_pi()
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    server = ScriptedServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="godel-pi-record-") as tmp:
            for scenario in chosen:
                await record(scenario, pi_bin, server, Path(tmp))
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="names (default: all)")
    asyncio.run(main(parser.parse_args().scenarios))
