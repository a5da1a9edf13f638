"""The live read side: the views kept current from the bus, and event subscriptions
that resume from a cursor (``view.*`` and ``events.subscribe`` serve these)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from core.engine.context import EngineContext
from core.errors import AgentNotFound
from core.events import Event, EventsDropped, Subscription, SubscriptionClosed
from core.events.backlog import BACKLOG_BYTES, BACKLOG_SIZE, Backlog, last_run
from core.events.recording import ReadStats, tail_recording
from core.views import AgentRow, Views, ViewSnapshot
from core.views.filter import EventFilter


@dataclass(frozen=True)
class Resumed:
    """What a subscriber gets first: how many seqs it missed before the kept backlog
    (0: none), then the kept events after its cursor."""

    missed: int
    backlog: list[Event]


class ReadService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._views: Views | None = None
        self._backlog: Backlog | None = None
        self._untap: Callable[[], None] | None = None
        self._streams: set[Subscription] = set()

    async def start(self) -> None:
        """Load every view from the store, then follow the bus. Runs before anything else
        in the engine publishes, so no event falls between the two."""
        # The last run's recent events, so a client resumes across a restart.
        stats = ReadStats()
        tail = await asyncio.to_thread(
            tail_recording, self.ctx.paths.events, BACKLOG_SIZE, stats, BACKLOG_BYTES
        )
        preload = last_run(tail)
        if preload:
            # Numbering goes on after the last recorded event even if the seq file was
            # lost (or predates it): a cursor must never see a seq twice.
            self.ctx.bus.advance_to(preload[-1].seq)
        snap = await self.ctx.store.view_snapshot()
        snap.seq = self.ctx.bus.seq
        self._views = Views(snap)
        self._untap = self.ctx.bus.tap(self._views.apply)
        self._backlog = Backlog(self.ctx.bus, preload=preload)

    def stop(self) -> None:
        """End every event stream (what is queued still goes out, then each returns, so
        a following client hears that the stream ended rather than losing its socket)."""
        for sub in list(self._streams):
            sub.end()
        if self._untap is not None:
            self._untap()
        if self._backlog is not None:
            self._backlog.close()

    @property
    def views(self) -> Views:
        if self._views is None:
            raise RuntimeError("the read side is not started")
        return self._views

    def snapshot(self) -> ViewSnapshot:
        return self.views.snapshot()

    def agents(
        self, *, swarm: str | None = None, status: str | None = None, include_ended: bool = False
    ) -> list[AgentRow]:
        return self.views.agent_rows(swarm=swarm, status=status, include_ended=include_ended)

    def agent(self, ref: str) -> AgentRow:
        """By id, or by the name of a live agent (else the newest agent of that name)."""
        views = self.views
        cell = views.agents.get(ref)
        if cell is not None:
            return cell.row()
        named = [a for a in views.agents.values() if a.name == ref]
        named.sort(key=lambda a: (not a.status.is_terminal, a.created_at))
        if named:
            return named[-1].row()
        raise AgentNotFound(
            f"agent {ref!r} not found (`godel agent list --all` lists every agent)", agent_id=ref
        )

    def events(
        self,
        flt: EventFilter,
        *,
        after_seq: int | None = None,
        last: int | None = None,
        follow: bool,
        name: str,
    ) -> AsyncGenerator[Event, None]:
        """The events matching ``flt``: the kept ones after ``after_seq`` (or the ``last``
        N kept ones that match; neither: none of the past), then, with ``follow``, live
        ones until the bus closes. A gap (the cursor is older than what is kept, or this
        subscriber fell behind) arrives as an ``events.dropped`` marker: the subscriber
        may resync from ``view.snapshot``."""
        views, backlog = self.views, self._backlog
        assert backlog is not None
        # Subscribe and read the backlog in the same loop turn: nothing falls between.
        sub = self.ctx.bus.subscribe(name, types=flt.types) if follow else None
        if sub is not None:
            self._streams.add(sub)
        if after_seq is not None:
            missed, kept = backlog.since(after_seq)
            resumed = Resumed(missed, [e for e in kept if flt.matches(e, views)])
        elif last:
            _, kept = backlog.since(0)
            resumed = Resumed(0, [e for e in kept if flt.matches(e, views)][-last:])
        else:
            resumed = Resumed(0, [])

        async def gen() -> AsyncGenerator[Event, None]:
            try:
                if resumed.missed:
                    yield EventsDropped(seq=0, count=resumed.missed, subscriber=f"{name} (resume)")
                for event in resumed.backlog:
                    yield event
                if sub is None:
                    return
                while True:
                    try:
                        event = await sub.get()
                    except SubscriptionClosed:
                        return
                    if flt.matches(event, views):
                        yield event
            finally:
                if sub is not None:
                    sub.close()
                    self._streams.discard(sub)

        return gen()
