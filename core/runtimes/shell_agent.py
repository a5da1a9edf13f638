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
# Bytes read from a command's pipes that its exec has not taken yet. Past it the readers
# stop reading, so a command printing faster than the engine keeps up waits on its pipe
# (as on a slow terminal) instead of piling its output up in the daemon's memory.
QUEUE_MAX_BYTES = 1024 * 1024


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
        self.queued = 0  # bytes of data events in the queue
        self.room = asyncio.Event()  # clear while the queue holds QUEUE_MAX_BYTES
        self.room.set()
        # Nobody takes from the queue any more (the exec ended or was abandoned): output
        # is dropped, only its end markers matter.
        self.abandoned = False

    def put_data(self, stream: Stream, data: bytes) -> None:
        if self.abandoned:
            return
        self.queue.put_nowait(Event("data", stream, data))
        self.queued += len(data)
        if self.queued >= QUEUE_MAX_BYTES:
            self.room.clear()

    def abandon(self) -> None:
        """No consumer from now on: drop what is queued and never make a reader wait."""
        self.abandoned = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queued = 0
        self.room.set()

    def _took(self, ev: Event) -> Event:
        if ev.data:
            self.queued -= len(ev.data)
            if self.queued < QUEUE_MAX_BYTES:
                self.room.set()
        return ev

    async def next_event(self, wait_s: float | None) -> Event:
        if not self.queue.empty():
            return self._took(self.queue.get_nowait())
        if wait_s is None:
            return self._took(await self.queue.get())
        return self._took(await asyncio.wait_for(self.queue.get(), max(0.0, wait_s)))


class ShellAgent:
    """Live state of one agent: the bash process, its readers and the current run."""

    def __init__(self, proc: asyncio.subprocess.Process, started_at: float | None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.started_at = started_at
        self._run: Run | None = None
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

    @property
    def run(self) -> Run | None:
        return self._run

    @run.setter
    def run(self, run: Run | None) -> None:
        # A run that is no longer current has no consumer: its readers must not wait.
        old = self._run
        if old is not None and old is not run:
            old.abandon()
        self._run = run

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
            run.put_data(stream, out)
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
                run.put_data(stream, held)
            run.queue.put_nowait(Event("eof", stream))

    async def _pump(self, stream: Stream, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_READ_CHUNK):
                self.feed(stream, data)
                run = self.run
                if run is not None:
                    await run.room.wait()  # backpressure: see QUEUE_MAX_BYTES
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
