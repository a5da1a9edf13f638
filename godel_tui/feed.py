"""The console's line to the daemon: a view snapshot, then the live event stream.

No Textual here. ``DaemonFeed.run`` connects (starting the daemon the first time, as
the CLI does), loads ``view.snapshot``, subscribes to ``events.subscribe`` after the
snapshot's seq, and hands both to a ``FeedSink``. When the daemon goes away it says so,
tries again (with a short backoff) and, once back, resyncs from a new snapshot and says
that it did: a console never shows state it did not receive.

With ``record`` set, what the console receives is written as it arrives, in the live
stream's format (one event per line, as ``events.jsonl``), after one ``console.snapshot``
line holding the snapshot it started from: ``godel replay`` plays the file, and
``godel events --file`` reads it (skipping the snapshot line).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from core.api.client import DaemonClient, connect
from core.errors import GodelError
from core.events import Event, EventsDropped, parse_event
from core.events.recording import SNAPSHOT_TYPE as SNAPSHOT_TYPE  # replay.py reads it here
from core.events.recording import ConsoleRecording
from core.paths import GodelPaths
from core.views import ViewSnapshot

RETRY_S = (0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class FeedState:
    connected: bool
    note: str  # what the status line says: "live", "daemon gone since ...", ...
    at: datetime


class FeedSink(Protocol):
    def feed_snapshot(self, snapshot: ViewSnapshot, note: str) -> None: ...

    def feed_event(self, event: Event) -> None: ...

    def feed_state(self, state: FeedState) -> None: ...


class ConsoleFeed(Protocol):
    """What the app reads from and acts through: ``DaemonFeed`` (the daemon, live) or
    a ``PlaybackFeed``."""

    async def run(self) -> None: ...

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...


@runtime_checkable
class PlaybackFeed(ConsoleFeed, Protocol):
    """A feed that plays something back (``godel_tui.replay.ReplayFeed``): the app is
    read-only, takes the ``replay`` pane's keys (``control``), shows ages on the
    recording's clock (``now``), and takes agent output from the stream (no daemon)."""

    def control(self, command: str) -> str | None: ...

    def now(self) -> datetime: ...


class Recorder:
    """Writes what the console receives to ``path`` (owner-only, line by line), in the
    format ``core.events.recording.ConsoleRecording`` defines (``godel run --record``
    writes the same)."""

    def __init__(self, path: Path) -> None:
        self._rec = ConsoleRecording(path)

    def snapshot(self, snap: ViewSnapshot) -> None:
        self._rec.snapshot(snap.seq, snap.model_dump(mode="json"))

    def event(self, raw: dict[str, Any]) -> None:
        self._rec.event(raw)

    def close(self) -> None:
        self._rec.close()


class DaemonFeed:
    def __init__(
        self,
        paths: GodelPaths,
        sink: FeedSink,
        *,
        autostart: bool = True,
        record: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.paths = paths
        self.sink = sink
        self.autostart = autostart
        self.recorder = Recorder(record) if record is not None else None
        self.clock = clock
        self.client: DaemonClient | None = None
        self.last_seq = 0
        self.resyncs = 0
        self._resync = asyncio.Event()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One action or read on the daemon; ``GodelError`` if none is connected."""
        if self.client is None:
            raise GodelError(f"not connected to the daemon of {self.paths.home}; retrying")
        return await self.client.call(method, params)

    async def run(self) -> None:
        """Connect, follow, reconnect: until cancelled."""
        attempt = 0
        first = True
        why: str | None = None  # why the next snapshot is a resync, for the status line
        try:
            while True:
                try:
                    client = await connect(self.paths, autostart=self.autostart and first)
                except GodelError as e:
                    if first:
                        self.sink.feed_state(FeedState(False, e.message, self.clock()))
                        why = "connected"
                    first = False
                    await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                    attempt += 1
                    continue
                first, attempt = False, 0
                self.client = client
                try:
                    await self._follow(client, why)
                except _Resync:
                    why = "events were dropped"
                except (GodelError, ConnectionError, OSError) as e:
                    at = self.clock()
                    detail = e.message if isinstance(e, GodelError) else str(e)
                    note = f"lost the daemon at {_hms(at)}: {detail}; reconnecting"
                    self.sink.feed_state(FeedState(False, note, at))
                    why = "reconnected"
                finally:
                    self.client = None
                    await client.close()
        finally:
            if self.recorder is not None:
                self.recorder.close()

    async def _follow(self, client: DaemonClient, why: str | None) -> None:
        raw = await client.call("view.snapshot")
        snap = ViewSnapshot.model_validate(raw)
        self.last_seq = snap.seq
        if self.recorder is not None:
            self.recorder.snapshot(snap)
        if why is None:
            note = f"live from seq {snap.seq}"
        else:
            note = f"{why}; resynced from a snapshot at seq {snap.seq}"
            self.resyncs += 1
        self._resync.clear()
        self.sink.feed_snapshot(snap, note)
        self.sink.feed_state(FeedState(True, note, self.clock()))
        stream = asyncio.create_task(
            client.call("events.subscribe", {"after_seq": snap.seq}, on_stream=self._on_raw)
        )
        resync = asyncio.create_task(self._resync.wait())
        try:
            done, _ = await asyncio.wait({stream, resync}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The console is closing: end the stream too, or its "connection closed"
            # error would be printed as never retrieved after the console has gone.
            stream.cancel()
            raise
        finally:
            resync.cancel()
        if stream in done:
            stream.result()  # raises what ended it
            raise GodelError("the daemon ended the event stream (it is stopping)")
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError, GodelError):
            await stream
        # The subscription stays open on the daemon until its connection closes: start
        # over on a new connection, so the old stream's events cannot mix in.
        raise _Resync()

    def _on_raw(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        try:
            event = parse_event(data)
        except ValueError:
            return  # an event type this console does not know: newer daemon
        if isinstance(event, EventsDropped):
            self._resync.set()
            return
        if self.recorder is not None:
            self.recorder.event(data)
        self.last_seq = max(self.last_seq, event.seq or 0)
        self.sink.feed_event(event)


class _Resync(ConnectionError):
    """Internal: start over from a snapshot."""


def _hms(t: datetime) -> str:
    return t.astimezone().strftime("%H:%M:%S")
