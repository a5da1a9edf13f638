"""The process side of one pi agent: the ``pi --mode rpc`` process, its pipes and its tools.

:class:`PiAgent` owns the process: it reads stdout (routing each command's response to
whoever sent the command, and every other message to the running exec's queue) and
stderr, watches for the exit, writes commands, and records the tool processes pi starts.
:class:`Run` is one exec's share of it: the queue its driver reads and the
:class:`~core.runtimes.pi.run_loop.RunLoop` that decides what the facts mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from core.llm.catalog_types import ResolvedModel
from core.runtimes.pi.protocol import (
    DIALOG_METHODS,
    ExtensionUIRequest,
    LineSplitter,
    Malformed,
    Response,
    ToolEnd,
    ToolStart,
    encode_command,
    parse_line,
)
from core.runtimes.pi.run_loop import (
    STOP_WAIT_S,
    AbortAnswered,
    AbortSent,
    Exited,
    Fact,
    RunLoop,
)
from core.runtimes.process import (
    descendants,
    terminate_group,
    terminate_processes,
    wait_process_exit,
)
from core.tasks import TaskSet

log = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024
_STDERR_LINES = 40  # kept for error messages
_STDERR_LINE_CAP = 2000
REQUEST_TIMEOUT_S = 5.0  # steer, health probe, settle probe
_SETTLE_S = 2.0  # how long pi may still report the finished run as streaming
_KILL_GRACE_S = 2.0
_EXIT_DRAIN_S = 1.0  # reading what pi wrote before it exited
_TOOL_SCAN_S = 0.5  # how often tool processes are recorded while a tool runs


@dataclass(frozen=True, slots=True)
class Wake:
    """Wakes the exec's driver to look again (an abort went out or was answered)."""


class Run:
    """One prompt being run by pi: the facts queue its driver reads, and its state."""

    def __init__(self, machine: RunLoop) -> None:
        self.machine = machine
        self.queue: asyncio.Queue[Fact | Wake] = asyncio.Queue()
        self.accepted = asyncio.Event()  # pi answered the prompt command
        self.abort_future: asyncio.Future[Response | None] | None = None

    @property
    def exec_id(self) -> str:
        return self.machine.exec_id

    @property
    def over(self) -> bool:
        """pi's run is over (or the prompt was refused): nothing to stop."""
        return self.machine.over

    def sync_abort(self, now: float) -> None:
        """Tell the machine if pi has answered the abort: the future is the first to know."""
        fut = self.abort_future
        if fut is not None and fut.done() and self.machine.abort == "sent":
            self.machine.feed(AbortAnswered(), now)

    async def next(self, wait_s: float | None) -> Fact | Wake:
        if not self.queue.empty():
            return self.queue.get_nowait()
        if wait_s is None:
            return await self.queue.get()
        return await asyncio.wait_for(self.queue.get(), max(0.0, wait_s))


class PiAgent:
    """Live state of one agent: the pi process, its readers and the current run."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        started_at: float | None,
        model: ResolvedModel,
        retry: bool,
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.started_at = started_at
        self.model = model
        self.retry = retry
        self.run: Run | None = None
        # Why the run of an exec that has ended still holds pi (it did not stop when
        # asked); health reports the agent unhealthy until pi lets it go.
        self.stuck: str | None = None
        self.waiters: dict[str, tuple[str, asyncio.Future[Response | None]]] = {}
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self.exited = asyncio.Event()
        self.exit_code: int | None = None
        self.killing = False
        self.kill_task: asyncio.Task[None] | None = None
        self.tasks = TaskSet(f"pi agent {self.pid}", log)
        self.pumps: list[asyncio.Task[None]] = []
        # Tool processes seen while tools ran: pi starts tool shells in their own process
        # groups, and they outlive pi if it dies, so they are found here, not in a tree.
        self.tools_seen: dict[int, psutil.Process] = {}
        self.tools_running = 0
        self.scan_task: asyncio.Task[None] | None = None
        self._seq = 0

    def start(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.pumps = [
            self.spawn_task(self._read_stdout(self.proc.stdout)),
            self.spawn_task(self._read_stderr(self.proc.stderr)),
        ]
        self.spawn_task(self._watch())

    def spawn_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self.tasks.spawn(coro)

    def stderr_tail(self, lines: int = 8) -> str:
        return "\n".join(list(self.stderr)[-lines:]).strip()

    # --- commands ---------------------------------------------------------------

    async def send(self, command: dict[str, Any]) -> bool:
        """Write one command; False if pi's stdin is gone (its exit is reported apart)."""
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing() or self.exit_code is not None:
            return False
        try:
            stdin.write(encode_command(command))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def register(self, command: dict[str, Any]) -> tuple[str, asyncio.Future[Response | None]]:
        """A fresh id for ``command`` and the future its response will resolve."""
        self._seq += 1
        rid = f"godel-{self._seq}"
        fut: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        self.waiters[rid] = (str(command["type"]), fut)
        return rid, fut

    async def send_registered(
        self, rid: str, fut: asyncio.Future[Response | None], command: dict[str, Any]
    ) -> None:
        if not await self.send({"id": rid, **command}):
            self.waiters.pop(rid, None)
            if not fut.done():
                fut.set_result(None)

    async def request(self, command: dict[str, Any]) -> asyncio.Future[Response | None]:
        """Send ``command`` with a fresh id; the future resolves with its response."""
        rid, fut = self.register(command)
        await self.send_registered(rid, fut, command)
        return fut

    async def ask(self, command: dict[str, Any], timeout: float) -> Response | None:
        """Send ``command`` and wait for its response; None on timeout or if pi is gone."""
        fut = await self.request(command)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None

    async def send_abort(self, run: Run, *, fresh: bool = False) -> None:
        """Ask pi to stop ``run``, unless an abort was already sent for it.

        ``fresh``: an abort pi has already answered does not count. pi answers an abort
        once, after the run it stopped; a run that starts after that answer (a retry)
        needs an abort of its own.
        """
        old = run.abort_future
        if old is not None and not (fresh and old.done()):
            return
        command = {"type": "abort"}
        # Registered before the write (which may wait): a concurrent caller sees it.
        rid, fut = self.register(command)
        run.abort_future = fut
        run.machine.feed(AbortSent(), asyncio.get_running_loop().time())
        run.queue.put_nowait(Wake())  # the driver now has a stop deadline to keep
        fut.add_done_callback(lambda _: run.queue.put_nowait(Wake()))
        await self.send_registered(rid, fut, command)

    async def settle(self) -> int:
        """Wait until pi reports the run over; return how many steers are still queued.

        pi clears its busy flag just after ``agent_end``; a prompt sent before that would
        be refused as "already processing".
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE_S
        while True:
            resp = await self.ask({"type": "get_state"}, REQUEST_TIMEOUT_S)
            data = resp.data if resp is not None and isinstance(resp.data, dict) else None
            if data is None:
                return 0
            if not data.get("isStreaming") or loop.time() >= deadline:
                pending = data.get("pendingMessageCount")
                return pending if isinstance(pending, int) else 0
            await asyncio.sleep(0.02)

    async def reap(self, run: Run) -> None:
        """Free the agent from an abandoned or stuck run once pi has stopped it."""
        try:
            if self.exit_code is None:
                if run.abort_future is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(run.accepted.wait(), STOP_WAIT_S)
                    await self.send_abort(run)
                fut = run.abort_future
                if fut is not None:
                    # The abort's answer comes once pi is idle again; it may never come.
                    waits: list[asyncio.Future[Any]] = [
                        fut,
                        asyncio.ensure_future(self.exited.wait()),
                    ]
                    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for p in pending:
                        if p is not fut:
                            p.cancel()
                    if self.exit_code is None:
                        await self.settle()
        finally:
            if self.run is run:
                self.run = None
                self.stuck = None

    # --- readers ----------------------------------------------------------------

    async def _read_stdout(self, reader: asyncio.StreamReader) -> None:
        splitter = LineSplitter()
        try:
            while data := await reader.read(_READ_CHUNK):
                for line in splitter.feed(data):
                    self._on_line(line)
        except OSError:
            pass
        rest = splitter.flush()
        if rest is not None:
            self._on_line(rest)

    def _on_line(self, line: bytes) -> None:
        msg = parse_line(line)
        if msg is None:
            return
        if isinstance(msg, Response):
            self._on_response(msg)
        elif isinstance(msg, Malformed):
            log.warning(
                "pi agent %s wrote a malformed line (%s): %s", self.pid, msg.error, msg.text
            )
        elif isinstance(msg, ExtensionUIRequest):
            if msg.method in DIALOG_METHODS:
                # Nobody can answer a dialog; pi would wait for the answer (or its timeout).
                self.spawn_task(
                    self.send({"type": "extension_ui_response", "id": msg.id, "cancelled": True})
                )
        else:
            if isinstance(msg, ToolStart):
                self._tool_started()
            elif isinstance(msg, ToolEnd):
                self.tools_running = max(0, self.tools_running - 1)
            run = self.run
            if run is not None:
                run.queue.put_nowait(msg)

    def _on_response(self, resp: Response) -> None:
        key = resp.id if resp.id in self.waiters else None
        if key is None and resp.id is None:
            # pi drops the id when it could not read the command: match by command.
            key = next((k for k, (cmd, _) in self.waiters.items() if cmd == resp.command), None)
        if key is None:
            log.debug("pi agent %s: unexpected response %s", self.pid, resp)
            return
        _, fut = self.waiters.pop(key)
        if not fut.done():
            fut.set_result(resp)

    async def _read_stderr(self, reader: asyncio.StreamReader) -> None:
        splitter = LineSplitter()
        try:
            while data := await reader.read(_READ_CHUNK):
                for line in splitter.feed(data):
                    self._on_stderr(line)
        except OSError:
            pass
        rest = splitter.flush()
        if rest is not None:
            self._on_stderr(rest)

    def _on_stderr(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").rstrip()
        if text:
            log.debug("pi agent %s stderr: %s", self.pid, text)
            self.stderr.append(text[:_STDERR_LINE_CAP])

    async def _watch(self) -> None:
        code = await wait_process_exit(self.proc)
        # What pi wrote before it exited comes first (its last events, its error text).
        await asyncio.wait(self.pumps, timeout=_EXIT_DRAIN_S)
        self.exit_code = code
        self.exited.set()
        for _, fut in self.waiters.values():
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()
        if self.run is not None:
            self.run.queue.put_nowait(Exited(code))
        if not self.killing:
            # pi died on its own: end the tool processes it left, nobody can reach them.
            await end_processes(list(self.tools_seen.values()))

    # --- tool processes ---------------------------------------------------------

    def _tool_started(self) -> None:
        self.tools_running += 1
        if self.scan_task is None or self.scan_task.done():
            self.scan_task = self.spawn_task(self._scan_tools())

    async def _scan_tools(self) -> None:
        while self.tools_running > 0 and self.exit_code is None:
            await self.record_tools()
            await asyncio.sleep(_TOOL_SCAN_S)

    async def record_tools(self) -> list[psutil.Process]:
        """Record pi's live descendants (its tool processes); return every one known."""
        found = await asyncio.to_thread(descendants, self.pid)
        for proc in found:
            self.tools_seen.setdefault(proc.pid, proc)
        for pid, proc in list(self.tools_seen.items()):
            if not _alive(proc):
                del self.tools_seen[pid]
        return list(self.tools_seen.values())


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def end_processes(procs: Iterable[psutil.Process], grace: float = _KILL_GRACE_S) -> None:
    """End ``procs`` and, for those leading a process group, the rest of their group.

    pi starts each tool shell detached (its own group); a command's children stay in
    that group even after their parents are gone.
    """
    alive = [p for p in procs if _alive(p)]
    if not alive:
        return
    leaders: list[tuple[int, float]] = []
    for p in alive:
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) == p.pid:
                leaders.append((p.pid, p.create_time()))
    results = await asyncio.gather(
        terminate_processes(alive, grace),
        *(terminate_group(pid, grace, started_at=t) for pid, t in leaders),
        return_exceptions=True,
    )
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, ValueError | OSError):
            log.warning("ending pi tool processes failed: %r", r)
