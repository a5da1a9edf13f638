"""Recording a bus to a JSONL file (``EventRecorder``) and reading it back (``read_recording``);
``ConsoleRecording`` writes what a client of the daemon received, in the format ``godel
replay`` plays (the console's ``--record`` and ``godel run --record``)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from pydantic import ValidationError

from core.events.bus import (
    SUBSCRIPTION_BYTES,
    EventBus,
    Subscription,
    SubscriptionClosed,
    output_bytes,
)
from core.events.types import EVENT_ADAPTER, EVENT_TYPES, Event, event_to_json

__all__ = [
    "SNAPSHOT_TYPE",
    "ConsoleRecording",
    "EventRecorder",
    "ReadStats",
    "parse_line",
    "read_recording",
    "tail_recording",
]

# The first line of a client's recording: the view snapshot it started from.
SNAPSHOT_TYPE = "console.snapshot"
FLUSH_S = 0.5  # a ConsoleRecording writes its buffer at least this often

# Output bytes in one write: a batch of 512 output chunks would otherwise be ~32 MiB of
# JSON text and as much again encoded, at once.
BATCH_BYTES = 1024 * 1024


class EventRecorder:
    """Appends every event of a bus to a JSONL file, one event per line.

    Writes go through ``asyncio.to_thread``: even a small write can stall for a
    long time on a slow or full disk, and a stalled event loop would stall every
    ``publish`` caller. The thread hop is paid once per batch, not per event.

    With ``max_bytes``, a file that reaches it is renamed ``<name>.1`` (older ones
    shift to ``.2`` ... ``.<keep>``, the oldest is deleted) and a new one is started, in
    the same thread call as the write: the log stays bounded on disk.
    """

    def __init__(
        self,
        bus: EventBus,
        path: str | Path,
        *,
        name: str = "recorder",
        maxsize: int = 10_000,
        types: AbstractSet[str] | None = None,
        batch_size: int = 512,
        max_bytes: int | None = None,
        keep: int = 3,
        queue_bytes: int = SUBSCRIPTION_BYTES,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if keep < 0:
            raise ValueError("keep must not be negative")
        self.path = Path(path)
        self._bus = bus
        self._name = name
        self._maxsize = maxsize
        self._types = types
        self._batch_size = batch_size
        self._queue_bytes = queue_bytes
        self._sub: Subscription | None = None
        self._max_bytes = max_bytes
        self._keep = keep
        self._file: IO[bytes] | None = None
        self._size = 0  # bytes in the current file
        self._task: asyncio.Task[None] | None = None
        self._written = 0

    @property
    def written(self) -> int:
        """Events written so far (drop markers included)."""
        return self._written

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Subscribe and start writing; needs a running event loop."""
        if self._task is not None:
            raise RuntimeError("recorder already started")
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Opened here, not in the task, so a bad path fails start() instead of stop().
        self._file = _open_private(self.path)
        self._size = self._file.tell()
        if _ends_mid_line(self.path):
            # A writer killed mid-line left a fragment: end it, or this run's first event
            # would be glued to it (the reader then skips the one torn line only).
            self._size += self._file.write(b"\n")
        self._sub = self._bus.subscribe(
            self._name, self._maxsize, self._types, max_bytes=self._queue_bytes
        )
        self._task = loop.create_task(self._run(), name=f"event-recorder:{self.path}")

    async def stop(self) -> None:
        """Stop subscribing, write everything already queued, close the file.

        Re-raises a write error that stopped the recorder early.
        """
        task, sub = self._task, self._sub
        if task is None or sub is None:
            return
        sub.end()
        try:
            await task
        finally:
            self._task = None
            self._sub = None

    async def _run(self) -> None:
        sub = self._sub
        assert sub is not None and self._file is not None
        try:
            while True:
                try:
                    batch = [await sub.get()]
                except SubscriptionClosed:
                    return
                size = output_bytes(batch[0])
                while len(batch) < self._batch_size and size < BATCH_BYTES:
                    try:
                        batch.append(sub.get_nowait())
                    except (asyncio.QueueEmpty, SubscriptionClosed):
                        break
                    size += output_bytes(batch[-1])
                lines = "".join(event_to_json(e) + "\n" for e in batch).encode()
                await asyncio.to_thread(self._write, lines)
                self._written += len(batch)
        finally:
            # On a write error, stop queueing events nobody will write.
            sub.close()
            if self._file is not None:
                self._file.close()
            self._file = None

    def _write(self, data: bytes) -> None:
        """Append and flush a batch; rotate once the file reaches ``max_bytes``.
        Runs in a worker thread, one call at a time."""
        f = self._file
        assert f is not None
        f.write(data)
        f.flush()
        self._size += len(data)
        if self._max_bytes is not None and self._size >= self._max_bytes:
            f.close()
            self._file = None
            _rotate(self.path, self._keep)
            self._file = _open_private(self.path)
            self._size = 0

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ConsoleRecording:
    """What a client received, written to ``path`` (owner-only): one ``console.snapshot``
    line (the ``view.snapshot`` it started from, or resynced to), then the raw events of
    ``events.subscribe``, one per line. ``godel replay`` plays it; ``read_recording``
    reads its events (the snapshot line is not an event, and is skipped as unknown)."""

    def __init__(self, path: str | Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._f: IO[str] = os.fdopen(fd, "w", encoding="utf-8", buffering=1 << 16)
        self._flushed = time.monotonic()

    def snapshot(self, seq: int, snapshot: dict[str, Any]) -> None:
        at = datetime.now(UTC).isoformat()
        line = {"type": SNAPSHOT_TYPE, "seq": seq, "at": at, "snapshot": snapshot}
        self._f.write(json.dumps(line) + "\n")
        self._f.flush()

    def event(self, raw: dict[str, Any]) -> None:
        # Buffered: at hundreds of events a second a flush per event would be a syscall
        # each on the caller's loop. At most FLUSH_S of events waits in memory, and
        # every line is whole on disk (a crash leaves at most a torn last line, which
        # the readers skip).
        self._f.write(json.dumps(raw) + "\n")
        now = time.monotonic()
        if now - self._flushed >= FLUSH_S:
            self._f.flush()
            self._flushed = now

    def close(self) -> None:
        self._f.close()


def _ends_mid_line(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def _open_private(path: Path) -> IO[bytes]:
    # 0600 whatever the umask: the log holds agents' output.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file an older Godel made world-readable, too
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


def _rotate(path: Path, keep: int) -> None:
    """``path`` -> ``path.1`` -> ... -> ``path.<keep>``; what falls off the end is deleted."""
    if keep == 0:
        path.unlink(missing_ok=True)
        return
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


@dataclass
class ReadStats:
    """What a tolerant read skipped: unknown event types (a newer Godel wrote them), a
    torn last line (a writer killed mid-line), malformed lines elsewhere."""

    events: int = 0
    unknown: int = 0
    unknown_types: dict[str, int] = field(default_factory=dict)
    torn_tail: bool = False
    malformed: list[int] = field(default_factory=list)  # line numbers

    @property
    def skipped(self) -> int:
        return self.unknown + len(self.malformed) + int(self.torn_tail)

    def describe(self) -> str:
        """One line for the user, or "" when nothing was skipped."""
        parts = []
        if self.unknown:
            kinds = ", ".join(sorted(self.unknown_types))
            parts.append(f"{self.unknown} event(s) of unknown type ({kinds})")
        if self.malformed:
            parts.append(
                f"{len(self.malformed)} malformed line(s) (first: line {self.malformed[0]})"
            )
        if self.torn_tail:
            parts.append("a torn last line (the writer stopped mid-line)")
        return "skipped " + "; ".join(parts) if parts else ""


def parse_line(line: str | bytes, stats: ReadStats, lineno: int, last: bool) -> Event | None:
    """One recorded line as an event, or None (counted in ``stats``) if it cannot be."""
    try:
        event = EVENT_ADAPTER.validate_json(line)
    except ValidationError as exc:
        kind = _unknown_type(line, exc)
        if kind is not None:
            stats.unknown += 1
            stats.unknown_types[kind] = stats.unknown_types.get(kind, 0) + 1
        elif last:
            stats.torn_tail = True
        else:
            stats.malformed.append(lineno)
        return None
    stats.events += 1
    return event


def _unknown_type(line: str | bytes, exc: ValidationError) -> str | None:
    """The ``type`` of a well-formed event object whose type this Godel does not know."""
    if not any(e["type"] == "union_tag_invalid" for e in exc.errors()):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) and kind not in EVENT_TYPES else None


def read_recording(path: str | Path, stats: ReadStats | None = None) -> Iterator[Event]:
    """Yield the events of a JSONL recording (the live stream's format) in order.

    Tolerant, as a reader of a file another process may have been killed writing must
    be: a torn last line and events of unknown types are skipped and counted in
    ``stats``, as are malformed lines elsewhere (reported, never silently).
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    with path.open("rb") as f:
        lineno = 0
        pending: bytes | None = None
        for raw in f:
            if pending is not None:
                lineno += 1
                event = parse_line(pending, stats, lineno, last=False)
                if event is not None:
                    yield event
            pending = raw
        if pending is not None:
            lineno += 1
            # A last line without its newline was cut mid-write.
            torn = not pending.endswith(b"\n")
            if pending.strip():
                event = parse_line(pending, stats, lineno, last=torn)
                if event is not None:
                    yield event


def tail_recording(
    path: str | Path, n: int, stats: ReadStats | None = None, max_bytes: int | None = None
) -> list[Event]:
    """The last ``n`` events of a recording, reading only its end (the file may be big),
    and at most about ``max_bytes`` of it."""
    path = Path(path)
    if n <= 0:
        return []
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        pos, chunk, data = end, 1 << 16, b""
        while pos > 0 and data.count(b"\n") <= n:
            if max_bytes is not None and len(data) >= max_bytes:
                break
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.split(b"\n")
    torn = not data.endswith(b"\n") and data != b""
    if pos > 0:
        lines = lines[1:]  # the first piece may start mid-line
    if lines and lines[-1] == b"":
        lines.pop()
    stats = stats if stats is not None else ReadStats()
    events: list[Event] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        event = parse_line(line, stats, 0, last=torn and i == len(lines) - 1)
        if event is not None:
            events.append(event)
    return events[-n:]
