"""The child watcher and process termination, against real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from core.models import AgentSpec
from core.runtimes import proc_tree, process
from core.runtimes.base import AgentHandle, RuntimeContext
from core.runtimes.children import install_child_watcher, pidfd_supported
from core.runtimes.process import (
    descendants,
    process_started_at,
    terminate_descendants,
    terminate_group,
    terminate_processes,
    wait_process_exit,
)
from core.runtimes.shell import ShellRuntime
from tests.conftest import until

needs_pidfd = pytest.mark.skipif(not pidfd_supported(), reason="needs pidfds (Linux 5.3+)")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def start_group(script: str) -> asyncio.subprocess.Process:
    """``sh -c script`` in a session (and process group) of its own."""
    return await asyncio.create_subprocess_exec("sh", "-c", script, start_new_session=True)


async def pids_from(path: Path, n: int) -> list[int]:
    """The ``n`` pids a script wrote to ``path``, one a line, once it wrote them all."""

    def ready() -> bool:
        return path.exists() and len(path.read_text().split()) >= n

    await until(ready)
    return [int(x) for x in path.read_text().split()]  # noqa: ASYNC240 (a few bytes)


def worker_threads() -> int:
    """Threads other than the default executor's (it grows to its size on demand)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def executor_threads() -> int:
    return threading.active_count() - worker_threads()


# The child watcher --------------------------------------------------------------------


@needs_pidfd
async def test_install_child_watcher_is_idempotent_and_reports_exit_codes() -> None:
    assert install_child_watcher() is True
    if sys.version_info < (3, 12):
        watcher = asyncio.get_child_watcher()
        assert install_child_watcher() is True
        assert asyncio.get_child_watcher() is watcher
    proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 3")
    assert await asyncio.wait_for(proc.wait(), 5) == 3
    proc = await asyncio.create_subprocess_exec("sleep", "30")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 5) == -signal.SIGTERM


@needs_pidfd
def test_every_loop_is_served_even_in_another_thread() -> None:
    async def child_exit_code() -> int:
        install_child_watcher()
        proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 7")
        return await asyncio.wait_for(proc.wait(), 5)

    assert asyncio.run(child_exit_code()) == 7
    assert asyncio.run(child_exit_code()) == 7  # a new loop
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(child_exit_code())))
    t.start()
    t.join(10)
    assert out == [7]


@needs_pidfd
async def test_200_shell_agents_add_no_threads_and_are_killed_together(tmp_path: Path) -> None:
    install_child_watcher()
    rt = ShellRuntime(RuntimeContext(home=tmp_path / "home"))
    ws = tmp_path / "ws"
    ws.mkdir()
    spec = AgentSpec(runtime="shell")
    me = psutil.Process()
    warm = await rt.spawn("shell-warm00", spec, ws)
    threads_before, os_threads_before = worker_threads(), me.num_threads()
    executor_before = executor_threads()
    handles: list[AgentHandle] = []
    try:
        for start in range(0, 200, 50):
            handles += await asyncio.gather(
                *(rt.spawn(f"shell-{i:06d}", spec, ws) for i in range(start, start + 50))
            )
        assert all(h.pid is not None and alive(h.pid) for h in handles)
        assert not [t.name for t in threading.enumerate() if t.name.startswith("waitpid-")]
        assert worker_threads() == threads_before
        executor_growth = executor_threads() - executor_before
        assert me.num_threads() - os_threads_before <= executor_growth
        # How fast: `godel bench stop` (docs/benchmarks.md); here, that they all end.
        await asyncio.gather(*(rt.kill(h) for h in handles))
    finally:
        await asyncio.gather(*(rt.kill(h) for h in [*handles, warm]))
    assert not [h.pid for h in handles if h.pid is not None and alive(h.pid)]


# Termination --------------------------------------------------------------------------


def _children_via_psutil(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(params=["children-file", "no-children-file", "no-pidfd"])
def variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each termination test runs on every path: the tree walk, the scan, no pidfds."""
    if request.param == "children-file" and not proc_tree._children_files():
        # The kernel lacks CONFIG_PROC_CHILDREN: the walk still runs, on psutil's lists.
        monkeypatch.setattr(proc_tree, "_children_files", lambda: True)
        monkeypatch.setattr(proc_tree, "_children_of", _children_via_psutil)
    elif request.param == "no-children-file":
        monkeypatch.setattr(proc_tree, "_children_files", lambda: False)
    elif request.param == "no-pidfd":
        monkeypatch.setattr(proc_tree, "pidfds", lambda: False)
        monkeypatch.setattr(process, "pidfds", lambda: False)
    return str(request.param)


async def test_terminate_group_ends_the_group_and_descendants_that_left_it(
    tmp_path: Path, variant: str
) -> None:
    pids = tmp_path / "pids"
    # A child in the group, one in a session of its own (found through the tree), and
    # one that left the tree (its parent ended) but stayed in the group.
    proc = await start_group(
        f"sleep 30 & echo $! >> {pids}; setsid sleep 30 & echo $! >> {pids}; "
        f"sh -c 'sleep 30 & echo $! >> {pids}'; wait"
    )
    in_group, own_session, orphan = await pids_from(pids, 3)
    # $! is known at the fork; setsid() runs a moment later in the child (polled: no
    # event says it did).
    await until(lambda: os.getpgid(own_session) != proc.pid)
    t0 = time.monotonic()
    await terminate_group(proc.pid, grace=60.0, started_at=process_started_at(proc.pid))
    # All took SIGTERM, so the grace period was not waited out (the margin is wide: this
    # checks behaviour, not speed, on a loaded machine).
    assert time.monotonic() - t0 < 30
    assert await asyncio.wait_for(proc.wait(), 5) == -signal.SIGTERM
    await until(lambda: not any(alive(p) for p in (in_group, own_session, orphan)))


async def test_terminate_group_kills_what_ignores_sigterm(tmp_path: Path, variant: str) -> None:
    pids = tmp_path / "pids"
    proc = await start_group(f"trap '' TERM; sleep 30 & echo $! >> {pids}; wait")
    (child,) = await pids_from(pids, 1)
    t0 = time.monotonic()
    await terminate_group(proc.pid, grace=0.3)
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 30  # waited the grace period out, then SIGKILL
    assert await asyncio.wait_for(proc.wait(), 5) == -signal.SIGKILL
    await until(lambda: not alive(child))


async def test_terminate_group_reaches_the_group_after_its_leader_ended(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    proc = await start_group(f"sleep 30 & echo $! >> {pids}")
    (child,) = await pids_from(pids, 1)
    assert await asyncio.wait_for(proc.wait(), 5) == 0
    await terminate_group(proc.pid, grace=1.0)
    await until(lambda: not alive(child))


async def test_a_group_of_zombies_counts_as_gone(tmp_path: Path) -> None:
    # The orphan exits at once; an init that does not reap leaves it a zombie in the
    # group for good, which must not make every stop wait out its grace period.
    proc = await start_group("(true &); exec sleep 30")
    await until(lambda: bool(psutil.Process(proc.pid).cmdline()[:1] == ["sleep"]))
    t0 = time.monotonic()
    await terminate_group(proc.pid, grace=60.0)
    assert time.monotonic() - t0 < 30  # the grace period was not waited out
    assert await asyncio.wait_for(proc.wait(), 5) == -signal.SIGTERM


async def test_terminate_group_leaves_a_reused_pid_alone() -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "30", start_new_session=True)
    try:
        started = process_started_at(proc.pid)
        assert started is not None
        await terminate_group(proc.pid, grace=0.5, started_at=started - 100)
        assert alive(proc.pid)
    finally:
        proc.kill()
        await proc.wait()


async def test_terminate_group_refuses_the_daemons_own_group() -> None:
    for pid in (0, 1, os.getpid(), os.getpgrp()):
        with pytest.raises(ValueError, match="refusing"):
            await terminate_group(pid)


async def test_terminate_descendants_spares_the_parent(tmp_path: Path, variant: str) -> None:
    pids = tmp_path / "pids"
    proc = await start_group(f"sh -c 'sleep 30 & echo $! >> {pids}; wait' & wait")
    (grandchild,) = await pids_from(pids, 1)
    assert {p.pid for p in descendants(proc.pid)} >= {grandchild}
    assert await terminate_descendants(proc.pid, grace=1.0) is True
    await until(lambda: not alive(grandchild))
    assert await asyncio.wait_for(proc.wait(), 5) == 0  # its wait returned, nothing killed it
    lone = await start_group("exec sleep 30")
    try:
        assert await terminate_descendants(lone.pid, grace=1.0) is False
        assert alive(lone.pid)
    finally:
        await terminate_group(lone.pid, grace=0.5)
        await lone.wait()


async def test_terminate_processes_escalates_to_sigkill(tmp_path: Path, variant: str) -> None:
    pids = tmp_path / "pids"
    proc = await start_group(f"trap '' TERM; echo $$ >> {pids}; while :; do sleep 0.01; done")
    try:
        await pids_from(pids, 1)  # the trap is set
        t0 = time.monotonic()
        await terminate_processes([psutil.Process(proc.pid)], grace=0.2)
        assert 0.2 <= time.monotonic() - t0 < 30  # the grace period, then SIGKILL
        assert await asyncio.wait_for(proc.wait(), 5) == -signal.SIGKILL
    finally:
        await terminate_group(proc.pid, grace=0.1)


async def test_many_concurrent_terminations_share_one_table_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(proc_tree, "_children_files", lambda: False)
    scans = 0
    real_scan = proc_tree._scan_table

    def counting_scan() -> dict[int, tuple[int, int]]:
        nonlocal scans
        scans += 1
        return real_scan()

    monkeypatch.setattr(proc_tree, "_scan_table", counting_scan)
    procs = [await start_group("exec sleep 30") for _ in range(50)]
    await asyncio.gather(*(terminate_group(p.pid, grace=2.0) for p in procs))
    assert [await asyncio.wait_for(p.wait(), 5) for p in procs] == [-signal.SIGTERM] * 50
    assert scans <= 3, f"{scans} scans of the process table for 50 terminations"


async def test_wait_process_exit_does_not_wait_for_the_pipes(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The grandchild keeps stdout open after its parent exits.
    proc = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        f"sleep 30 & echo $! >> {pids}; exit 4",
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert await asyncio.wait_for(wait_process_exit(proc), 5) == 4
    finally:
        await terminate_group(proc.pid, grace=0.5)
        await asyncio.wait_for(proc.wait(), 5)  # the pipe closes: the transport is done
