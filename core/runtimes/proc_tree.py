"""Finding a process's tree and holding its processes, so they can be signalled and awaited.

What it costs is the tree, not what the machine runs:

- Descendants, also those that left the group (``setsid``), are found by walking down
  from the leader through ``/proc/<pid>/task/<tid>/children``. A kernel without that file
  (``CONFIG_PROC_CHILDREN``) needs a scan of ``/proc``; one scan then serves every caller
  that asked while the previous one ran.
- Each process found is held by a pidfd: a signal cannot hit a reused pid, and the event
  loop wakes when the process exits. Without pidfds the holder falls back to psutil.
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

# pid -> (ppid, pgid), from one scan of the process table.
_Table = dict[int, tuple[int, int]]


def _is_gone(proc: psutil.Process) -> bool:
    """True once the process has exited; a zombie has exited, it just was not reaped yet."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # includes ZombieProcess
        return True
    except psutil.AccessDenied:
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
def pidfds() -> bool:
    """True if processes can be held, signalled and awaited by pidfd here."""
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


class Held:
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


def hold(
    pid: int,
    *,
    parent: int | None = None,
    pgid: int | None = None,
    same_as: psutil.Process | None = None,
) -> Held | None:
    """Hold ``pid`` if it still is the process we mean; None if it is gone.

    The identity is checked after the pidfd is open: a pidfd refers to one process for
    good, so if ``pid`` is still ``parent``'s child (or in group ``pgid``, or the
    process ``same_as``) at that point, the pidfd is the one we mean.
    """
    fd: int | None = None
    if pidfds():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except OSError:  # out of descriptors: fall back to polling this one
            fd = None
    held = Held(pid, -1, fd, None)
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


def _hold_all(found: list[tuple[int, int | None, int | None]]) -> list[Held]:
    out = []
    for pid, parent, pgid in found:
        held = hold(pid, parent=parent, pgid=pgid)
        if held is not None:
            out.append(held)
    return out


def _walk_children(root: int) -> list[Held]:
    """``root``'s descendants, walking the children files (cost: the tree)."""
    out: list[Held] = []
    stack = [root]
    while stack:
        parent = stack.pop()
        for child in _children_of(parent):
            held = hold(child, parent=parent)
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


async def find_tree(root: int, *, group: bool) -> list[Held]:
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
