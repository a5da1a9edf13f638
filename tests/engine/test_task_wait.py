"""``task.wait`` over the RPC methods, in process: progress from ``task.changed`` events,
the final tasks, an unknown id refused before any wait, a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from core.api.methods import build_methods
from core.api.protocol import STREAM_METHOD
from core.clock import FakeClock
from core.engine import Engine
from core.errors import TaskNotFound
from tests.engine.conftest import Gate, advance, make_swarm, submit


class Rpc:
    """The daemon's methods without a socket; records what a call streamed."""

    def __init__(self, engine: Engine) -> None:
        self.rpc = build_methods(engine, started_at=0.0, request_stop=lambda r, a: None)
        self.streamed: list[Any] = []
        self.first_progress = asyncio.Event()

    async def _emit(self, msg: Any) -> None:
        assert msg["method"] == STREAM_METHOD
        self.streamed.append(msg["params"]["data"])
        self.first_progress.set()

    async def call(self, method: str, **params: Any) -> Any:
        msg = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        return await self.rpc.handle_one(msg, "test", self._emit)


async def test_wait_streams_progress_and_returns_the_final_tasks(
    engine: Engine, gates: Callable[[str], Gate]
) -> None:
    await make_swarm(engine, "w", 2)
    gate = gates("w")
    ok, bad = await submit(
        engine, "w", f"{gate.cmd}; echo ok", f"{gate.cmd}; exit 3", max_attempts=1
    )
    rpc = Rpc(engine)
    waiting = asyncio.create_task(rpc.call("task.wait", ids=[ok, bad, ok]))
    await rpc.first_progress.wait()  # subscribed and read: nothing is final yet
    assert not waiting.done()
    first = rpc.streamed[0]
    assert first["kind"] == "progress" and first["total"] == 2 and first["final"] == 0
    gate.open(2)
    reply = await asyncio.wait_for(waiting, 10)
    result = reply["result"]
    assert result["timed_out"] is False
    assert [t["id"] for t in result["tasks"]] == [ok, bad]  # each once, in the order asked
    assert [t["status"] for t in result["tasks"]] == ["succeeded", "failed"]
    assert result["tasks"][1]["error"] == "failed after 1 attempt: exit code 3"
    last = rpc.streamed[-1]
    assert last["final"] == 2 and last["counts"] == {"succeeded": 1, "failed": 1}


async def test_wait_on_final_tasks_returns_at_once(engine: Engine) -> None:
    (t,) = await submit(engine, None, "true")  # no agent: it stays ready
    await engine.cancel_task(t, "test")
    reply = await Rpc(engine).call("task.wait", ids=[t])
    assert reply["result"]["timed_out"] is False
    assert reply["result"]["tasks"][0]["status"] == "cancelled"


async def test_an_unknown_id_is_one_error_before_any_wait(engine: Engine) -> None:
    (t,) = await submit(engine, None, "true")  # no agent: it stays ready
    subscribers = engine.bus.subscriber_count
    reply = await Rpc(engine).call("task.wait", ids=[t, "task-nope", "task-nada"])
    err = reply["error"]
    assert err["code"] == TaskNotFound.code
    assert err["message"] == (
        "tasks 'task-nope', 'task-nada' not found; nothing was waited for (see `godel task list`)"
    )
    assert engine.bus.subscriber_count == subscribers  # the wait's subscription is gone


async def test_a_timeout_returns_the_tasks_as_they_are(engine: Engine, clock: FakeClock) -> None:
    (t,) = await submit(engine, None, "true")  # no agent: it stays ready
    rpc = Rpc(engine)
    waiting = asyncio.create_task(rpc.call("task.wait", ids=[t], timeout=30))
    await rpc.first_progress.wait()
    await advance(clock, 29)  # the engine's clock: no real time passes
    assert not waiting.done()
    await advance(clock, 1)
    reply = await asyncio.wait_for(waiting, 10)
    result = reply["result"]
    assert result["timed_out"] is True
    assert [x["status"] for x in result["tasks"]] == ["ready"]
