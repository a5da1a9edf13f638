"""Background tasks an owner starts and does not await: kept referenced (asyncio holds
only weak references, so an unreferenced task can vanish mid-run), failures logged,
and ended together when the owner ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any


class TaskSet:
    def __init__(self, owner: str, logger: logging.Logger) -> None:
        self.owner = owner  # named in the log line of a task that failed
        self._log = logger
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error(
                "%s: background task %s failed", self.owner, task.get_name(), exc_info=exc
            )

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    async def settle(self, timeout: float) -> None:
        """Let the tasks end on their own for up to ``timeout`` seconds, then cancel the
        rest and wait for them."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
