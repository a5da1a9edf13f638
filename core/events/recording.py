"""Recording a bus to a JSONL file (``EventRecorder``) and reading it back (``read_recording``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pydantic import ValidationError

from core.events.bus import EventBus, Subscription, SubscriptionClosed
from core.events.types import EVENT_ADAPTER, Event, event_to_json

__all__ = ["EventRecorder", "read_recording"]


class EventRecorder:
    """Appends every event of a bus to a JSONL file, one event per line.

    Writes go through ``asyncio.to_thread``: even a small write can stall for a
    long time on a slow or full disk, and a stalled event loop would stall every
    ``publish`` caller. The thread hop is paid once per batch, not per event.
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
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self._bus = bus
        self._name = name
        self._maxsize = maxsize
        self._types = types
        self._batch_size = batch_size
        self._sub: Subscription | None = None
        self._file: IO[str] | None = None
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
        # newline="\n": the format is LF-separated on every platform.
        self._file = self.path.open("a", encoding="utf-8", newline="\n")
        self._sub = self._bus.subscribe(self._name, self._maxsize, self._types)
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
        sub, f = self._sub, self._file
        assert sub is not None and f is not None
        try:
            while True:
                try:
                    batch = [await sub.get()]
                except SubscriptionClosed:
                    return
                while len(batch) < self._batch_size:
                    try:
                        batch.append(sub.get_nowait())
                    except (asyncio.QueueEmpty, SubscriptionClosed):
                        break
                lines = "".join(event_to_json(e) + "\n" for e in batch)
                await asyncio.to_thread(_write_flush, f, lines)
                self._written += len(batch)
        finally:
            # On a write error, stop queueing events nobody will write.
            sub.close()
            f.close()
            self._file = None

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


def _write_flush(f: IO[str], text: str) -> None:
    f.write(text)
    f.flush()


def read_recording(path: str | Path) -> Iterator[Event]:
    """Yield the events of a JSONL recording in order.

    Every line must be an event: a blank, truncated or otherwise malformed line
    raises ``ValueError`` naming the file and line number, never skipped.
    """
    path = Path(path)
    with path.open(encoding="utf-8", newline="\n") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                event = EVENT_ADAPTER.validate_json(line)
            except ValidationError as exc:
                raise ValueError(f"{path}: malformed event on line {lineno}: {exc}") from exc
            yield event
