"""Provider pauses: a provider's usage limit stops dispatch to its agents until the reset.

When a model call gets an HTTP 429 whose Retry-After is longer than the client waits in
place (``core.llm.http``), the native runtime ends the exec and tells the engine
(``RuntimeContext.usage_limit``). The provider is then paused until now + Retry-After:
the exec's task goes back to the queue without counting the attempt (the dispatcher asks
``cut``), the dispatcher gives no task to an agent on that provider (``paused``), and
``task get`` says why the task waits. A timer on the engine's clock resumes the provider
by itself. Pause and resume are audited and published (``provider.paused``,
``provider.resumed``). Pauses live in memory: a restarted daemon tries the provider again,
and the next 429 pauses it again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from core.audit import AuditDraft
from core.engine.context import EngineContext
from core.events import ProviderPaused, ProviderResumed
from core.models import Agent


def _hms(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


class ProviderPauses:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._until: dict[str, float] = {}  # provider -> wall time it resumes at
        self._cut: dict[str, str] = {}  # exec id -> why a usage limit ended it
        self._timers: dict[str, asyncio.Task[None]] = {}

    def provider_of(self, agent: Agent) -> str | None:
        settings = self.ctx.config.models.get(agent.model) if agent.model else None
        return settings.provider if settings is not None else None

    def paused(self, agent: Agent) -> str | None:
        """Why ``agent`` may take no task now (its provider is paused), or None."""
        provider = self.provider_of(agent)
        until = self._until.get(provider) if provider is not None else None
        if until is None:
            return None
        left = max(0.0, until - self.ctx.clock.time())
        return (
            f"provider {provider} paused by its usage limit until {_hms(until)} "
            f"(in {left:.0f}s); it resumes by itself"
        )

    def waiting(self, agents: list[Agent]) -> str | None:
        """Why a task only these agents could take waits: all of them are paused."""
        reasons = [self.paused(a) for a in agents]
        if not reasons or any(r is None for r in reasons):
            return None
        return reasons[0]

    def cut(self, exec_id: str) -> str | None:
        """Why a usage limit ended exec ``exec_id`` (asked once, by the dispatcher)."""
        return self._cut.pop(exec_id, None)

    async def hit(
        self, agent_id: str, exec_id: str, provider: str, retry_after: float, message: str
    ) -> None:
        """A usage limit ended ``exec_id``: pause ``provider`` until it resets."""
        now = self.ctx.clock.time()
        until = now + retry_after
        self._cut[exec_id] = f"provider {provider} hit its usage limit (resumes at {_hms(until)})"
        if until <= self._until.get(provider, 0.0):
            return  # already paused at least that long
        self._until[provider] = until
        await self.ctx.journal.audit(
            AuditDraft(
                actor="pauses",
                action="provider.pause",
                subject=provider,
                result="paused",
                payload={
                    "agent_id": agent_id,
                    "exec_id": exec_id,
                    "retry_after_s": retry_after,
                    "until": datetime.fromtimestamp(until, UTC).isoformat(),
                    "message": message,
                },
            ),
            events=[
                ProviderPaused(
                    provider=provider,
                    until=datetime.fromtimestamp(until, UTC),
                    retry_after_s=retry_after,
                    message=message,
                )
            ],
        )
        if provider not in self._timers:
            self._timers[provider] = asyncio.create_task(
                self._resume_at_reset(provider), name=f"resume-{provider}"
            )

    async def _resume_at_reset(self, provider: str) -> None:
        # The pause may be extended while this sleeps: sleep until the latest reset.
        while (left := self._until[provider] - self.ctx.clock.time()) > 0:
            await self.ctx.clock.sleep(left)
        del self._until[provider]
        self._timers.pop(provider, None)
        if not self._until:
            self._cut.clear()  # execs of `agent exec` (no task): nobody asks about them
        await self.ctx.journal.audit(
            AuditDraft(actor="pauses", action="provider.resume", subject=provider),
            events=[ProviderResumed(provider=provider)],
        )
        self.ctx.wake_dispatcher()

    async def stop(self) -> None:
        for timer in list(self._timers.values()):
            timer.cancel()
        await asyncio.gather(*self._timers.values(), return_exceptions=True)
        self._timers.clear()
