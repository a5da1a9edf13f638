"""Process helpers shared by every runtime that runs agents as local processes.

Ending an agent costs what its own processes cost, not what the machine runs, so that
1,000 agents can stop together:

- A process group ends by ``killpg``; ``killpg(pgid, 0)`` failing with ESRCH proves it
  is empty. Nothing walks the process table per agent.
- Descendants that left the group (``setsid``) are found by walking down from the leader
  through ``/proc/<pid>/task/<tid>/children`` (cost proportional to the tree). A kernel
  without that file (``CONFIG_PROC_CHILDREN``) needs a scan of ``/proc``; one scan then
  serves every termination that asked while the previous one ran.
- Each process we know of is held by a pidfd: a signal cannot hit a reused pid, and the
  event loop wakes when the process exits. Without pidfds we poll, with a short backoff.

Nothing here calls ``waitpid``: the processes are often children of the daemon, and
reaping them ourselves would steal the exit status from asyncio's child watcher. A
zombie has exited; it counts as gone (orphans may stay zombies for good under an init
that does not reap).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import signal
import weakref
from dataclasses import dataclass

import psutil

from core.models import Agent

_POLL_S = 0.05
_BACKOFF_START_S = 0.005
_BACKOFF_MAX_S = 0.1
# Once every process we know of has ended, how long the rest of the group (members we
# could not see: re-parented away, or zombies nobody reaps) gets before SIGKILL.
_SETTLE_S = 0.25
_KILL_WAIT_S = 1.0

# pid -> (ppid, pgid), from one scan of the process table.
_Table = dict[int, tuple[int, int]]


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


# /proc ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stat:
    ppid: int
    pgid: int


@functools.cache
def _have_proc() -> bool:
    return os.path.isdir("/proc/self")


def _stat(pid: int) -> _Stat | None:
    """Parent and group of ``pid``, from ``/proc/<pid>/stat``; None if it is gone."""
    if not _have_proc():  # macOS
        try:
            return _Stat(psutil.Process(pid).ppid(), os.getpgid(pid))
        except (psutil.Error, OSError):
            return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses;
    # after it: state, ppid, pgrp.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return _Stat(int(fields[1]), int(fields[2]))
    except (IndexError, ValueError):
        return None


@functools.cache
def _pidfds() -> bool:
    from core.runtimes.children import pidfd_supported

    return pidfd_supported() and hasattr(signal, "pidfd_send_signal")


@functools.cache
def _children_files() -> bool:
    """True if the kernel lists each task's children (``CONFIG_PROC_CHILDREN``)."""
    try:
        tid = os.listdir("/proc/self/task")[0]
    except (OSError, IndexError):
        return False
    return os.path.exists(f"/proc/self/task/{tid}/children")


def _children_of(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:  # a child is listed under the thread that forked it
        with (
            contextlib.suppress(OSError, ValueError),
            open(f"/proc/{pid}/task/{tid}/children", "rb") as f,
        ):
            out.extend(int(c) for c in f.read().split())
    return out


def _scan_table() -> _Table:
    """Parent and group of every process (the whole-table walk; shared, see _SharedScan)."""
    table: _Table = {}
    if _have_proc():
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = _stat(int(name))
                if st is not None:
                    table[int(name)] = (st.ppid, st.pgid)
        return table
    for proc in psutil.process_iter(["ppid"]):  # no /proc (macOS)
        with contextlib.suppress(OSError, psutil.Error):
            table[proc.pid] = (int(proc.info["ppid"]), os.getpgid(proc.pid))
    return table


class _SharedScan:
    """One process-table scan serves every caller that asked while the last one ran.

    A caller only gets a scan that started after it asked, so the scan sees every
    process that existed when the caller decided to look.
    """

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[_Table]] = []
        self._task: asyncio.Task[None] | None = None

    async def get(self) -> _Table:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Table] = loop.create_future()
        self._waiters.append(fut)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        while self._waiters:
            waiters, self._waiters = self._waiters, []
            try:
                table = await asyncio.to_thread(_scan_table)
            except Exception as e:
                for w in waiters:
                    if not w.done():
                        w.set_exception(e)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(table)


_scans: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedScan] = (
    weakref.WeakKeyDictionary()
)


def _shared_scan() -> _SharedScan:
    loop = asyncio.get_running_loop()
    scan = _scans.get(loop)
    if scan is None:
        scan = _scans[loop] = _SharedScan()
    return scan


# Held processes ---------------------------------------------------------------------


class _Held:
    """A process we signal and wait for: by pidfd when we can, else through psutil."""

    def __init__(self, pid: int, pgid: int, fd: int | None, ps: psutil.Process | None) -> None:
        self.pid = pid
        self.pgid = pgid
        self.fd = fd
        self.ps = ps  # psutil checks the pid was not reused before it signals

    def signal(self, sig: signal.Signals) -> None:
        if self.fd is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(self.fd, sig)
        elif self.ps is not None:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                self.ps.send_signal(sig)

    def exited(self) -> bool:
        if self.fd is not None:
            # A pidfd polls readable once its process exited, reaped or not. (poll, not
            # select: the daemon's descriptors go well past select's limit of 1024.)
            p = select.poll()
            p.register(self.fd, select.POLLIN)
            return bool(p.poll(0))
        return self.ps is None or _is_gone(self.ps)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _hold(
    pid: int,
    *,
    parent: int | None = None,
    pgid: int | None = None,
    same_as: psutil.Process | None = None,
) -> _Held | None:
    """Hold ``pid`` if it still is the process we mean; None if it is gone.

    The identity is checked after the pidfd is open: a pidfd refers to one process for
    good, so if ``pid`` is still ``parent``'s child (or in group ``pgid``, or the
    process ``same_as``) at that point, the pidfd is the one we mean.
    """
    fd: int | None = None
    if _pidfds():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except OSError:  # out of descriptors: fall back to polling this one
            fd = None
    held = _Held(pid, -1, fd, None)
    st = _stat(pid)
    ok = st is not None
    if st is not None:
        held.pgid = st.pgid
        ok = (parent is None or st.ppid == parent) and (pgid is None or st.pgid == pgid)
    if ok and same_as is not None:
        ok = same_as.is_running()  # compares start times: False if the pid was reused
        held.ps = same_as
    elif ok and fd is None:
        try:
            held.ps = psutil.Process(pid)
        except psutil.NoSuchProcess:
            ok = False
    if not ok:
        held.close()
        return None
    return held


def _hold_all(found: list[tuple[int, int | None, int | None]]) -> list[_Held]:
    out = []
    for pid, parent, pgid in found:
        held = _hold(pid, parent=parent, pgid=pgid)
        if held is not None:
            out.append(held)
    return out


def _walk_children(root: int) -> list[_Held]:
    """``root``'s descendants, walking the children files (cost: the tree)."""
    out: list[_Held] = []
    stack = [root]
    while stack:
        parent = stack.pop()
        for child in _children_of(parent):
            held = _hold(child, parent=parent)
            if held is not None:
                out.append(held)
                stack.append(child)
    return out


def _from_table(
    table: _Table, root: int, *, group: bool
) -> list[tuple[int, int | None, int | None]]:
    """``root``'s descendants (and with ``group`` the rest of group ``root``) in ``table``."""
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    found: list[tuple[int, int | None, int | None]] = []
    seen = {root}
    stack = [root]
    while stack:
        parent = stack.pop()
        for child in kids.get(parent, ()):
            if child not in seen:
                seen.add(child)
                found.append((child, parent, None))
                stack.append(child)
    if group:
        found += [(p, None, root) for p, (_, g) in table.items() if g == root and p not in seen]
    return found


async def _find_tree(root: int, *, group: bool) -> list[_Held]:
    """Hold ``root``'s live descendants; from a table scan, also the rest of its group."""
    if _children_files():
        return _walk_children(root)
    table = await _shared_scan().get()
    return _hold_all(_from_table(table, root, group=group))


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (not ``pid`` itself); empty if it is gone."""
    if _children_files():
        out: list[psutil.Process] = []
        stack = [pid]
        while stack:
            for child in _children_of(stack.pop()):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    out.append(psutil.Process(child))
                    stack.append(child)
        return out
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


# Waiting ------------------------------------------------------------------------------


async def _wait_exited(procs: list[_Held], limit_s: float) -> list[_Held]:
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


async def _end(procs: list[_Held], grace: float) -> None:
    """SIGTERM ``procs``, SIGKILL those still running after ``grace`` seconds."""
    for p in procs:
        p.signal(signal.SIGTERM)
    survivors = await _wait_exited(procs, grace)
    for p in survivors:
        p.signal(signal.SIGKILL)
    await _wait_exited(survivors, _KILL_WAIT_S)


# Public API ---------------------------------------------------------------------------


async def terminate_processes(procs: list[psutil.Process], grace: float = 1.0) -> None:
    """SIGTERM ``procs``, wait up to ``grace`` seconds, then SIGKILL the survivors."""
    held = [h for p in procs if (h := _hold(p.pid, same_as=p)) is not None]
    try:
        await _end(held, grace)
    finally:
        for h in held:
            h.close()


async def terminate_descendants(pid: int, grace: float = 1.0) -> bool:
    """End every descendant of ``pid`` (not ``pid`` itself); False if it had none."""
    held = await _find_tree(pid, group=False)
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
    held: list[_Held] = []
    try:
        leader = _hold(pid)
        if leader is not None:
            held.append(leader)
            if started_at is not None:
                created = process_started_at(pid)
                if created is not None and abs(created - started_at) >= 0.01:
                    return  # a stranger has the pid now
            if tree:
                # Found before signalling: once a parent dies its children are
                # re-parented and can no longer be found through the tree.
                held += [p for p in await _find_tree(pid, group=True) if p.pid != pid]
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
    if proc.returncode is None and _pidfds():
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
