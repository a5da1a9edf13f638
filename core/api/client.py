"""Client for the daemon's JSON-RPC socket, and starting the daemon on demand.

A thin client: it imports nothing of the engine, the store, the runtimes or pydantic
(``tests/unit/test_thin_client.py`` checks). psutil and subprocess load only when a
daemon is started or stopped, or its socket does not answer ``daemon status``.
``core.api.blocking`` makes one call without asyncio, for the CLI's read-only commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.api.protocol import (
    EXIT_ALREADY_RUNNING,
    MAX_MESSAGE,
    STREAM_METHOD,
    DaemonNotRunning,
    RpcError,
    raise_error,
)
from core.errors import DaemonError
from core.home import PRIVATE_FILE, prepare_home
from core.paths import GodelPaths

if TYPE_CHECKING:
    import subprocess

    import psutil

START_TIMEOUT = 20.0
# A safety net only: a daemon whose pid still exists is stopping its agents, which takes
# as long as they take; the CLI waits for it.
STOP_LIMIT = 600.0
STOP_NOTICE_AFTER = 2.0
# How long `daemon status`/`stop` wait for an answer before they look for the daemon by
# its lock and pid instead (a frozen daemon still accepts connections).
ANSWER_TIMEOUT = 3.0

OnStream = Callable[[Any], Awaitable[None] | None]


__all__ = [
    "DaemonClient",
    "DaemonNotRunning",
    "RpcError",
    "can_connect",
    "connect",
    "read_pid",
    "request_stop",
    "silent_daemon",
    "start_daemon",
    "stop_daemon",
    "wait_daemon_gone",
]


class DaemonClient:
    """One connection to the daemon. Calls may run concurrently on it."""

    def __init__(self, paths: GodelPaths) -> None:
        self.paths = paths
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, OnStream] = {}
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(
            str(self.paths.socket), limit=MAX_MESSAGE
        )
        self._reader_task = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    async def __aenter__(self) -> DaemonClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        error: Exception = DaemonError(
            "the daemon closed the connection before answering (did it stop or crash? "
            f"see {self.paths.log})"
        )
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                if msg.get("method") == STREAM_METHOD:
                    params = msg.get("params", {})
                    cb = self._streams.get(params.get("request_id"))
                    if cb is not None:
                        r = cb(params.get("data"))
                        if r is not None:
                            await r
                    continue
                fut = self._pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (ConnectionError, ValueError) as e:
            error = DaemonError(f"lost the connection to the daemon: {e}")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()

    async def call(
        self, method: str, params: dict[str, Any] | None = None, on_stream: OnStream | None = None
    ) -> Any:
        assert self._writer is not None, "not connected"
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        if on_stream is not None:
            self._streams[req_id] = on_stream
        msg = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}}
        try:
            self._writer.write(json.dumps(msg).encode() + b"\n")
            await self._writer.drain()
            reply = await fut
        finally:
            self._pending.pop(req_id, None)
            self._streams.pop(req_id, None)
        if "error" in reply:
            raise_error(reply["error"])
        return reply.get("result")


async def can_connect(paths: GodelPaths) -> bool:
    try:
        _r, w = await asyncio.open_unix_connection(str(paths.socket))
    except (OSError, ValueError):
        return False
    w.close()
    with contextlib.suppress(Exception):
        await w.wait_closed()
    return True


def _log_tail(paths: GodelPaths, lines: int = 3) -> str:
    try:
        text = paths.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _launch(paths: GodelPaths, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    import subprocess

    tightened = prepare_home(paths)  # private, ours, writable: or one line saying why not
    # The daemon's stderr: created 0600 whatever this shell's umask.
    fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    with open(fd, "ab") as log:
        for note in tightened:  # said where the daemon says the same
            log.write(
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} WARNING home made private: {note}\n".encode()
            )
        log.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "core.daemon", "--home", str(paths.home)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # the daemon must not die with this terminal
            close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=cwd,  # where it finds .godel/config.toml (None: here)
        )


def _process_gone(proc: psutil.Process) -> bool:
    import psutil

    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def start_daemon(
    paths: GodelPaths, timeout: float = START_TIMEOUT, *, cwd: Path | None = None
) -> int | None:
    """Start a daemon for ``paths.home`` in the background; return its pid when it serves.

    Returns None if one was already serving. Raises DaemonError naming the cause if the
    daemon exits or does not answer in time.
    """
    if await can_connect(paths):
        return None
    proc = await asyncio.to_thread(_launch, paths, cwd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await can_connect(paths):
            return proc.pid
        code = proc.poll()
        if code is not None and code != EXIT_ALREADY_RUNNING:
            tail = _log_tail(paths)
            raise DaemonError(
                f"the daemon could not start (exit {code}): {tail or 'no output'} "
                f"(log: {paths.log})",
                exit_code=code,
                log=str(paths.log),
            )
        await asyncio.sleep(0.05)
    raise DaemonError(
        f"the daemon did not answer on {paths.socket} within {timeout:.0f}s (log: {paths.log})",
        log=str(paths.log),
    )


async def connect(paths: GodelPaths, *, autostart: bool = True) -> DaemonClient:
    """Connect to the daemon of ``paths``; start one first if ``autostart``.

    Without ``autostart`` no daemon is started and nothing is created in the home:
    DaemonNotRunning says that none runs and how to start one.
    """
    if autostart:
        await start_daemon(paths)
    client = DaemonClient(paths)
    try:
        await client.connect()
    except (OSError, ValueError) as e:
        # A refused connection is a stale socket (a killed daemon): none runs either.
        raise DaemonNotRunning(
            f"no daemon is running for {paths.home}; start one with `godel daemon start`",
            home=str(paths.home),
        ) from e
    return client


def read_pid(paths: GodelPaths) -> int | None:
    try:
        return int(paths.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _lock_holder(paths: GodelPaths) -> int | None:
    """The pid holding the flock on ``daemon.lock`` (Linux ``/proc/locks``), read without
    taking the lock: taking it, even briefly, could turn away a daemon that is starting."""
    try:
        st = os.stat(paths.lockfile)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a waiter, not the holder
            continue
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want:
            with contextlib.suppress(ValueError):
                return int(parts[4])
    return None


def _is_our_daemon(pid: int, paths: GodelPaths) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = proc.cmdline()
    except psutil.Error:
        return False
    if "core.daemon" in cmd:
        return str(paths.home) in cmd
    return "daemon" in cmd and "--foreground" in cmd  # `godel daemon start --foreground`


def silent_daemon(paths: GodelPaths) -> int | None:
    """The pid of a live daemon of ``paths`` found without its socket: the holder of its
    lock, else the pid in ``daemon.pid`` if that process is a daemon of this home."""
    holder = _lock_holder(paths)
    if holder is not None and _is_our_daemon(holder, paths):
        return holder
    pid = read_pid(paths)
    if pid is not None and _is_our_daemon(pid, paths):
        return pid
    if holder is not None:  # holds our lock, whatever its command line says
        return holder
    return None


async def ask_daemon(paths: GodelPaths, method: str) -> tuple[Any, str | None]:
    """Call ``method`` with a time limit: (result, None), or (None, why it did not answer)."""

    async def go() -> Any:
        async with DaemonClient(paths) as client:
            return await client.call(method)

    try:
        return await asyncio.wait_for(go(), ANSWER_TIMEOUT), None
    except TimeoutError:
        return None, f"no answer within {ANSWER_TIMEOUT:.0f}s"
    except (OSError, ValueError) as e:
        return None, getattr(e, "strerror", None) or str(e)
    except DaemonError as e:
        return None, e.message


async def request_stop(paths: GodelPaths) -> int | None:
    """Ask the daemon to stop; returns its pid, or None if no daemon serves ``paths``.

    A daemon whose socket does not answer (deleted, replaced, or the daemon frozen) but
    that holds the home's lock gets SIGTERM, which stops it the same way.
    """
    reply, _why = await ask_daemon(paths, "daemon.stop")
    if reply is not None:
        return int(reply["pid"])
    pid = silent_daemon(paths)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return pid


async def wait_daemon_gone(
    pid: int,
    *,
    limit: float = STOP_LIMIT,
    on_slow: Callable[[], None] | None = None,
    slow_after: float = STOP_NOTICE_AFTER,
    log: Path | None = None,
) -> None:
    """Wait while process ``pid`` (a stopping daemon) exists; ``on_slow`` once, if it is slow.

    Raises DaemonError only after ``limit`` seconds, a safety net: while its pid exists
    the daemon is still stopping its agents.
    """
    import psutil

    try:
        # Held from the start: psutil then notices if the pid is reused while we wait.
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    started = time.monotonic()
    noticed = on_slow is None
    while not _process_gone(proc):
        waited = time.monotonic() - started
        if not noticed and waited >= slow_after:
            noticed = True
            assert on_slow is not None
            on_slow()
        if waited >= limit:
            where = f" (log: {log})" if log is not None else ""
            raise DaemonError(
                f"the daemon (pid {pid}) is still stopping after {limit:.0f}s; "
                f"it keeps stopping in the background{where}",
                pid=pid,
            )
        await asyncio.sleep(0.05)


async def stop_daemon(
    paths: GodelPaths, limit: float = STOP_LIMIT, on_slow: Callable[[], None] | None = None
) -> int | None:
    """Ask the daemon to stop and wait until it has; returns its pid or None if none ran."""
    pid = await request_stop(paths)
    if pid is not None:
        await wait_daemon_gone(pid, limit=limit, on_slow=on_slow, log=paths.log)
    return pid
