"""``--record FILE`` for commands that drive a run (``godel do``): what the engine
published while the command ran, in the console's recording format (a ``view.snapshot``
line, then the events of ``events.subscribe``), so ``godel replay FILE`` plays it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from core.errors import InvalidInput
from core.events.recording import ConsoleRecording

STOP_WAIT_S = 10.0


class Caller(Protocol):
    """What the recorder calls: the daemon's client, or a headless run's backend."""

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        on_stream: Callable[[Any], Awaitable[None] | None] | None = None,
    ) -> Any: ...


class Recorder:
    def __init__(self, recording: ConsoleRecording, follow: asyncio.Task[Any]) -> None:
        self.recording = recording
        self.follow = follow
        self.seq = 0
        self._bumped = asyncio.Event()

    @classmethod
    async def start(cls, backend: Caller, path: str) -> Recorder:
        try:
            recording = ConsoleRecording(Path(path))
        except OSError as e:
            raise InvalidInput(f"cannot write the recording {path}: {e.strerror or e}") from None
        snap = await backend.call("view.snapshot")
        recording.snapshot(int(snap["seq"]), snap)
        rec: Recorder

        async def on_event(data: Any) -> None:
            if not isinstance(data, dict):
                return
            recording.event(data)
            rec.seq = max(rec.seq, int(data.get("seq") or 0))
            rec._bumped.set()

        follow = asyncio.create_task(
            backend.call("events.subscribe", {"after_seq": snap["seq"]}, on_event)
        )
        rec = cls(recording, follow)
        rec.seq = int(snap["seq"])
        return rec

    async def stop(self, until_seq: int = 0) -> None:
        """Stop once the event ``until_seq`` (the last one the command saw) is recorded,
        or the stream ended (a bound of STOP_WAIT_S guards against a stream that lost it)."""
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT_S):
                    while self.seq < until_seq and not self.follow.done():
                        self._bumped.clear()
                        bumped = asyncio.ensure_future(self._bumped.wait())
                        await asyncio.wait(
                            {bumped, self.follow}, return_when=asyncio.FIRST_COMPLETED
                        )
                        bumped.cancel()
        finally:
            self.follow.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.follow
            self.recording.close()
