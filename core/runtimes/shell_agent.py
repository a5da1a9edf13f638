"""One shell agent's live state: its bash process, the readers of its pipes, and the
command running in it, whose output is split into events at the end markers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from core.runtimes.process import terminate_group, wait_process_exit
from core.runtimes.shell_protocol import EndMarker
from core.tasks import TaskSet

log = logging.getLogger(__name__)

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")
STOP_GRACE_S = 1.0  # SIGTERM -> SIGKILL for a timed-out or aborted command
_READ_CHUNK = 64 * 1024
_PENDING_CAP = 1024 * 1024  # bytes of between-exec output kept for the next exec


@dataclass(frozen=True)
class Event:
    kind: Literal["data", "end", "eof", "exit"]
    stream: Stream | None = None
    data: bytes = b""
    code: int | None = None


class Run:
    """One command sent to bash (an exec, or the readiness probe)."""

    def __init__(self, exec_id: str) -> None:
        self.exec_id = exec_id
        self.nonce = secrets.token_hex(8)
        self.parsers = {s: EndMarker(self.nonce) for s in STREAMS}
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.ended: dict[Stream, int] = {}
        # Set by the readers (both markers seen) or the exit watcher, even when nobody
        # consumes the queue.
        self.finished = asyncio.Event()
        self.timed_out = False
        self.aborted = False
        self.stop_deadline: float | None = None

    async def next_event(self, wait_s: float | None) -> Event:
        if not self.queue.empty():
            return self.queue.get_nowait()
        if wait_s is None:
            return await self.queue.get()
        return await asyncio.wait_for(self.queue.get(), max(0.0, wait_s))


class ShellAgent:
    """Live state of one agent: the bash process, its readers and the current run."""

    def __init__(self, proc: asyncio.subprocess.Process, started_at: float | None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.started_at = started_at
        self.run: Run | None = None
        # Output that arrived between execs (late writes of background processes).
        self.pending: dict[Stream, bytearray] = {s: bytearray() for s in STREAMS}
        self.exited = asyncio.Event()
        self.exit_code: int | None = None
        self.killing = False
        self.kill_task: asyncio.Task[None] | None = None
        # Why the command of an exec that has ended is still running (it could not be
        # stopped); health reports the agent unhealthy until it ends.
        self.stuck: str | None = None
        self.pumps: list[asyncio.Task[None]] = []
        self.tasks = TaskSet(f"shell agent {self.pid}", log)

    def start(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.pumps = [
            self.spawn_task(self._pump("stdout", self.proc.stdout)),
            self.spawn_task(self._pump("stderr", self.proc.stderr)),
        ]
        self.spawn_task(self._watch())

    def spawn_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self.tasks.spawn(coro)

    def begin(self, exec_id: str) -> Run:
        run = Run(exec_id)
        self.run = run
        for stream in STREAMS:
            if self.pending[stream]:
                data = bytes(self.pending[stream])
                self.pending[stream].clear()
                self.feed(stream, data)
        return run

    def _keep_pending(self, stream: Stream, data: bytes) -> None:
        buf = self.pending[stream]
        buf += data
        if len(buf) > _PENDING_CAP:
            del buf[: len(buf) - _PENDING_CAP]

    def feed(self, stream: Stream, data: bytes) -> None:
        run = self.run
        if run is None or stream in run.ended:
            self._keep_pending(stream, data)
            return
        out, code, rest = run.parsers[stream].feed(data)
        if out:
            run.queue.put_nowait(Event("data", stream, out))
        if code is not None:
            run.ended[stream] = code
            run.queue.put_nowait(Event("end", stream, code=code))
            if rest:
                self._keep_pending(stream, rest)
            if len(run.ended) == len(STREAMS):
                run.finished.set()

    def _eof(self, stream: Stream) -> None:
        run = self.run
        if run is not None and stream not in run.ended:
            held = run.parsers[stream].flush()
            if held:
                run.queue.put_nowait(Event("data", stream, held))
            run.queue.put_nowait(Event("eof", stream))

    async def _pump(self, stream: Stream, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_READ_CHUNK):
                self.feed(stream, data)
        except OSError:
            pass
        finally:
            self._eof(stream)

    async def _watch(self) -> None:
        code = await wait_process_exit(self.proc)
        self.exit_code = code
        self.exited.set()
        if self.run is not None:
            self.run.queue.put_nowait(Event("exit", code=code))
            self.run.finished.set()
        if not self.killing:
            # bash died on its own: end what it left running, nobody can reach it now.
            with contextlib.suppress(ValueError, OSError):
                await terminate_group(self.pid, STOP_GRACE_S, started_at=self.started_at)

    async def send(self, text: str) -> bool:
        """Write to bash's stdin; False if bash is gone (its exit is reported separately)."""
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            return False
        try:
            stdin.write(text.encode("utf-8", errors="replace"))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True
