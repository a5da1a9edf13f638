"""Gates: a shell command (``make test``) run in a worktree, with a timeout and bounded output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, computed_field

KEEP_BYTES = 64 * 1024  # the first and the last this many bytes of a gate's output are kept
KILL_GRACE_S = 2.0  # after SIGTERM, how long a timed-out gate gets before SIGKILL
DRAIN_S = 2.0  # after the gate ends, how long a stray holder of its pipe may keep it


class Gate(BaseModel):
    """What to run as the gate, and for how long at most."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1)
    timeout_s: float = Field(default=600.0, gt=0)
    keep_bytes: int = Field(default=KEEP_BYTES, gt=0)


class GateResult(BaseModel):
    """One run of a gate: how it ended and what it printed (stdout and stderr, interleaved)."""

    command: str
    cwd: Path
    passed: bool
    exit_code: int | None  # None when it was killed for its timeout
    timed_out: bool
    duration_s: float
    output: str  # head + tail when longer than twice keep_bytes
    output_bytes: int  # everything it printed, kept or not
    truncated: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def line(self) -> str:
        """``summary()``, in the JSON too: faces print it without this module."""
        return self.summary()

    def summary(self) -> str:
        """One line: ``passed``/``failed (exit 2)``/``timed out after 5s``."""
        if self.timed_out:
            return f"`{self.command}` timed out after {self.duration_s:.0f}s"
        if self.passed:
            return f"`{self.command}` passed"
        return f"`{self.command}` failed (exit {self.exit_code})"

    def feedback(self, limit: int = 8000) -> str:
        """What to tell an agent retrying its task: the summary and the end of the output."""
        tail = self.output[-limit:]
        return f"The gate {self.summary()}. The end of its output:\n{tail}"


class _Bounded:
    """Keeps the first and the last ``keep`` bytes of a stream, and counts the rest."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            del self.tail[: max(0, len(self.tail) - self.keep)]

    def text(self) -> tuple[str, bool]:
        dropped = self.total - len(self.head) - len(self.tail)
        head = self.head.decode(errors="replace")
        tail = self.tail.decode(errors="replace")
        if dropped <= 0:
            return head + tail, False
        return f"{head}\n... {dropped} bytes of output omitted ...\n{tail}", True


async def _read(stream: asyncio.StreamReader, sink: _Bounded) -> None:
    while chunk := await stream.read(65536):
        sink.add(chunk)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def run_gate(gate: Gate, cwd: Path) -> GateResult:
    """Run ``gate.command`` with ``sh -c`` in ``cwd``; on timeout its whole group is killed."""
    started = time.monotonic()
    # Its own session, so a timeout ends `make` and everything `make` started.
    proc = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        gate.command,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    sink = _Bounded(gate.keep_bytes)
    reader = asyncio.create_task(_read(proc.stdout, sink))
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), gate.timeout_s)
    except TimeoutError:
        timed_out = True
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    except BaseException:
        # Cancelled: leave nothing of the gate running behind us.
        _signal_group(proc.pid, signal.SIGKILL)
        reader.cancel()
        raise
    # What the gate left running in its group (a forgotten `&`, or what ignored SIGTERM)
    # ends with it; one that left the group may still hold the pipe: don't wait forever.
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        await asyncio.wait_for(asyncio.shield(reader), DRAIN_S)
    except TimeoutError:
        reader.cancel()
    output, truncated = sink.text()
    code = None if timed_out else proc.returncode
    return GateResult(
        command=gate.command,
        cwd=cwd,
        passed=code == 0,
        exit_code=code,
        timed_out=timed_out,
        duration_s=round(time.monotonic() - started, 3),
        output=output,
        output_bytes=sink.total,
        truncated=truncated,
    )
