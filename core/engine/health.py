"""The health service: probes and circuit breakers per live agent, and the pool of agents
the dispatcher may route to (federation's ``AgentPool`` port).

Probes move an agent between ``idle``/``busy`` and ``unhealthy`` (stored, audited,
published); task results feed its breaker. An agent whose breaker is open is left out
of its pool, but only up to the ejection cap (``[health] max_ejection_percent``, at
least one): past it, the agents whose breakers opened last keep working, so a bad
spell never empties a pool.

Every change to a breaker (its state, its count of consecutive failures, whether it
keeps the agent out) and to the probes' verdict is published as ``agent.health``: the
breakers live only here, so that event is how the views (and every face) see them.
"""

from __future__ import annotations

import asyncio

from core.audit import AuditDraft
from core.config import HealthSettings
from core.engine.context import EngineContext
from core.engine.status import record_status
from core.events import AgentActivity, AgentHealthChanged
from core.federation.health import (
    BreakerState,
    CircuitBreaker,
    EjectionPolicy,
    HealthTracker,
    Prober,
    ProbeResult,
)
from core.models import Agent, AgentStatus, StatusChange, StatusSource
from core.runtimes.base import HealthReport, HealthState


def probe_result(report: HealthReport) -> ProbeResult:
    return ProbeResult(
        ok=report.state is HealthState.HEALTHY,
        detail=report.detail,
        dead=report.state is HealthState.DEAD,
    )


class HealthService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        settings = ctx.config.health
        self.trackers: dict[str, HealthTracker] = {}
        # Agents whose breaker is open but which work on because of the ejection cap.
        self.cap_overrides: set[str] = set()
        self.ejection = EjectionPolicy.from_settings(settings)
        self.prober = Prober(self._probe, self._on_health_change, settings, clock=ctx.clock)
        # Per agent, the timer that looks at its open breaker when the open time is over.
        self._due: dict[str, asyncio.Task[None]] = {}

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.prober.start()

    async def stop(self) -> None:
        await self.prober.stop()

    def apply_settings(self, settings: HealthSettings) -> None:
        """New ``[health]`` settings (config reload), for every agent from now on."""
        self.ejection = EjectionPolicy.from_settings(settings)
        self.prober.settings = settings
        for tracker in self.trackers.values():
            tracker.settings = settings
            b = tracker.breaker
            b.failure_threshold = settings.failure_threshold
            b.open_for_s = settings.open_for_s
            b.max_open_s = max(settings.max_open_s, settings.open_for_s)

    # tracking ----------------------------------------------------------------------------

    def track(self, agent_id: str) -> None:
        """Probe the agent and give it a circuit breaker fed by its task results."""
        settings = self.ctx.config.health

        def on_transition(old: BreakerState, new: BreakerState, reason: str) -> None:
            self.ctx.background.spawn(
                self.ctx.journal.audit(
                    AuditDraft(
                        actor="daemon",
                        action="agent.breaker",
                        subject=agent_id,
                        result=new.value,
                        payload={"from": old.value, "reason": reason},
                    ),
                    events=[
                        AgentActivity(
                            agent_id=agent_id,
                            exec_id="",
                            kind="breaker",
                            data={"from": old.value, "to": new.value, "reason": reason},
                        )
                    ],
                ),
                name=f"breaker-{agent_id}",
            )
            source = "open time" if new is BreakerState.HALF_OPEN else "exec outcome"
            self._publish(agent_id, breaker, source, reason, new)
            if new is BreakerState.OPEN:
                self._look_when_due(agent_id, breaker)

        breaker = CircuitBreaker.from_settings(
            settings, clock=self.ctx.clock.monotonic, on_transition=on_transition
        )
        tracker = HealthTracker(agent_id, settings, breaker=breaker, clock=self.ctx.clock.monotonic)
        self.trackers[agent_id] = tracker
        self.prober.add(agent_id, tracker)

    def untrack(self, agent_id: str) -> None:
        self.cap_overrides.discard(agent_id)
        self.prober.remove(agent_id)
        tracker = self.trackers.pop(agent_id, None)
        self.ctx.metrics.forget_agent(agent_id)
        if (due := self._due.pop(agent_id, None)) is not None:
            due.cancel()
        # ``opened_at`` rather than ``state``: looking at the state could move it now.
        if tracker is not None and (
            tracker.breaker.opened_at is not None or tracker.breaker.consecutive_failures
        ):
            # An ended agent has no breaker: the views should not show it open forever.
            self.ctx.journal.publish(
                AgentHealthChanged(
                    agent_id=agent_id, detail="the agent ended", source="agent ended"
                )
            )

    def _publish(
        self,
        agent_id: str,
        breaker: CircuitBreaker,
        source: str,
        detail: str,
        state: BreakerState | None = None,
    ) -> None:
        """The agent's health as of now; ``state`` is given inside a transition (reading
        ``breaker.state`` there could move it again)."""
        if state is None:
            state = breaker.state
        self.ctx.journal.publish(
            AgentHealthChanged(
                agent_id=agent_id,
                breaker=state.value,
                failures=breaker.consecutive_failures,
                ejected=state is BreakerState.OPEN and agent_id not in self.cap_overrides,
                detail=detail,
                source=source,
            )
        )

    def _look_when_due(self, agent_id: str, breaker: CircuitBreaker) -> None:
        """Open turns half-open lazily, when someone looks; look when the open time is
        over, so the change is published then (not at the next task for that pool) and
        the dispatcher can send the trial."""
        if (old := self._due.pop(agent_id, None)) is not None:
            old.cancel()
        retry_at = breaker.retry_at
        if retry_at is None:
            return
        clock = self.ctx.clock

        async def look() -> None:
            await clock.sleep(max(0.0, retry_at - clock.monotonic()))
            if self.trackers.get(agent_id) is not None and breaker.state is BreakerState.HALF_OPEN:
                self.ctx.wake_dispatcher()

        self._due[agent_id] = self.ctx.background.spawn(look(), name=f"breaker-due-{agent_id}")

    async def _probe(self, agent_id: str) -> ProbeResult:
        live = self.ctx.live.get(agent_id)
        if live is None or live.stopping:
            return ProbeResult(ok=False, detail="not running", dead=True)
        return probe_result(await live.runtime.health(live.handle))

    async def _on_health_change(self, agent_id: str, healthy: bool, detail: str) -> None:
        if (tracker := self.trackers.get(agent_id)) is not None:
            verdict = "healthy" if healthy else "unhealthy"
            self._publish(agent_id, tracker.breaker, "probe", f"{verdict}: {detail or 'probe'}")
        live = self.ctx.live.get(agent_id)
        if live is None or live.stopping:
            return
        if healthy:
            live.held = None  # the runtime let the stuck command go
            status = AgentStatus.BUSY if live.exec_id else AgentStatus.IDLE
        else:
            status = AgentStatus.UNHEALTHY
        await record_status(
            self.ctx,
            agent_id,
            StatusChange(status=status, source=StatusSource.PROBE, reason=detail or "probe"),
            audit=AuditDraft(
                actor="daemon",
                action="agent.health",
                subject=agent_id,
                result="healthy" if healthy else "unhealthy",
                payload={"detail": detail},
            ),
        )
        self.ctx.wake_dispatcher()

    def mark_held(self, agent_id: str, reason: str) -> None:
        """An exec ended but its command could not be stopped (the agent is recorded
        unhealthy): count that as a failed probe, so the probe that finds the agent
        healthy again flips it back to idle."""
        tracker = self.trackers.get(agent_id)
        if tracker is not None and tracker.record_probe(False, reason, immediate=True):
            self._publish(agent_id, tracker.breaker, "held command", f"unhealthy: {reason}")

    # the AgentPool port --------------------------------------------------------------------

    def workers(self, pool: str | None) -> list[Agent]:
        members = [
            live.agent
            for live in self.ctx.live.in_swarm(pool)
            if live.agent.status in (AgentStatus.IDLE, AgentStatus.BUSY)
        ]
        ids = {a.id for a in members}
        was_overridden = self.cap_overrides & ids
        self.cap_overrides -= ids  # recomputed each round
        ejected = [a for a in members if not self._open_to_work(a.id)]
        cap = self.ejection.max_ejected(len(members))
        if len(ejected) > cap:

            def opened(a: Agent) -> float:
                tracker = self.trackers.get(a.id)
                return (tracker.breaker.opened_at if tracker else None) or 0.0

            kept_out = sorted(ejected, key=opened)[:cap]  # the earliest opened stay out
            self.cap_overrides.update(a.id for a in ejected if a not in kept_out)
            ejected = kept_out
        out = {a.id for a in ejected}
        self._publish_cap_changes(was_overridden ^ (self.cap_overrides & ids))
        return [a for a in members if a.id not in out]

    def _publish_cap_changes(self, changed: set[str]) -> None:
        """An open breaker the cap lets work on is not ejected, and the other way round."""
        for agent_id in sorted(changed):
            tracker = self.trackers.get(agent_id)
            if tracker is None or tracker.breaker.state is not BreakerState.OPEN:
                continue  # only an open breaker ejects; its own transition said the rest
            why = (
                "open, but the ejection cap lets it work on"
                if agent_id in self.cap_overrides
                else "open: kept out of its pool"
            )
            self._publish(agent_id, tracker.breaker, "ejection cap", why)

    def _open_to_work(self, agent_id: str) -> bool:
        tracker = self.trackers.get(agent_id)
        if tracker is None:
            return True
        state = tracker.breaker.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and tracker.breaker.trial_available
        )

    def admit(self, agent_id: str) -> bool:
        if agent_id in self.cap_overrides:
            return True
        tracker = self.trackers.get(agent_id)
        return tracker is None or tracker.breaker.allow()

    def release_trial(self, agent_id: str) -> None:
        tracker = self.trackers.get(agent_id)
        if tracker is not None and tracker.breaker.state is BreakerState.HALF_OPEN:
            tracker.breaker.release_trial()

    def record_outcome(self, agent_id: str, ok: bool) -> None:
        tracker = self.trackers.get(agent_id)
        if tracker is None:
            return
        before = tracker.breaker.consecutive_failures
        changed = tracker.record_task(ok) is not None  # a transition publishes itself
        failures = tracker.breaker.consecutive_failures
        if not changed and failures != before:
            why = (
                f"{failures} consecutive exec failure{'s' if failures != 1 else ''}"
                f" (opens at {tracker.breaker.failure_threshold})"
                if failures
                else "an exec succeeded"
            )
            self._publish(agent_id, tracker.breaker, "exec outcome", why)

    def is_live(self, agent_id: str) -> bool:
        return self.ctx.live.is_live(agent_id)

    def breaker_state(self, agent_id: str) -> BreakerState | None:
        tracker = self.trackers.get(agent_id)
        return tracker.breaker.state if tracker else None
