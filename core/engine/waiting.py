"""Waiting until tasks are final (``task wait``, ``task submit --wait``): driven by the
``task.changed`` events the store publishes for every status change, never by polling,
with a timeout on the engine's clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from core.clock import Expired
from core.engine.context import EngineContext
from core.errors import DaemonError, TaskNotFound
from core.events import Event, EventsDropped, Subscription, SubscriptionClosed, TaskChanged
from core.models import Task, TaskStatus

FINAL = frozenset(s.value for s in TaskStatus if s.is_final)

OnProgress = Callable[["WaitProgress"], Awaitable[None]]


class WaitProgress(BaseModel):
    kind: str = "progress"
    total: int
    final: int
    counts: dict[str, int]  # tasks by status
    elapsed_s: float
    # Tasks no agent present could ever take, and why (first report only): a wait on
    # them would otherwise look like any other wait.
    stranded: dict[str, str] = {}


class WaitResult(BaseModel):
    tasks: list[Task]  # each once, in the order asked
    timed_out: bool
    elapsed_s: float


def progress(tasks: dict[str, Task], elapsed_s: float) -> WaitProgress:
    counts: dict[str, int] = {}
    for t in tasks.values():
        counts[t.status.value] = counts.get(t.status.value, 0) + 1
    return WaitProgress(
        total=len(tasks),
        final=sum(1 for t in tasks.values() if t.status.is_final),
        counts=counts,
        elapsed_s=round(elapsed_s, 3),
    )


async def wait_tasks(
    ctx: EngineContext,
    get_task: Callable[[str], Awaitable[Task]],
    ids: list[str],
    timeout: float | None,
    on_progress: OnProgress,
    explain: Callable[[str], Awaitable[Task]] | None = None,
) -> WaitResult:
    """Until every task in ``ids`` is final or ``timeout`` (seconds) ran out. An unknown
    id is one error before any wait. Progress goes to ``on_progress`` once at the start
    (with the tasks no agent could take, read with ``explain``) and once per burst of
    changes (read with the cheaper ``get_task``)."""
    ids = list(dict.fromkeys(ids))
    clock = ctx.clock
    started = clock.monotonic()
    # Subscribed before the first read: a change committed in between is still seen
    # (reading a task again on an event is harmless, missing one is not).
    sub = ctx.bus.subscribe("task.wait", types={"task.changed"})
    try:
        tasks: dict[str, Task] = {}
        unknown: list[str] = []
        for task_id in ids:
            try:
                tasks[task_id] = await (explain or get_task)(task_id)
            except TaskNotFound:
                unknown.append(task_id)
        if unknown:
            names = ", ".join(repr(u) for u in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            what = "task" if len(unknown) == 1 else "tasks"
            raise TaskNotFound(
                f"{what} {names}{more} not found; nothing was waited for (see `godel task list`)",
                task_ids=unknown,
            )
        pending = {i for i, t in tasks.items() if not t.status.is_final}
        first = progress(tasks, clock.monotonic() - started)
        first.stranded = {i: t.waiting for i, t in tasks.items() if t.stranded and i in pending}
        await on_progress(first)
        while pending:
            try:
                if timeout is None:
                    events: list[Event] = [await sub.get()]
                else:
                    left = timeout - (clock.monotonic() - started)
                    if left <= 0:
                        break
                    events = [await clock.limit(sub.get(), left)]
            except Expired:
                break
            except SubscriptionClosed:
                raise DaemonError("the daemon is stopping; the wait ended early") from None
            events += _queued(sub)  # one progress report per burst
            changed: set[str] = set()
            moved = False
            for ev in events:
                if isinstance(ev, EventsDropped):
                    changed |= pending  # some changes were missed: read them all again
                elif isinstance(ev, TaskChanged) and ev.task_id in pending:
                    if ev.status in FINAL:
                        changed.add(ev.task_id)  # read once, at its end
                    else:  # the event says all progress needs
                        tasks[ev.task_id] = tasks[ev.task_id].model_copy(
                            update={"status": TaskStatus(ev.status), "attempts": ev.attempts}
                        )
                        moved = True
            if not changed and not moved:
                continue
            for task_id in changed:
                tasks[task_id] = await get_task(task_id)
                if tasks[task_id].status.is_final:
                    pending.discard(task_id)
            await on_progress(progress(tasks, clock.monotonic() - started))
    finally:
        sub.close()
    return WaitResult(
        tasks=[tasks[i] for i in ids],
        timed_out=bool(pending),
        elapsed_s=round(clock.monotonic() - started, 3),
    )


def _queued(sub: Subscription) -> list[Event]:
    out: list[Event] = []
    while True:
        try:
            out.append(sub.get_nowait())
        except (asyncio.QueueEmpty, SubscriptionClosed):
            return out
