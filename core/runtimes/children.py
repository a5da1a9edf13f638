"""How the daemon learns that its child processes exited, without a thread per child.

On Python 3.11 asyncio's default child watcher is ``ThreadedChildWatcher``: one OS thread
blocked in ``waitpid`` per live child, so 1,000 agents cost 1,000 threads. A pidfd (Linux
5.3+) becomes readable when its process exits, so the event loop can watch every child
itself. Python 3.12 already does that by default, so there is nothing to do there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVarTuple

log = logging.getLogger(__name__)

_Ts = TypeVarTuple("_Ts")
_Callback = Callable[..., object]


def pidfd_supported() -> bool:
    """True if this platform has pidfds (Linux 5.3+ and a Python that exposes them)."""
    if sys.platform != "linux" or not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:  # ENOSYS on an older kernel, or a seccomp filter
        return False
    os.close(fd)
    return True


class LoopPidfdChildWatcher(asyncio.PidfdChildWatcher):
    """Python 3.12's ``PidfdChildWatcher`` on 3.11: each child is watched by its own loop.

    3.11's version serves the one loop it is attached to (and loses the children of a
    loop it is detached from); this one registers each pidfd with the loop that spawns
    the child, as 3.12 does, so any loop in any thread may spawn, and it needs no
    attaching. asyncio calls it from inside that loop.
    """

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass

    def add_child_handler(
        self, pid: int, callback: Callable[[int, int, *_Ts], object], *args: *_Ts
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            # Out of descriptors: a thread waits for this one child instead.
            threading.Thread(
                target=self._wait_in_thread,
                args=(pid, callback, args),
                name=f"waitpid-{pid}",
                daemon=True,
            ).start()
            return
        loop.add_reader(pidfd, self._on_exit, loop, pid, pidfd, callback, args)

    @staticmethod
    def _wait_in_thread(pid: int, callback: _Callback, args: tuple[Any, ...]) -> None:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            returncode = 255
        else:
            returncode = os.waitstatus_to_exitcode(status)
        # asyncio's callback hands the status to its loop with call_soon_threadsafe.
        callback(pid, returncode, *args)

    def _on_exit(
        self,
        loop: asyncio.AbstractEventLoop,
        pid: int,
        pidfd: int,
        callback: _Callback,
        args: tuple[Any, ...],
    ) -> None:
        loop.remove_reader(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped elsewhere: the status is lost
            returncode = 255
            log.warning("child process %d exit status already read: reporting 255", pid)
        else:
            returncode = os.waitstatus_to_exitcode(status)
        os.close(pidfd)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        # asyncio never calls this on a watcher that serves subprocesses; as in 3.12.
        return True


def install_child_watcher() -> bool:
    """Make asyncio learn about child exits through pidfds, not a thread per child.

    Must be called from inside a running loop, before it spawns the processes that
    should be watched this way (children spawned earlier keep their old watcher, which
    still reports them). Idempotent; the watcher serves every loop, each for the
    children it spawns, so a new loop (as in each pytest-asyncio test) is covered too.
    Does nothing on Python 3.12+ (pidfds are its default) or without pidfds. Returns
    True if children are watched through pidfds afterwards.
    """
    asyncio.get_running_loop()  # the contract: called from the loop that will spawn
    if not pidfd_supported():
        return False
    if sys.version_info >= (3, 12):
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if isinstance(asyncio.get_child_watcher(), LoopPidfdChildWatcher):
            return True
        # Closing the previous watcher (which this does) is harmless: the threads of a
        # ThreadedChildWatcher keep reporting the children they already wait for.
        asyncio.set_child_watcher(LoopPidfdChildWatcher())
    return True
