"""Process helpers shared by every runtime that runs agents as local processes.

Ending an agent costs what its own processes cost, not what the machine runs, so that
1,000 agents can stop together:

- A process group ends by ``killpg``; ``killpg(pgid, 0)`` failing with ESRCH proves it
  is empty. Nothing walks the process table per agent.
- Descendants that left the group (``setsid``) are found, and every process we know of
  is held (by pidfd where possible), by ``core.runtimes.proc_tree``. A held pidfd wakes
  the event loop when its process exits; without pidfds we poll, with a short backoff.

Nothing here calls ``waitpid``: the processes are often children of the daemon, and
reaping them ourselves would steal the exit status from asyncio's child watcher. A
zombie has exited; it counts as gone (orphans may stay zombies for good under an init
that does not reap).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import psutil

from core.models import Agent
from core.runtimes.proc_tree import Held, descendants, find_tree, hold, pidfds

__all__ = [
    "descendants",
    "end_processes",
    "is_same_process",
    "process_started_at",
    "recover_process",
    "terminate_descendants",
    "terminate_group",
    "terminate_processes",
    "wait_process_exit",
]


_POLL_S = 0.05
_BACKOFF_START_S = 0.005
_BACKOFF_MAX_S = 0.1
# Once every process we know of has ended, how long the rest of the group (members we
# could not see: re-parented away, or zombies nobody reaps) gets before SIGKILL.
_SETTLE_S = 0.25
_KILL_WAIT_S = 1.0


def process_started_at(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), or None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


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


# Waiting ------------------------------------------------------------------------------


async def _wait_exited(procs: list[Held], limit_s: float) -> list[Held]:
    """Wait until every process exited or ``limit_s`` passed; return the survivors.

    Held pidfds wake the loop when their process exits; the rest is polled with a
    backoff starting at a few milliseconds.
    """
    alive = [p for p in procs if not p.exited()]
    if not alive or limit_s <= 0:
        return alive
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    registered: set[int] = set()
    all_exited: asyncio.Future[None] = loop.create_future()

    def on_exit(fd: int) -> None:
        loop.remove_reader(fd)
        registered.discard(fd)
        if not registered and not all_exited.done():
            all_exited.set_result(None)

    for p in alive:
        if p.fd is not None:
            try:
                loop.add_reader(p.fd, on_exit, p.fd)
            except (OSError, ValueError, NotImplementedError):
                continue
            registered.add(p.fd)
    polled = [p for p in alive if p.fd not in registered]
    if not registered:
        all_exited.set_result(None)
    try:
        delay = _BACKOFF_START_S
        while polled or not all_exited.done():
            left = deadline - loop.time()
            if left <= 0:
                break
            if not polled:
                await asyncio.wait([all_exited], timeout=left)
                continue
            if all_exited.done():
                await asyncio.sleep(min(delay, left))
            else:
                await asyncio.wait([all_exited], timeout=min(delay, left))
            polled = [p for p in polled if not p.exited()]
            delay = min(delay * 2, _BACKOFF_MAX_S)
    finally:
        for fd in registered:
            loop.remove_reader(fd)
        if not all_exited.done():
            all_exited.cancel()
    return [p for p in alive if not p.exited()]


def _group_empty(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a member exists (one we may not signal)
        return False
    return False


async def _wait_group_empty(pgid: int, limit_s: float) -> bool:
    """Poll (short backoff) until group ``pgid`` is empty; False if ``limit_s`` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    delay = _BACKOFF_START_S
    while not _group_empty(pgid):
        left = deadline - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, _BACKOFF_MAX_S)
    return True


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _end(procs: list[Held], grace: float) -> None:
    """SIGTERM ``procs``, SIGKILL those still running after ``grace`` seconds."""
    for p in procs:
        p.signal(signal.SIGTERM)
    survivors = await _wait_exited(procs, grace)
    for p in survivors:
        p.signal(signal.SIGKILL)
    await _wait_exited(survivors, _KILL_WAIT_S)


# Public API ---------------------------------------------------------------------------


async def end_processes(held: list[Held], grace: float = 1.0) -> None:
    """SIGTERM held processes, SIGKILL the survivors after ``grace`` seconds; close them."""
    try:
        await _end(held, grace)
    finally:
        for h in held:
            h.close()


async def terminate_processes(procs: list[psutil.Process], grace: float = 1.0) -> None:
    """SIGTERM ``procs``, wait up to ``grace`` seconds, then SIGKILL the survivors."""
    held = [h for p in procs if (h := hold(p.pid, same_as=p)) is not None]
    try:
        await _end(held, grace)
    finally:
        for h in held:
            h.close()


async def terminate_descendants(pid: int, grace: float = 1.0) -> bool:
    """End every descendant of ``pid`` (not ``pid`` itself); False if it had none."""
    held = await find_tree(pid, group=False)
    try:
        await _end(held, grace)
    finally:
        for h in held:
            h.close()
    return bool(held)


async def terminate_group(
    pid: int, grace: float = 3.0, *, started_at: float | None = None, tree: bool = True
) -> None:
    """End process group ``pid`` (a session leader's pid) and all of its descendants.

    SIGTERM first, SIGKILL whatever is left after ``grace`` seconds. Processes that are
    already gone are fine. If ``started_at`` is given and ``pid`` now belongs to another
    process, our group is gone (the kernel does not reuse a pid still in use as a group
    id), so nothing is signalled. ``tree=False`` skips looking for descendants that
    left the group, for a caller that knows there are none.
    """
    if pid <= 1 or pid in (os.getpid(), os.getpgrp()):
        # killpg(0) or our own group would take the daemon down with the agent.
        raise ValueError(f"refusing to terminate process group {pid}")
    held: list[Held] = []
    try:
        leader = hold(pid)
        if leader is not None:
            held.append(leader)
            if started_at is not None:
                created = process_started_at(pid)
                if created is not None and abs(created - started_at) >= 0.01:
                    return  # a stranger has the pid now
            if tree:
                # Found before signalling: once a parent dies its children are
                # re-parented and can no longer be found through the tree.
                held += [p for p in await find_tree(pid, group=True) if p.pid != pid]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        _killpg(pid, signal.SIGTERM)
        for p in held:
            if p.pgid != pid:  # group members already got it from killpg
                p.signal(signal.SIGTERM)
        survivors = await _wait_exited(held, grace)
        if not survivors:
            # With no process of the group known (its leader is gone), its members get
            # the whole grace period to end; otherwise a short while (see _SETTLE_S).
            left = max(0.0, deadline - loop.time())
            if await _wait_group_empty(pid, min(_SETTLE_S, left) if held else left):
                return
        # SIGKILL is harmless to zombies and to an empty group: no need to tell them apart.
        _killpg(pid, signal.SIGKILL)
        for p in survivors:
            p.signal(signal.SIGKILL)
        await _wait_exited(survivors, _KILL_WAIT_S)
    finally:
        for p in held:
            p.close()


async def wait_process_exit(proc: asyncio.subprocess.Process) -> int:
    """Return ``proc``'s exit code as soon as the process ends.

    On Python 3.11 ``Process.wait()`` also waits for every pipe to close, which never
    happens while a grandchild keeps one open; this looks at the exit code only. It uses
    a pidfd when the platform has one, and polls otherwise.
    """
    loop = asyncio.get_running_loop()
    fd: int | None = None
    if proc.returncode is None and pidfds():
        with contextlib.suppress(OSError):
            fd = os.pidfd_open(proc.pid)
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
                # Readiness wakes us; the timeout is only a backstop, and a long one: a
                # short one would wake the daemon for every idle agent all the time.
                while fd_registered and proc.returncode is None and not readable.done():
                    await asyncio.wait([readable], timeout=60.0)
            finally:
                if fd_registered:
                    loop.remove_reader(fd)
                if not readable.done():
                    readable.cancel()
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
