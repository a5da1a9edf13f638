"""``godel replay``: a recording played back in the console, paced by its events' times.

A recording is what ``godel tui --record`` wrote (a ``console.snapshot`` line, then the
live stream's events, one per line), or a daemon's ``events.jsonl`` (events only: the
views then start empty, and the status line says so). ``ReplayFeed`` hands it to the
app through the same ``FeedSink`` calls as ``DaemonFeed``: the console shows it as it
showed it live, read-only.

The file is indexed once, in a worker thread: each event's offset and time, every
recorded snapshot, and every ``CHECKPOINT_EVENTS`` events a snapshot of the views so
far. It is then read in bounded pieces as it plays. A seek loads the nearest checkpoint
before its target and applies the events after it, in a worker thread too, and hands
the result to the app as one snapshot: a big file never blocks the UI loop.

Reading is as tolerant as ``read_recording``: a torn last line, events of unknown types
and malformed lines are skipped and counted (``ReadStats``), and said once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import GodelError
from core.events import Event, ReadStats
from core.events.recording import parse_line
from core.views import Views, ViewSnapshot
from godel_tui.feed import SNAPSHOT_TYPE, FeedSink, FeedState

CHECKPOINT_EVENTS = 5000  # a seek applies at most this many events to a checkpoint
PIECE_EVENTS = 256  # events read from the file at once while playing...
PIECE_BYTES = 1 << 20  # ...and about this many bytes
STATUS_S = 0.25  # the status line's refresh while playing
WAIT_SLICE_S = 0.25  # a long gap is waited in slices, so the clock on the status line moves
SEEK_S = 10.0  # what [ and ] move by
MAX_SPEED = 64.0

# What the ``replay`` pane's keys send (``GodelApp.action_feed_control``).
CONTROLS = ("pause", "step", "step_back", "back", "forward", "start", "end", "faster", "slower")


class RecordingError(ValueError):
    """A file that cannot be replayed; the message is one line for the user."""


@dataclass(frozen=True)
class Checkpoint:
    pos: int  # the events before it
    snapshot: ViewSnapshot
    recorded: bool  # a console.snapshot line (the live console resynced there)


@dataclass
class RecordingIndex:
    """Where each event of a recording is, and when it happened; built by ``build``."""

    path: Path
    offsets: array[int] = field(default_factory=lambda: array("q"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    # POSIX seconds, never decreasing: an event stamped earlier than the one before it
    # plays right after it.
    times: array[float] = field(default_factory=lambda: array("d"))
    checkpoints: list[Checkpoint] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)
    starts_with_snapshot: bool = False
    start: float = 0.0
    end: float = 0.0
    _cp_pos: list[int] = field(default_factory=list)
    _resyncs: dict[int, ViewSnapshot] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def build(
        cls,
        path: Path,
        *,
        every: int = CHECKPOINT_EVENTS,
        cancelled: threading.Event | None = None,
    ) -> RecordingIndex:
        """Read the whole file once (blocking: run it in a worker thread)."""
        idx = cls(path)
        views = Views()
        since = 0  # events since the last checkpoint
        first = True
        first_t: float | None = None  # the time of the first line that counts
        last_t: float | None = None
        with path.open("rb") as f:
            offset = 0
            lineno = 0
            for raw in f:
                if cancelled is not None and cancelled.is_set():
                    break
                lineno += 1
                at, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                # Only the last line can lack its newline: it was cut mid-write.
                torn = not raw.endswith(b"\n")
                if b'"' + SNAPSHOT_TYPE.encode() + b'"' in raw[:200]:
                    snap_at = _snapshot_line(raw)
                    if snap_at is None:
                        _bad_line(idx.stats, lineno, torn)
                        first = False
                        continue
                    snap, t = snap_at
                    idx.starts_with_snapshot = idx.starts_with_snapshot or first
                    first = False
                    last_t = t if last_t is None else max(last_t, t)
                    first_t = last_t if first_t is None else first_t
                    views = Views(snap)
                    since = 0
                    idx._add_checkpoint(Checkpoint(len(idx), snap, recorded=True))
                    continue
                first = False
                event = parse_line(raw, idx.stats, lineno, last=torn)
                if event is None:
                    continue
                t = event.at.timestamp()
                last_t = t if last_t is None else max(last_t, t)
                first_t = last_t if first_t is None else first_t
                idx.offsets.append(at)
                idx.sizes.append(len(raw))
                idx.times.append(last_t)
                views.apply(event)
                since += 1
                if since >= every:
                    idx._add_checkpoint(Checkpoint(len(idx), views.snapshot(), recorded=False))
                    since = 0
        idx.start = first_t if first_t is not None else time.time()
        idx.end = last_t if last_t is not None else idx.start
        return idx

    def _add_checkpoint(self, cp: Checkpoint) -> None:
        self.checkpoints.append(cp)
        self._cp_pos.append(cp.pos)
        if cp.recorded:
            self._resyncs[cp.pos] = cp.snapshot  # the last one at a position wins

    def resync_at(self, pos: int) -> ViewSnapshot | None:
        """The snapshot recorded right before event ``pos`` (a resync), if any."""
        return self._resyncs.get(pos)

    def next_resync(self, pos: int) -> int:
        """The first position after ``pos`` with a recorded snapshot (or past the end)."""
        later = [p for p in self._resyncs if p > pos]
        return min(later) if later else len(self) + 1

    def pos_at(self, t: float) -> int:
        """How many events happened by time ``t``."""
        return bisect_right(self.times, t)

    def time_of(self, pos: int) -> float:
        """The recording's clock once ``pos`` events have played."""
        return self.start if pos <= 0 else self.times[min(pos, len(self)) - 1]

    def piece_end(self, start: int) -> int:
        """Where a bounded piece of events from ``start`` ends (at least one event)."""
        stop = min(len(self), start + PIECE_EVENTS)
        if start >= stop:
            return stop
        by_bytes = bisect_right(self.offsets, self.offsets[start] + PIECE_BYTES, start + 1, stop)
        return max(start + 1, by_bytes)

    def read(self, start: int, stop: int) -> list[Event | None]:
        """Events ``start`` to ``stop``, one per position (blocking: a worker thread's)."""
        if start >= stop:
            return []
        base = self.offsets[start]
        end = self.offsets[stop - 1] + self.sizes[stop - 1]
        with self.path.open("rb") as f:
            f.seek(base)
            data = f.read(end - base)
        scratch = ReadStats()  # each line parsed once already: counted by build
        out: list[Event | None] = []
        for i in range(start, stop):
            o = self.offsets[i] - base
            out.append(parse_line(data[o : o + self.sizes[i]], scratch, i, last=False))
        return out

    def state_at(self, pos: int) -> ViewSnapshot:
        """The views once ``pos`` events have played (blocking: a worker thread's)."""
        i = bisect_right(self._cp_pos, pos) - 1
        if i >= 0:
            start, base = self.checkpoints[i].pos, self.checkpoints[i].snapshot
        else:
            start, base = 0, ViewSnapshot(seq=0)
        if start == pos:
            return base
        views = Views(base)
        while start < pos:
            stop = min(pos, self.piece_end(start))
            for event in self.read(start, stop):
                if event is not None:
                    views.apply(event)
            start = stop
        return views.snapshot()


def check_recording(path: Path) -> None:
    """Raise ``RecordingError`` (one line) unless ``path`` looks like a recording: its
    first line is a JSON event or a console snapshot. Reads that line only."""
    try:
        with path.open("rb") as f:
            line = b""
            for raw in f:
                if raw.strip():
                    line = raw
                    break
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecordingError(f"{path} is a directory, not a recording") from None
    except OSError as e:
        raise RecordingError(f"{path}: {e.strerror or e}") from None
    if not line:
        raise RecordingError(f"{path} is empty: nothing to replay")
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise RecordingError(
            f"{path} is not a recording (its first line is not a JSON event); "
            "record one with `godel tui --record FILE`"
        )


class ReplayFeed:
    """Plays a recording into a ``FeedSink`` (the app), paced by the events' times
    divided by ``speed`` (0: as fast as it can). Takes the ``replay`` pane's controls."""

    def __init__(
        self,
        path: Path,
        sink: FeedSink,
        *,
        speed: float = 1.0,
        paused: bool = False,
        every: int = CHECKPOINT_EVENTS,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must not be negative")
        self.path = path
        self.sink = sink
        self.speed = speed
        self.paused = paused
        self.index: RecordingIndex | None = None
        self.pos = 0  # events played
        self.vt = 0.0  # the recording's clock (POSIX seconds)
        self._every = every
        self._sleep = sleep
        self._clock = clock
        self._wake = asyncio.Event()
        self._steps = 0
        self._seek: tuple[int, float] | None = None
        self._buf: deque[Event | None] = deque()
        self._buf_pos = 0  # the position of the first buffered event
        self._resynced_at = 0  # the position whose recorded snapshot the app holds
        self._reported = float("-inf")

    # what the app calls --------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        raise GodelError(
            f"this console replays {self.path.name}: there is no daemon to run {method} on"
        )

    def now(self) -> datetime:
        """The recording's clock, for ages and the status line."""
        if self.index is None:
            return datetime.now(UTC)
        return datetime.fromtimestamp(self.vt, UTC)

    @property
    def at_end(self) -> bool:
        return self.index is not None and self.pos >= len(self.index)

    def control(self, command: str) -> str | None:
        """One of ``CONTROLS``; returns a note for the user, or None."""
        idx = self.index
        if idx is None:
            return "still reading the recording"
        if command == "pause":
            self.paused = not self.paused
            if not self.paused and self._target()[0] >= len(idx):
                self.paused = True
                return "at the end of the recording: < goes back to the start"
        elif command == "step":
            self.paused = True
            self._steps += 1
        elif command == "step_back":
            self.paused = True
            self._steps = 0
            self.seek_pos(self._target()[0] - 1)
        elif command == "back":
            self.seek_time(self._target()[1] - SEEK_S)
        elif command == "forward":
            self.seek_time(self._target()[1] + SEEK_S)
        elif command == "start":
            self.seek_pos(0)
        elif command == "end":
            self.seek_pos(len(idx))
        elif command == "faster":
            self.speed = 0 if self.speed == 0 else min(MAX_SPEED, self.speed * 2)
        elif command == "slower":
            self.speed = MAX_SPEED if self.speed == 0 else max(1 / MAX_SPEED, self.speed / 2)
        else:
            return f"no replay control {command!r} (known: {', '.join(CONTROLS)})"
        self._wake.set()
        self._report(force=True)
        return None

    def seek_time(self, t: float | datetime) -> None:
        """Go to time ``t`` of the recording (clamped to its start and end)."""
        idx = self.index
        if idx is None:
            return
        secs = t.timestamp() if isinstance(t, datetime) else t
        secs = min(max(secs, idx.start), idx.end)
        self._seek = (0 if secs <= idx.start else idx.pos_at(secs), secs)
        self._wake.set()

    def seek_pos(self, pos: int) -> None:
        """Go to the point where ``pos`` events have played."""
        idx = self.index
        if idx is None:
            return
        pos = min(max(pos, 0), len(idx))
        self._seek = (pos, idx.end if pos >= len(idx) else idx.time_of(pos))
        self._wake.set()

    # the player ----------------------------------------------------------------------

    async def run(self) -> None:
        """Index the file, then play it: until cancelled."""
        name = self.path.name
        self._state(False, f"replay {name}: reading the recording")
        cancelled = threading.Event()
        try:
            idx = await asyncio.to_thread(
                RecordingIndex.build, self.path, every=self._every, cancelled=cancelled
            )
        except OSError as e:
            self._state(False, f"cannot replay {self.path}: {e.strerror or e}")
            return
        except asyncio.CancelledError:
            cancelled.set()  # the thread stops at its next line: quitting does not wait
            raise
        self.index = idx
        self.vt = idx.start
        first = idx.state_at(0)  # a recorded snapshot or empty views: no file read
        self.sink.feed_snapshot(first, f"replay {name}")
        summary = f"replay {name}: {len(idx)} events, {_hms(idx.start)} to {_hms(idx.end)}"
        if not idx.starts_with_snapshot:
            summary += "; no console.snapshot at its start, so the views start empty"
        if idx.stats.skipped:
            summary += f"; {idx.stats.describe()}"
        self._state(True, summary)
        self._report(force=True)
        while True:
            try:
                await self._next()
            except OSError as e:
                self.paused = True
                self._state(True, f"replay {name}: cannot read it any more: {e.strerror or e}")
                await self._wait(None)

    async def _next(self) -> None:
        idx = self.index
        assert idx is not None
        if self._seek is not None:
            await self._jump(self._seek)
            return
        if self._steps > 0:
            self._steps -= 1
            if self.pos < len(idx):
                await self._play(self.pos + 1)
                self.vt = max(self.vt, idx.time_of(self.pos))
            self._report(force=True)
            return
        if self.paused or self.pos >= len(idx):
            self._report(force=True)
            await self._wait(None)
            return
        due = idx.times[self.pos]
        if self.speed > 0 and due > self.vt:
            wait = min((due - self.vt) / self.speed, WAIT_SLICE_S)
            t0 = self._clock()
            woke = await self._wait(wait)
            if self._seek is None:
                waited = min(max(self._clock() - t0, 0.0), wait) if woke else wait
                self.vt = min(due, self.vt + waited * self.speed)
            self._report()
            return
        stop = idx.piece_end(self.pos)
        if self.speed > 0:
            stop = bisect_right(idx.times, self.vt, self.pos + 1, stop)  # all that is due
        await self._play(stop)
        if self.speed == 0:
            self.vt = max(self.vt, idx.time_of(self.pos))
            await asyncio.sleep(0)  # let the app draw between pieces
        self._report()

    async def _jump(self, seek: tuple[int, float]) -> None:
        idx = self.index
        assert idx is not None
        pos, t = seek
        snap = await asyncio.to_thread(idx.state_at, pos)
        if self._seek != seek:
            return  # a newer seek came meanwhile: that one is next
        self._seek = None
        self._buf.clear()
        self.pos, self.vt, self._resynced_at = pos, t, pos
        self.sink.feed_snapshot(snap, f"replay {self.path.name} at {_hms(t)}")
        self._report(force=True)

    async def _play(self, stop: int) -> None:
        """Hand the app the events up to position ``stop``, and the recorded snapshots
        between them where they came."""
        idx = self.index
        assert idx is not None
        while self.pos < stop:
            end = min(stop, idx.next_resync(self.pos))
            while self.pos < end:
                for event in await self._take(end - self.pos):
                    self.pos += 1
                    if event is not None:
                        self.sink.feed_event(event)
            snap = idx.resync_at(self.pos)
            if snap is not None and self._resynced_at != self.pos:
                self._resynced_at = self.pos
                self.sink.feed_snapshot(snap, "the recording resyncs from a snapshot here")

    async def _take(self, count: int) -> list[Event | None]:
        """Up to ``count`` events from ``pos`` on: from the buffer, else a new piece."""
        idx = self.index
        assert idx is not None
        if not self._buf or self._buf_pos != self.pos:
            stop = idx.piece_end(self.pos)
            piece = await asyncio.to_thread(idx.read, self.pos, stop)
            self._buf = deque(piece)
            self._buf_pos = self.pos
        out: list[Event | None] = []
        while self._buf and len(out) < count:
            out.append(self._buf.popleft())
        self._buf_pos += len(out)
        return out

    async def _wait(self, timeout: float | None) -> bool:
        """Until a control wakes the player (True) or ``timeout`` seconds pass (False)."""
        if not self._wake.is_set():
            waiter = asyncio.ensure_future(self._wake.wait())
            sleeper = asyncio.ensure_future(self._sleep(timeout)) if timeout is not None else None
            try:
                await asyncio.wait(
                    {waiter} if sleeper is None else {waiter, sleeper},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
                if sleeper is not None:
                    sleeper.cancel()
        woke = self._wake.is_set()
        self._wake.clear()
        return woke

    def _target(self) -> tuple[int, float]:
        """Where the player is, or is about to be (a seek in flight)."""
        return self._seek if self._seek is not None else (self.pos, self.vt)

    # the status line -----------------------------------------------------------------

    def describe(self) -> str:
        """What the status line says: "replay FILE at HH:MM:SS (x2, paused) · ..."."""
        idx = self.index
        name = self.path.name
        if idx is None:
            return f"replay {name}: reading the recording"
        pos, t = self._target()
        n = len(idx)
        speed = "max speed" if self.speed == 0 else f"x{self.speed:g}"
        paused = ", paused" if self.paused else ""
        where = "the end" if pos >= n else f"{pos * 100 // n if n else 100}%"
        note = f"replay {name} at {_hms(t)} ({speed}{paused}) · {pos}/{n} events, {where}"
        if not idx.starts_with_snapshot:
            note += " · began from empty views"
        if idx.stats.skipped:
            note += f" · {idx.stats.skipped} line(s) skipped"
        return note

    def _report(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._reported < STATUS_S:
            return
        self._reported = now
        self._state(True, self.describe())

    def _state(self, connected: bool, note: str) -> None:
        self.sink.feed_state(FeedState(connected, note, self.now()))


def _snapshot_line(raw: bytes) -> tuple[ViewSnapshot, float] | None:
    """A ``console.snapshot`` line's snapshot and time, or None if it is not one."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("type") != SNAPSHOT_TYPE:
            return None
        snap = ViewSnapshot.model_validate(data["snapshot"])
        at = datetime.fromisoformat(str(data["at"]))
    except (ValueError, KeyError, TypeError, ValidationError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return snap, at.timestamp()


def _bad_line(stats: ReadStats, lineno: int, torn: bool) -> None:
    if torn:
        stats.torn_tail = True
    else:
        stats.malformed.append(lineno)


def _hms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).astimezone().strftime("%H:%M:%S")
