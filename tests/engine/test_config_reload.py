"""Config in process: ``[[agents]]`` groups at start, and a reload applied while running."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from core.clock import FakeClock
from core.config import AgentGroup
from core.events import (
    AgentActivity,
    AgentSpawned,
    ConfigChanged,
    ExecStarted,
    SwarmAutoscaled,
    TaskFinished,
)
from core.models import AgentSpec
from tests.engine.conftest import (
    Gate,
    MakeEngine,
    Match,
    advance,
    audit,
    events,
    make_swarm,
    next_event,
    submit,
    subscribe,
)


async def test_agent_groups_are_spawned_at_start_with_stable_names(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(
        start=False,
        agents=[AgentGroup(name="w", runtime="shell", count=2), AgentGroup(runtime="noop")],
    )
    sub = subscribe(engine, "t", "agent.spawned")
    await engine.start("test")
    spawned = await events(sub, Match(AgentSpawned), 3)
    names = sorted(e.name or "" for e in spawned)
    assert names == ["noop-group2-1", "w-1", "w-2"]  # a nameless group: runtime, index
    agents = {a.name: a for a in await engine.list_agents()}
    assert agents["w-1"].runtime == "shell" and agents["noop-group2-1"].runtime == "noop"
    # Already running: starting the groups again spawns nothing.
    assert await engine.s.config.start_agent_groups("test") == []
    assert len(await engine.list_agents()) == 3


PROJECT_CONFIG = """
[queue]
lease_s = 30

[autoscaler]
interval_s = 2

[health]
interval_s = 3600  # as the test engine's (no scheduled probes)
failure_threshold = 2

[daemon]
event_queue_size = 50

[runtimes.shell]
shell = "/bin/sh"
"""


async def test_reload_applies_what_it_can_and_names_what_needs_a_restart(
    make_engine: MakeEngine, clock: FakeClock, tmp_path: Path, gates: Callable[[str], Gate]
) -> None:
    engine = await make_engine(autoscaler={"enabled": True})  # as a project file leaves it
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    project = tmp_path / "project"
    (project / ".godel").mkdir(parents=True)
    (project / ".godel" / "config.toml").write_text(PROJECT_CONFIG)
    sub = subscribe(
        engine,
        "t",
        "config.changed",
        "agent.activity",
        "swarm.autoscaled",
        "exec.started",
        "task.finished",
    )

    reload = await engine.reload_config("test", cwd=project)
    assert reload.applied == [
        "autoscaler.interval_s",
        "daemon.event_queue_size",
        "health.failure_threshold",
        "queue.lease_s",
    ]
    assert reload.needs_restart == ["runtimes.shell"]
    changed = await next_event(sub, Match(ConfigChanged))
    assert changed.digest == reload.digest
    assert changed.sources == [str(project / ".godel" / "config.toml")]
    (entry,) = await audit(engine, "config.change")
    assert entry.payload["applied"] == reload.applied
    assert entry.payload["needs_restart"] == ["runtimes.shell"]

    # In force now:
    config = engine.config.config
    assert engine.s.dispatcher.lease_s == 30
    assert engine.bus.default_maxsize == 50
    fresh = engine.bus.subscribe("new")
    assert fresh.maxsize == 50
    fresh.close()
    assert engine.s.autoscaler.settings.interval_s == 2
    breaker = engine.s.health.trackers[agent.id].breaker  # an agent spawned before
    assert breaker.failure_threshold == 2
    # ...but the runtimes keep their options until a restart.
    assert config.runtimes == {} and config.health.failure_threshold == 2

    # A lease taken now lasts 30 s.
    gate = gates("lease")
    (t,) = await submit(engine, None, gate.cmd)
    await next_event(sub, Match(ExecStarted, agent_id=agent.id))
    lease_expires = (await engine.get_task(t)).lease_expires
    assert lease_expires is not None and lease_expires - clock.time() == 30
    gate.open()
    await next_event(sub, Match(TaskFinished, task_id=t))

    # The existing agent's breaker opens after two failures, no longer five.
    await submit(engine, None, "exit 1", "exit 1", max_attempts=1)
    opened = await next_event(sub, Match(AgentActivity, kind="breaker"))
    assert opened.agent_id == agent.id and opened.data["to"] == "open"

    # The autoscaler's loop runs every 2 s now (it was 5 s).
    await make_swarm(engine, "later", 0, max_agents=1, runtime="noop")
    await submit(engine, "later", "true")
    await advance(clock, 2)
    scaled = await next_event(sub, Match(SwarmAutoscaled, swarm="later"))
    assert scaled.to_agents == 1


async def test_reloading_the_same_files_again_changes_nothing(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine()
    before = engine.config.digest
    reload = await engine.reload_config("test", cwd=tmp_path)
    # No files: the defaults, which differ from the test config (autoscaler off, probes
    # hourly) in exactly two keys.
    assert set(reload.applied) == {"autoscaler.enabled", "health.interval_s"}
    assert reload.needs_restart == []
    assert engine.config.digest == reload.digest != before
    again = await engine.reload_config("test", cwd=tmp_path)
    assert again.changed == [] and again.digest == reload.digest
    assert len(await audit(engine, "config.change")) == 1


async def test_a_reload_spawns_missing_agent_groups(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine()
    (tmp_path / ".godel").mkdir()
    (tmp_path / ".godel" / "config.toml").write_text(
        "[autoscaler]\nenabled = false\n\n"
        "[health]\ninterval_s = 3600\nmax_concurrent_probes = 4\n\n"
        '[[agents]]\nname = "solo"\nruntime = "noop"\n'
    )
    sub = subscribe(engine, "t", "agent.spawned")
    reload = await engine.reload_config("test", cwd=tmp_path)
    assert reload.applied == ["agents"]
    assert reload.needs_restart == ["health.max_concurrent_probes"]
    spawned = await next_event(sub, Match(AgentSpawned))
    assert spawned.name == "solo"  # a lone named agent
    assert engine.config.config.health.max_concurrent_probes == 32  # until a restart


def test_daemon_log_level_sets_godels_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import DaemonSettings, GodelConfig
    from core.engine.settings import apply_log_level

    before = {name: logging.getLogger(name).level for name in ("godel", "core")}
    monkeypatch.delenv("GODEL_LOG_LEVEL", raising=False)
    try:
        apply_log_level(GodelConfig(daemon=DaemonSettings(log_level="debug")))
        assert logging.getLogger("godel").level == logging.DEBUG
        assert logging.getLogger("core").level == logging.DEBUG
        monkeypatch.setenv("GODEL_LOG_LEVEL", "warning")  # one run, config untouched
        apply_log_level(GodelConfig(daemon=DaemonSettings(log_level="debug")))
        assert logging.getLogger("godel").level == logging.WARNING
        monkeypatch.delenv("GODEL_LOG_LEVEL")
        apply_log_level(GodelConfig())
        assert logging.getLogger("godel").level == logging.INFO
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)  # setLevel also clears logging's cache


async def test_reload_of_the_same_settings_from_other_bytes_updates_the_files_only(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine()
    project = tmp_path / "same"
    (project / ".godel").mkdir(parents=True)
    file = project / ".godel" / "config.toml"
    file.write_text("[queue]\nlease_s = 30\n")
    first = await engine.reload_config("test", cwd=project)
    assert "queue.lease_s" in first.applied
    before = engine.config
    assert [f.path for f in before.files] == [str(file.resolve())]

    # A comment: the settings (and their digest) are the same, the file's bytes are not.
    file.write_text("# why 30: see the runbook\n[queue]\nlease_s = 30\n")
    again = await engine.reload_config("test", cwd=project)
    assert again.changed == [] and again.digest == before.digest
    after = engine.config
    assert after.files != before.files and after.loaded_at is not None
    assert after.config == before.config
    assert len(await audit(engine, "config.change")) == 1  # only the first reload
