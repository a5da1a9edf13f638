"""Nothing an agent starts escapes it: ``setsid`` and double-forked children end with the
agent (killed, exited on its own, stopped with the daemon), whichever containment the
machine allows (``[daemon] containment``: a cgroup here when it can, else the scan)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from core.engine import Engine
from core.events import AgentStatusChanged, AuditAppended
from core.models import AgentSpec, AgentStatus, ExecResult
from core.runtimes.containment import (
    BOX_VAR,
    CgroupV1Freezer,
    CgroupV2,
    EnvironmentScan,
    _candidates,
    _works,
    home_tag,
)
from tests.engine.conftest import MakeEngine, Match, audit, next_event, pid_of, subscribe, until

# Two ways out of the agent's tree and its process group: a new session whose parent
# exits (the child is re-parented to init), and a double fork inside a new session.
# Each records its pid in a file.
ESCAPE = (
    "( setsid sleep 300 >/dev/null 2>&1 & echo $! > esc1 ); "
    "setsid sh -c 'sleep 301 >/dev/null 2>&1 & echo $! > esc2' & wait; "
    "cat esc1 esc2"
)

MODES = ["auto", "scan"]


async def escape(engine: Engine, agent_id: str) -> list[int]:
    """Run ESCAPE on the agent; the escaped pids, checked to be out of its tree."""
    result = None
    async for ev in engine.exec(agent_id, ESCAPE, actor="test", timeout=30):
        if isinstance(ev, ExecResult):
            result = ev
    assert result is not None and result.exit_code == 0, result
    pids = [int(x) for x in result.output.split()]
    assert len(pids) == 2
    bash = psutil.Process(pid_of(engine, agent_id))
    tree = {p.pid for p in bash.children(recursive=True)}
    for pid in pids:
        assert pid not in tree, "the test's child did not leave the agent's tree"
    # $! is known at the fork, setsid() runs a moment later in the child (no event says
    # when: polled).
    await until(lambda: all(os.getpgid(p) != bash.pid for p in pids), "the children left the group")
    return pids


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def all_gone(pids: list[int]) -> None:
    # SIGKILL was sent when end() returned; the kernel reports the exit a moment later
    # and no event says so: poll the process table.
    await until(lambda: not any(alive(p) for p in pids), f"escaped processes {pids} gone")


def cleanup(pids: list[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", MODES)
async def test_escaped_children_end_with_agent_kill(make_engine: MakeEngine, mode: str) -> None:
    engine = await make_engine(daemon={"containment": mode})
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    pids = await escape(engine, agent.id)
    try:
        assert all(alive(p) for p in pids)
        await engine.kill_agent(agent.id, "test")
        await all_gone(pids)
        [entry] = await audit(engine, "agent.kill", agent.id)
        assert entry.payload["processes_left_ended"] == 2
    finally:
        cleanup(pids)


@pytest.mark.parametrize("mode", MODES)
async def test_escaped_children_end_with_the_daemon(make_engine: MakeEngine, mode: str) -> None:
    engine = await make_engine(daemon={"containment": mode})
    agents = [await engine.spawn_agent(AgentSpec(runtime="shell"), "test") for _ in range(2)]
    pids = [p for a in agents for p in await escape(engine, a.id)]
    try:
        await engine.stop("test", actor="test")
        await all_gone(pids)
    finally:
        cleanup(pids)


async def test_escaped_children_end_when_the_agent_exits_on_its_own(engine: Engine) -> None:
    agent = await engine.spawn_agent(AgentSpec(runtime="shell"), "test")
    pids = await escape(engine, agent.id)
    sub = subscribe(engine, "t", "agent.status_changed", "audit.appended")
    try:
        os.kill(pid_of(engine, agent.id), signal.SIGKILL)
        await next_event(
            sub, Match(AgentStatusChanged, agent_id=agent.id, status=AgentStatus.FAILED)
        )
        await next_event(sub, Match(AuditAppended, action="agent.cleanup", subject=agent.id))
        await all_gone(pids)
        [entry] = await audit(engine, "agent.cleanup", agent.id)
        assert entry.payload["processes_left_ended"] == 2
    finally:
        cleanup(pids)


async def test_the_kind_in_force_is_audited_at_start(engine: Engine) -> None:
    [entry] = await audit(engine, "daemon.start")
    kind = entry.payload["containment"]
    assert kind in ("cgroup v2", "cgroup v1 freezer", "environment scan")
    assert engine.ctx.containment.current.kind == kind


async def test_containment_cgroup_where_none_works_is_one_clear_error(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.errors import ConfigError
    from core.runtimes import containment

    monkeypatch.setattr(containment, "_candidates", lambda tag: [])
    engine = await make_engine(start=False, daemon={"containment": "cgroup"})
    with pytest.raises(ConfigError, match=r"no cgroup can be used here .*containment = \"auto\""):
        await engine.start("test")


# Each cgroup kind on its own, where this machine has it ----------------------------------


def _kinds() -> list[type]:
    return [CgroupV2, CgroupV1Freezer]


@pytest.mark.parametrize("kind", _kinds(), ids=lambda k: k.__name__)
async def test_each_cgroup_kind_ends_a_fork_that_escaped(tmp_path: Path, kind: type) -> None:
    import asyncio

    found = [c for c in _candidates(home_tag(tmp_path)) if isinstance(c, kind)]
    if not found:
        pytest.skip(f"no {kind.__name__} hierarchy on this machine")
    box = found[0]
    problem = await _works(box.root)
    if problem is not None:
        pytest.skip(f"{kind.__name__} not usable here: {problem}")
    argv, env = box.wrap("agent-1", ["sh", "-c", ESCAPE], {"PATH": os.environ["PATH"]})
    assert env[BOX_VAR].endswith(".agent-1")
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    pids = [int(x) for x in out.split()]
    try:
        assert len(pids) == 2 and all(alive(p) for p in pids)
        assert await box.end("agent-1", grace=0.2) == 2
        await all_gone(pids)
        assert not (box.root / "agent-1").exists()
    finally:
        cleanup(pids)
        await box.close()
    assert not box.root.exists()


async def test_the_scan_ends_only_its_own_agents_processes(tmp_path: Path) -> None:
    import asyncio

    scan = EnvironmentScan(home_tag(tmp_path))
    other = EnvironmentScan(home_tag(tmp_path / "other-home"))
    procs = []
    for s, agent in ((scan, "a1"), (scan, "a2"), (other, "a1")):
        _, env = s.wrap(agent, [], {"PATH": os.environ["PATH"]})
        procs.append(await asyncio.create_subprocess_exec("sleep", "300", env=env))
    try:
        assert await scan.end("a1", grace=0.2) == 1
        await all_gone([procs[0].pid])
        await procs[0].wait()
        assert alive(procs[1].pid) and alive(procs[2].pid)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


async def test_a_native_agents_commands_end_with_the_agent(engine: Engine) -> None:
    from core.models import ToolCallFinished

    agent = await engine.spawn_agent(AgentSpec(runtime="native", model="scripted"), "test")
    outputs = []
    async for ev in engine.exec(agent.id, f"run: {ESCAPE}", actor="test", timeout=30):
        if isinstance(ev, ToolCallFinished):
            outputs.append(ev.output)
    pids = [int(x) for x in outputs[0].split()]
    try:
        assert len(pids) == 2 and all(alive(p) for p in pids)
        await engine.kill_agent(agent.id, "test")
        await all_gone(pids)
    finally:
        cleanup(pids)


async def test_a_start_prunes_empty_boxes_that_gone_homes_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from core.runtimes import containment

    # Boxes younger than a minute are left alone (they may be getting their first
    # process); these are made just now (and cgroupfs times are coarse: below zero).
    monkeypatch.setattr(containment, "_PRUNE_AFTER_S", -60.0)

    found = [c for c in _candidates(home_tag(tmp_path)) if isinstance(c, CgroupV2)]
    if not found or await _works(found[0].root) is not None:
        pytest.skip("no usable cgroup v2 here")
    ours = found[0]
    # What a killed daemon of a deleted home left: an empty box, and a busy one.
    uid_prefix = ours.root.name.rsplit("-", 1)[0]
    stale = CgroupV2(ours.root.parent / f"{uid_prefix}-{home_tag(tmp_path / 'gone')}", "x")
    argv, env = stale.wrap("busy", ["sleep", "300"], {"PATH": os.environ["PATH"]})
    busy = await asyncio.create_subprocess_exec(*argv, env=env)
    stale.wrap("idle", [], {})
    try:
        await until_in_box(stale.root / "busy", busy.pid)
        await ours.sweep()
        assert not (stale.root / "idle").exists()  # empty: gone
        assert (stale.root / "busy").exists()  # a process in it: kept
        # A box pruned while idle is made again when its agent next starts a process.
        argv, env = stale.wrap("idle", ["true"], {"PATH": os.environ["PATH"]})
        (stale.root / "idle").rmdir()
        proc = await asyncio.create_subprocess_exec(*argv, env=env)
        assert await proc.wait() == 0
    finally:
        busy.kill()
        await busy.wait()
        await stale.close()
        await ours.close()
    assert not stale.root.exists()


async def until_in_box(box: Path, pid: int) -> None:
    # The wrapper joins the box right after the fork; no event says when: polled.
    await until(lambda: str(pid) in (box / "cgroup.procs").read_text().split(), "in its box")
