"""API keys from the caller: used for the spawn, kept in memory for a swarm's later spawns,
and never in the store's records, the audit log or an event."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from core.engine import Engine
from core.errors import LLMUnavailable
from core.events import Event
from core.models import AgentSpec, ExecResult, SwarmSpec
from tests.engine.conftest import MakeEngine, subscribe

if TYPE_CHECKING:
    from core.llm.scripted import ScriptedServer

KEY_ENV = "KEYED_ENGINE_TEST_KEY"
SECRET = "sk-caller-0123456789abcdef"


async def keyed_engine(make_engine: MakeEngine, server: ScriptedServer) -> Engine:
    return await make_engine(
        providers={
            "keyed": {"kind": "openai", "base_url": server.base_url + "/v1", "api_key_env": KEY_ENV}
        },
        models={"keyed": {"provider": "keyed", "id": "scripted"}},
        defaults={"model": "keyed"},
    )


async def run(engine: Engine, agent_id: str, text: str) -> ExecResult:
    result = None
    async for ev in engine.exec(agent_id, text, actor="test"):
        if isinstance(ev, ExecResult):
            result = ev
    assert result is not None
    return result


async def test_the_callers_key_wins_over_the_daemons(
    make_engine: MakeEngine, scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await keyed_engine(make_engine, scripted_server)
    spec = AgentSpec(runtime="native")
    with pytest.raises(LLMUnavailable, match=f"{KEY_ENV}.*neither in the calling shell"):
        await engine.spawn_agent(spec, "test")
    monkeypatch.setenv(KEY_ENV, "the-daemons-key")
    agent = await engine.spawn_agent(spec, "test", keys={KEY_ENV: SECRET, "OTHER_KEY": "x"})
    assert (await run(engine, agent.id, "hi")).status == "succeeded"
    assert [q.api_key for q in scripted_server.requests] == [SECRET]


async def test_a_swarm_keeps_its_models_key_for_later_spawns_and_writes_it_nowhere(
    make_engine: MakeEngine, scripted_server: ScriptedServer
) -> None:
    engine = await keyed_engine(make_engine, scripted_server)
    sub = subscribe(engine, "all")
    _, agents, errors = await engine.create_swarm(
        SwarmSpec(name="llm", runtime="native", count=1, max_agents=3),
        "test",
        keys={KEY_ENV: SECRET, "OTHER_KEY": "other-secret"},
    )
    assert errors == [] and len(agents) == 1
    # Scaled up (as the autoscaler or a replacement would) with no key from the caller.
    _, errors = await engine.scale_swarm("llm", 3, "test")
    assert errors == []
    members = [a for a in await engine.list_agents() if a.swarm == "llm"]
    assert len(members) == 3
    for a in members:
        await run(engine, a.id, "hello")
    assert {q.api_key for q in scripted_server.requests} == {SECRET}
    # Only the key the swarm's model reads was kept.
    assert engine.s.swarms._keys == {"llm": {KEY_ENV: SECRET}}

    written: list[Any] = [a.model_dump(mode="json") for a in await engine.list_agents()]
    written += [e.model_dump(mode="json") for e in await engine.audit_list()]
    events: list[Event] = []
    with contextlib.suppress(asyncio.QueueEmpty):
        while True:
            events.append(sub.get_nowait())
    written += [e.model_dump(mode="json") for e in events]
    assert events and written
    text = repr(written)
    assert SECRET not in text and "other-secret" not in text

    await engine.destroy_swarm("llm", "test")
    assert engine.s.swarms._keys == {}
