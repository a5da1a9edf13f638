"""Process helpers shared by every runtime that runs agents as local processes.

All waiting here polls (``/proc`` through psutil) instead of calling ``waitpid``: the
processes are often children of the daemon, and reaping them ourselves would steal the
exit status from asyncio's child watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable

import psutil

from core.models import Agent

_POLL_S = 0.05


def process_started_at(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), or None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _is_gone(proc: psutil.Process) -> bool:
    """True once the process has exited; a zombie has exited, it just was not reaped yet."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # includes ZombieProcess
        return True
    except psutil.AccessDenied:
        return False


def is_same_process(pid: int, started_at: float | None) -> bool:
    """True if ``pid`` is alive and is the process that started at ``started_at``.

    Comparing start times keeps a reused pid from being taken for ours. Without a
    recorded start time we cannot tell, so the answer is False (never touch a stranger).
    """
    if started_at is None or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - started_at) < 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (not ``pid`` itself); empty if it is gone."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _group_members(pgid: int) -> list[psutil.Process]:
    """Processes in process group ``pgid``; finds members that were re-parented away."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return members


def _signal_all(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        # psutil checks the pid was not reused since the Process object was made.
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(sig)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait_gone(procs: list[psutil.Process], limit_s: float) -> list[psutil.Process]:
    """Poll until every process is gone or ``limit_s`` seconds pass; return the survivors."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    alive = [p for p in procs if not _is_gone(p)]
    while alive and loop.time() < deadline:
        await asyncio.sleep(_POLL_S)
        alive = [p for p in alive if not _is_gone(p)]
    return alive


async def terminate_processes(procs: list[psutil.Process], grace: float = 1.0) -> None:
    """SIGTERM ``procs``, wait up to ``grace`` seconds, then SIGKILL the survivors."""
    _signal_all(procs, signal.SIGTERM)
    survivors = await _wait_gone(procs, grace)
    if survivors:
        _signal_all(survivors, signal.SIGKILL)
        await _wait_gone(survivors, 1.0)


async def terminate_group(pid: int, grace: float = 3.0, *, started_at: float | None = None) -> None:
    """End process group ``pid`` (a session leader's pid) and all of its descendants.

    SIGTERM first, SIGKILL whatever is left after ``grace`` seconds. Processes that are
    already gone are fine. If ``started_at`` is given and ``pid`` now belongs to another
    process, our group is gone (the kernel does not reuse a pid still in use as a group
    id), so nothing is signalled.
    """
    if pid <= 1 or pid in (os.getpid(), os.getpgrp()):
        # killpg(0) or our own group would take the daemon down with the agent.
        raise ValueError(f"refusing to terminate process group {pid}")
    procs: list[psutil.Process] = []
    try:
        leader = psutil.Process(pid)
        if (
            started_at is not None
            and not _is_gone(leader)
            and abs(leader.create_time() - started_at) >= 0.01
        ):
            return
        procs.append(leader)
        procs.extend(leader.children(recursive=True))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    # Collected before signalling: once a parent dies its children are re-parented and
    # can no longer be found through the tree.
    known = {p.pid for p in procs}
    procs.extend(p for p in await asyncio.to_thread(_group_members, pid) if p.pid not in known)
    _killpg(pid, signal.SIGTERM)
    _signal_all(procs, signal.SIGTERM)
    survivors = await _wait_gone(procs, grace)
    _killpg(pid, signal.SIGKILL)
    if survivors:
        _signal_all(survivors, signal.SIGKILL)
        await _wait_gone(survivors, 1.0)


async def wait_process_exit(proc: asyncio.subprocess.Process) -> int:
    """Return ``proc``'s exit code as soon as the process ends.

    On Python 3.11 ``Process.wait()`` also waits for every pipe to close, which never
    happens while a grandchild keeps one open; this looks at the exit code only. It uses
    a pidfd when the platform has one, and polls otherwise.
    """
    loop = asyncio.get_running_loop()
    pidfd_open = getattr(os, "pidfd_open", None)
    fd: int | None = None
    if proc.returncode is None and pidfd_open is not None:
        with contextlib.suppress(OSError):
            fd = pidfd_open(proc.pid)
    try:
        if fd is not None:
            readable: asyncio.Future[None] = loop.create_future()

            def _on_readable() -> None:
                if not readable.done():
                    readable.set_result(None)

            try:
                loop.add_reader(fd, _on_readable)
            except (NotImplementedError, OSError, ValueError):
                fd_registered = False
            else:
                fd_registered = True
            try:
                # The timeout is a backstop, not the mechanism: readiness wakes us.
                while fd_registered and proc.returncode is None and not readable.done():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(readable), 1.0)
            finally:
                if fd_registered:
                    loop.remove_reader(fd)
        # The exit status itself arrives through asyncio's child watcher, just after;
        # asyncio offers no event for it that does not also wait for the pipes.
        while proc.returncode is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01 if fd is not None else _POLL_S)
        return proc.returncode
    finally:
        if fd is not None:
            os.close(fd)


async def recover_process(agent: Agent) -> str:
    """Generic ``AgentRuntime.recover``: end a surviving process, return why it is lost."""
    pid = agent.pid
    if pid is None:
        return "no process was recorded"
    if is_same_process(pid, agent.pid_started_at):
        await terminate_group(pid, started_at=agent.pid_started_at)
        return f"daemon restarted: process {pid} survived but its pipes were lost; terminated it"
    if agent.pid_started_at is None and psutil.pid_exists(pid):
        # Without a start time a live pid may be a stranger's: report, do not kill.
        return f"process {pid} has no recorded start time; it was left alone"
    return f"process {pid} ended while the daemon was down"
