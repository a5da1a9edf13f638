"""The journal: the one path that changes durable state.

``commit`` hands an op and its audit entries to the store, which applies both in one
transaction; only after that commit does the journal publish what happened: the
caller's events, then an ``audit.appended`` event per entry. So a subscriber never
hears of a change that a crash could still undo, and no change lands without its audit
entry. Nothing else in Godel writes audit entries.

Events that describe no durable change (a chunk of output as it streams, a routing
decision that claimed nothing) go straight to the bus with ``publish``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from core.audit import AuditDraft
from core.events import AuditAppended, Event, EventBus, SwarmChanged, TaskChanged
from core.models import AuditEntry
from core.store.base import Committed, Store
from core.store.ops import NoChange, Op

T = TypeVar("T")

Events = Sequence[Event] | Callable[[T], Sequence[Event]]


class Journal:
    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    async def commit(
        self,
        op: Op[T],
        *,
        audit: AuditDraft | Sequence[AuditDraft] = (),
        events: Events[T] = (),
    ) -> T:
        """Commit ``op`` with ``audit``; then publish. ``events`` may be a function of
        the op's result (e.g. a status change event that names the previous status)."""
        drafts = (audit,) if isinstance(audit, AuditDraft) else tuple(audit)

        def publish(done: Committed[T]) -> None:
            self._changed(done)
            for event in events(done.value) if callable(events) else events:
                self.bus.publish(event)
            self._published(done.entries)

        # Published from the store's commit callback: a caller cancelled while its op
        # was in flight still gets its committed change announced.
        done = await self.store.commit(op, drafts, publish)
        return done.value

    async def audit(self, draft: AuditDraft, events: Sequence[Event] = ()) -> None:
        """An action that changes no record but must be on the audit log."""
        await self.commit(NoChange(), audit=draft, events=events)

    def publish(self, event: Event) -> None:
        """An event with no durable change behind it."""
        self.bus.publish(event)

    def _changed(self, done: Committed[T]) -> None:
        """What the store saw change in tasks and swarms: before the caller's events,
        which may refer to it."""
        for swarm in done.changes.swarms:
            self.bus.publish(SwarmChanged(swarm=swarm))
        for c in done.changes.tasks:
            self.bus.publish(
                TaskChanged(
                    task_id=c.task_id,
                    swarm=c.swarm,
                    status=c.status,
                    previous=c.previous,
                    agent_id=c.agent_id,
                    previous_agent=c.previous_agent,
                    attempts=c.attempts,
                    priority=c.priority,
                    runtime=c.runtime,
                    error=c.error,
                    input=c.input,
                )
            )

    def _published(self, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            self.bus.publish(
                AuditAppended(
                    seq_no=entry.seq,
                    action=entry.action,
                    subject=entry.subject,
                    actor=entry.actor,
                    result=entry.result,
                )
            )
