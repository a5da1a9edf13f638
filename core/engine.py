"""The ``Engine``: the one facade every face (CLI, daemon API, console, headless) calls.

It owns the live runtime handles, writes every record to the store, publishes every
change on the event bus and appends every action to the audit log. Faces hold no
logic of their own, so a status is the same record wherever it is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import __version__
from core.activity import activity_line
from core.audit import VerifyReport, verify_chain
from core.config import LoadedConfig, load_config
from core.errors import (
    AgentNotFound,
    AgentUnavailable,
    GodelError,
    InvalidInput,
    RuntimeFailure,
    SwarmError,
    TaskNotFound,
)
from core.events import (
    AgentActivity,
    AgentOutput,
    AgentSpawned,
    AgentStatusChanged,
    AuditAppended,
    ConfigChanged,
    DaemonStarted,
    DaemonStopping,
    EventBus,
    ExecFinished,
    ExecStarted,
    QueuePressure,
    SubscriptionClosed,
    TaskFinished,
    TaskRouted,
)
from core.federation.autoscaler import Autoscaler
from core.federation.dispatcher import Dispatcher, Routed
from core.federation.health import (
    BreakerState,
    CircuitBreaker,
    EjectionPolicy,
    HealthTracker,
    Prober,
    ProbeResult,
    RestartPolicy,
)
from core.federation.metrics import AnomalyDetector, Metrics
from core.federation.routing import Routing, check_strategy
from core.llm.catalog import ModelCatalog
from core.llm.catalog_types import ResolvedModel
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    AssistantText,
    AuditEntry,
    ExecRecord,
    ExecResult,
    ExecStatus,
    LogLine,
    OutputChunk,
    PolicyViolation,
    RuntimeEvent,
    RuntimeInfo,
    StatusChange,
    StatusSource,
    Swarm,
    SwarmSpec,
    Task,
    TaskPriority,
    TaskSpec,
    TaskStatus,
    new_agent_id,
    new_id,
    utcnow,
)
from core.paths import GodelPaths
from core.runtimes.base import AgentHandle, AgentRuntime, Capability, HealthReport
from core.runtimes.registry import RuntimeRegistry

if TYPE_CHECKING:
    from core.llm.scripted import ScriptedServer
from core.store.base import AuditDraft, OutputRow
from core.store.sqlite import SqliteStore

log = logging.getLogger("godel.engine")

OUTPUT_FLUSH_INTERVAL = 0.1  # seconds between batched writes of agent output
OUTPUT_FLUSH_ROWS = 256


@dataclass
class LiveAgent:
    """An agent whose process this engine started and still holds."""

    agent: Agent
    runtime: AgentRuntime
    handle: AgentHandle
    exec_id: str | None = None
    stopping: bool = False  # set before a deliberate kill so the exit watcher stays quiet
    watcher: asyncio.Task[None] | None = None
    exec_task: asyncio.Task[None] | None = None


@dataclass
class _ExecStream:
    queue: asyncio.Queue[RuntimeEvent] = field(default_factory=asyncio.Queue)


def _prepare_workspace(spec: AgentSpec, root: Path, agent_id: str) -> Path:
    """The agent's workspace: ``--workdir`` if given, else a fresh folder under ``root``."""
    if spec.workdir is not None:
        workspace = spec.workdir.expanduser().absolute()
        if workspace.exists() and not workspace.is_dir():
            raise InvalidInput(f"--workdir {workspace} is not a directory", workdir=str(workspace))
    else:
        workspace = root.expanduser().absolute() / agent_id
    workspace.mkdir(parents=True, exist_ok=True)
    return workspace


class Engine:
    def __init__(
        self,
        paths: GodelPaths,
        store: SqliteStore,
        registry: RuntimeRegistry,
        config: LoadedConfig,
        bus: EventBus | None = None,
    ) -> None:
        self.paths = paths
        self.store = store
        self.registry = registry
        self.config = config
        self.bus = bus or EventBus()
        self._live: dict[str, LiveAgent] = {}
        self._output: list[OutputRow] = []
        self._flusher: asyncio.Task[None] | None = None
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scripted: ScriptedServer | None = None
        self._scripted_lock = asyncio.Lock()
        self.models = ModelCatalog(config.config, scripted_url=self._scripted_base_url)
        self.dispatcher = Dispatcher(self, lease_s=config.config.queue.lease_s)
        self.metrics = Metrics()
        self.anomalies = AnomalyDetector()
        health = config.config.health
        self.trackers: dict[str, HealthTracker] = {}
        self.prober = Prober(self._probe, self._on_health_change, health)
        self.restarts = RestartPolicy(health)
        self.ejection = EjectionPolicy.from_settings(health)
        # Agents whose breaker is open but which work on because of the ejection cap.
        self.cap_overrides: set[str] = set()
        self.autoscaler = Autoscaler(self, config.config.autoscaler)
        self.routing = Routing(
            self.metrics, self.trackers, self.cap_overrides, health.panic_threshold
        )

    async def _scripted_base_url(self) -> str:
        """Start Godel's scripted model server on first use (``--model scripted``)."""
        async with self._scripted_lock:
            if self._scripted is None:
                from core.llm.scripted import ScriptedServer

                server = ScriptedServer()
                await asyncio.to_thread(server.start)
                self._scripted = server
                log.info("scripted model server on %s", server.base_url)
            return self._scripted.base_url

    # lifecycle -----------------------------------------------------------------

    async def start(self, actor: str = "daemon") -> None:
        """Open the store, reconcile what the last run left behind, and start serving."""
        await self.store.open()
        add_listener = getattr(self.store, "audit_listeners", None)
        if isinstance(add_listener, list):
            add_listener.append(self._on_audit)
        await self._recover(actor)
        self._flusher = asyncio.create_task(self._flush_loop(), name="godel-output-flush")
        self.dispatcher.start()
        self.prober.start()
        self.autoscaler.start()
        self._started = True
        self.bus.publish(DaemonStarted(pid=os.getpid(), version=__version__))
        await self.store.append_audit(
            AuditDraft(
                actor=actor,
                action="daemon.start",
                subject="daemon",
                payload={
                    "pid": os.getpid(),
                    "version": __version__,
                    "config_digest": self.config.digest,
                    "config_sources": [str(s) for s in self.config.sources],
                },
            )
        )

    async def stop(self, reason: str = "daemon stop", actor: str = "daemon") -> None:
        """Stop every live agent (no agent process outlives the daemon), then close."""
        if not self._started:
            return
        self.bus.publish(DaemonStopping(reason=reason))
        await self.autoscaler.stop()
        await self.dispatcher.stop()
        await self.prober.stop()
        for agent_id in list(self._live):
            with contextlib.suppress(Exception):
                await self._stop_agent(
                    agent_id,
                    actor=actor,
                    source=StatusSource.DAEMON,
                    reason=f"stopped with the daemon ({reason})",
                    action="agent.stop",
                )
        await self._flush_output()
        await self.store.append_audit(
            AuditDraft(
                actor=actor, action="daemon.stop", subject="daemon", payload={"reason": reason}
            )
        )
        if self._flusher:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._started = False
        await self.store.close()

    async def _recover(self, actor: str) -> None:
        """Mark what a crashed daemon left behind: agents lost, execs interrupted."""
        for rec in await self.store.running_execs():
            await self.store.finish_exec(
                rec.id,
                ExecStatus.INTERRUPTED,
                None,
                "the daemon stopped unexpectedly while this ran",
                utcnow(),
                audit=AuditDraft(
                    actor=actor,
                    action="exec.recover",
                    subject=rec.agent_id,
                    result="interrupted",
                    payload={"exec_id": rec.id},
                ),
            )
        for agent in await self.store.list_agents(include_ended=False):
            try:
                runtime = self.registry.get(agent.runtime)
                reason = await runtime.recover(agent)
            except Exception as e:  # a runtime that cannot recover must not stop the daemon
                reason = f"could not recover after a daemon restart: {e}"
            await self._set_status(
                agent.id,
                StatusChange(status=AgentStatus.LOST, source=StatusSource.DAEMON, reason=reason),
                audit=AuditDraft(
                    actor=actor,
                    action="agent.recover",
                    subject=agent.id,
                    result="lost",
                    payload={"reason": reason, "pid": agent.pid},
                ),
            )

    def _on_audit(self, entry: AuditEntry) -> None:
        self.bus.publish(
            AuditAppended(
                seq_no=entry.seq,
                action=entry.action,
                subject=entry.subject,
                actor=entry.actor,
                result=entry.result,
            )
        )

    async def _set_status(
        self,
        agent_id: str,
        change: StatusChange,
        *,
        pid: int | None = None,
        pid_started_at: float | None = None,
        audit: AuditDraft | None = None,
    ) -> None:
        prev = await self.store.set_agent_status(
            agent_id, change, pid=pid, pid_started_at=pid_started_at, audit=audit
        )
        self._status_changed(agent_id, change, prev)

    def _status_changed(
        self, agent_id: str, change: StatusChange, prev: AgentStatus | None
    ) -> None:
        """After a stored status change: update the live copy and publish it."""
        live = self._live.get(agent_id)
        if live:
            live.agent = live.agent.model_copy(
                update={
                    "status": change.status,
                    "status_source": change.source,
                    "status_reason": change.reason,
                    "status_at": change.at,
                }
            )
        self.bus.publish(
            AgentStatusChanged(
                agent_id=agent_id,
                status=change.status,
                source=change.source,
                reason=change.reason,
                previous=prev,
            )
        )

    # runtimes and config ----------------------------------------------------------

    def runtimes(self) -> list[RuntimeInfo]:
        return self.registry.info()

    async def reload_config(self, actor: str, cwd: Path | None = None) -> LoadedConfig:
        new = load_config(self.registry.names(), cwd=cwd)
        if new.digest != self.config.digest:
            old = self.config
            self.config = new
            self.models = ModelCatalog(new.config, scripted_url=self._scripted_base_url)
            await self.store.append_audit(
                AuditDraft(
                    actor=actor,
                    action="config.change",
                    subject="config",
                    payload={
                        "old_digest": old.digest,
                        "new_digest": new.digest,
                        "sources": [str(s) for s in new.sources],
                    },
                )
            )
            self.bus.publish(
                ConfigChanged(digest=new.digest, sources=[str(s) for s in new.sources])
            )
        return self.config

    # agents ------------------------------------------------------------------------

    async def spawn_agent(self, spec: AgentSpec, actor: str, *, swarm: str | None = None) -> Agent:
        runtime = self.registry.get(spec.runtime)  # raises UnknownRuntime
        # Resolve the model first: a missing key or unknown model fails before anything runs.
        model: ResolvedModel | None = None
        if Capability.MODEL in runtime.capabilities:
            model = await self.models.resolve(spec.model or self.config.config.defaults.model)
            spec = spec.model_copy(update={"model": model.name})
        elif spec.model:
            raise InvalidInput(
                f"the {spec.runtime} runtime does not use a model; drop --model {spec.model}",
                runtime=spec.runtime,
            )
        agent_id = new_agent_id(spec.runtime)
        root = self.config.config.defaults.workspace_root or self.paths.workspaces
        workspace = await asyncio.to_thread(_prepare_workspace, spec, Path(root), agent_id)
        now = utcnow()
        agent = Agent(
            id=agent_id,
            runtime=spec.runtime,
            name=spec.name,
            model=spec.model,
            skills=spec.skills,
            workspace=workspace,
            status=AgentStatus.STARTING,
            status_source=StatusSource.SPAWN,
            status_reason="spawn requested",
            status_at=now,
            created_at=now,
            spec=spec,
            swarm=swarm,
        )
        await self.store.insert_agent(agent)
        self.bus.publish(
            AgentStatusChanged(
                agent_id=agent_id,
                status=AgentStatus.STARTING,
                source=StatusSource.SPAWN,
                reason="spawn requested",
                previous=None,
            )
        )
        payload: dict[str, Any] = {
            "runtime": spec.runtime,
            "name": spec.name,
            "skills": spec.skills,
            "workspace": str(workspace),
            "model": spec.model,
        }
        if model is not None:
            payload["provider"] = model.provider
            payload["price_source"] = model.prices.source if model.prices else "unknown"
        try:
            handle = await runtime.spawn(agent_id, spec, workspace, model=model)
        except Exception as e:
            reason = str(e) if isinstance(e, RuntimeFailure) else f"{type(e).__name__}: {e}"
            await self._set_status(
                agent_id,
                StatusChange(status=AgentStatus.FAILED, source=StatusSource.SPAWN, reason=reason),
                audit=AuditDraft(
                    actor=actor,
                    action="agent.spawn",
                    subject=agent_id,
                    result="error",
                    payload={**payload, "error": reason},
                ),
            )
            if isinstance(e, RuntimeFailure):
                raise
            raise RuntimeFailure(
                f"{spec.runtime} agent {agent_id} failed to start: {reason}"
            ) from e
        live = LiveAgent(agent=agent, runtime=runtime, handle=handle)
        self._live[agent_id] = live
        await self._set_status(
            agent_id,
            StatusChange(status=AgentStatus.IDLE, source=StatusSource.SPAWN, reason="ready"),
            pid=handle.pid,
            pid_started_at=handle.pid_started_at,
            audit=AuditDraft(
                actor=actor,
                action="agent.spawn",
                subject=agent_id,
                payload={**payload, "pid": handle.pid},
            ),
        )
        live.agent = live.agent.model_copy(
            update={"pid": handle.pid, "pid_started_at": handle.pid_started_at}
        )
        live.watcher = asyncio.create_task(self._watch_exit(live), name=f"watch-{agent_id}")
        self._track(agent_id)
        self.bus.publish(
            AgentSpawned(
                agent_id=agent_id,
                runtime=spec.runtime,
                name=spec.name,
                workspace=str(workspace),
                pid=handle.pid,
            )
        )
        return live.agent

    async def _watch_exit(self, live: LiveAgent) -> None:
        """An agent process that ends on its own is ``failed``, with its exit code."""
        code = await live.runtime.wait_exit(live.handle)
        if live.stopping:
            return
        self._live.pop(live.agent.id, None)
        reason = f"process {live.handle.pid} exited with code {code}"
        await self._set_status(
            live.agent.id,
            StatusChange(
                status=AgentStatus.FAILED, source=StatusSource.PROCESS_EXIT, reason=reason
            ),
            audit=AuditDraft(
                actor="daemon",
                action="agent.exit",
                subject=live.agent.id,
                result="failed",
                payload={"pid": live.handle.pid, "exit_code": code},
            ),
        )
        self._untrack(live.agent.id)
        await self._requeue(live.agent.id, reason)
        if live.agent.swarm is not None:
            self._schedule_replacement(live.agent.swarm, live.agent.id)

    async def _requeue(self, agent_id: str, reason: str) -> None:
        """Tasks leased to an agent that is gone go back to the queue."""
        moved = await self.store.requeue_agent(agent_id, f"agent {agent_id}: {reason}", "daemon")
        if moved:
            log.info("requeued %s from %s", moved, agent_id)
        self.dispatcher.wake()

    # health ------------------------------------------------------------------------------

    def _track(self, agent_id: str) -> None:
        """Probe the agent and give it a circuit breaker fed by its task results."""
        settings = self.config.config.health

        def on_transition(old: BreakerState, new: BreakerState, reason: str) -> None:
            self.bus.publish(
                AgentActivity(
                    agent_id=agent_id,
                    exec_id="",
                    kind="breaker",
                    data={"from": old.value, "to": new.value, "reason": reason},
                )
            )
            self._background(
                self.store.append_audit(
                    AuditDraft(
                        actor="daemon",
                        action="agent.breaker",
                        subject=agent_id,
                        result=new.value,
                        payload={"from": old.value, "reason": reason},
                    )
                )
            )

        breaker = CircuitBreaker.from_settings(settings, on_transition=on_transition)
        tracker = HealthTracker(agent_id, settings, breaker=breaker)
        self.trackers[agent_id] = tracker
        self.prober.add(agent_id, tracker)

    def _untrack(self, agent_id: str) -> None:
        self.cap_overrides.discard(agent_id)
        self.prober.remove(agent_id)
        self.trackers.pop(agent_id, None)
        self.metrics.forget_agent(agent_id)

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe(self, agent_id: str) -> ProbeResult:
        live = self._live.get(agent_id)
        if live is None or live.stopping:
            return ProbeResult(ok=False, detail="not running", dead=True)
        return ProbeResult.from_report(await live.runtime.health(live.handle))

    async def _on_health_change(self, agent_id: str, healthy: bool, detail: str) -> None:
        live = self._live.get(agent_id)
        if live is None or live.stopping:
            return
        if healthy:
            status = AgentStatus.BUSY if live.exec_id else AgentStatus.IDLE
        else:
            status = AgentStatus.UNHEALTHY
        await self._set_status(
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
        self.dispatcher.wake()

    def admit(self, agent_id: str) -> bool:
        """May a task go to this agent now? Consumes a half-open breaker's single trial."""
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
        if tracker is not None:
            tracker.record_task(ok)

    def _schedule_replacement(self, swarm: str, dead_id: str) -> None:
        """A swarm agent died: start a replacement after a backoff, unless it keeps dying."""
        delay = self.restarts.next_delay(swarm)
        if delay is None:
            reason = self.restarts.give_up_reason(swarm)
            log.warning("swarm %s: not replacing %s: %s", swarm, dead_id, reason)
            self._background(
                self.store.append_audit(
                    AuditDraft(
                        actor="daemon",
                        action="swarm.restart",
                        subject=swarm,
                        result="gave up",
                        payload={"dead_agent": dead_id, "reason": reason},
                    )
                )
            )
            return

        async def replace() -> None:
            await asyncio.sleep(delay)
            swarm_rec = await self.store.get_swarm(swarm)
            if swarm_rec is None or swarm_rec.status != "active" or not self._started:
                return
            members = sum(1 for lv in self._live.values() if lv.agent.swarm == swarm)
            if members >= swarm_rec.desired:
                return
            self.restarts.record_restart(swarm)
            agents, errors = await self._grow(swarm_rec, 1, "daemon")
            await self.store.append_audit(
                AuditDraft(
                    actor="daemon",
                    action="swarm.restart",
                    subject=swarm,
                    result="ok" if agents else "error",
                    payload={
                        "dead_agent": dead_id,
                        "replacement": agents[0].id if agents else None,
                        "delay_s": round(delay, 3),
                        "errors": errors,
                    },
                )
            )

        self._background(replace())

    def is_live(self, agent_id: str) -> bool:
        live = self._live.get(agent_id)
        return live is not None and not live.stopping

    def pool_agents(self, pool: str | None) -> list[Agent]:
        """The live agents of a swarm (or, for None, those in no swarm) that can work.

        An agent whose breaker is open is left out, but only up to the ejection cap
        (``[health] max_ejection_percent``, at least one): past it, the agents whose
        breakers opened last keep working, so a bad spell never empties a pool.
        """
        members = [
            live.agent
            for live in self._live.values()
            if live.agent.swarm == pool
            and not live.stopping
            and live.agent.status in (AgentStatus.IDLE, AgentStatus.BUSY)
        ]
        self.cap_overrides.difference_update(a.id for a in members)  # recomputed each round
        ejected = [a for a in members if not self._breaker_open_to_work(a.id)]
        cap = self.ejection.max_ejected(len(members))
        if len(ejected) > cap:

            def opened(a: Agent) -> float:
                tracker = self.trackers.get(a.id)
                return (tracker.breaker.opened_at if tracker else None) or 0.0

            kept_out = sorted(ejected, key=opened)[:cap]  # the earliest opened stay out
            self.cap_overrides.update(a.id for a in ejected if a not in kept_out)
            ejected = kept_out
        out = {a.id for a in ejected}
        return [a for a in members if a.id not in out]

    def _breaker_open_to_work(self, agent_id: str) -> bool:
        tracker = self.trackers.get(agent_id)
        if tracker is None:
            return True
        state = tracker.breaker.state
        if state is not BreakerState.OPEN:
            self.cap_overrides.discard(agent_id)
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and tracker.breaker.trial_available
        )

    async def list_agents(self, *, include_ended: bool = True) -> list[Agent]:
        return await self.store.list_agents(include_ended=include_ended)

    async def get_agent(self, agent_id: str) -> Agent:
        agent = await self.store.get_agent(agent_id)
        if agent is None:
            raise AgentNotFound(f"agent {agent_id!r} not found", agent_id=agent_id)
        return agent

    async def _live_agent(self, agent_id: str, action: str) -> LiveAgent:
        live = self._live.get(agent_id)
        if live is not None and not live.stopping and not live.agent.status.is_terminal:
            return live  # the live copy mirrors the store: skip a read on the hot path
        agent = await self.get_agent(agent_id)
        live = self._live.get(agent.id)
        if live is None or agent.status.is_terminal:
            why = f": {agent.status_reason}" if agent.status_reason else ""
            raise AgentUnavailable(
                f"cannot {action} agent {agent.id}: it is {agent.status.value}{why}",
                agent_id=agent.id,
                status=agent.status.value,
            )
        return live

    async def health(self, agent_id: str) -> HealthReport:
        live = await self._live_agent(agent_id, "probe")
        return await live.runtime.health(live.handle)

    async def kill_agent(self, agent_id: str, actor: str) -> Agent:
        live = await self._live_agent(agent_id, "kill")
        await self._stop_agent(
            live.agent.id,
            actor=actor,
            source=StatusSource.USER,
            reason=f"killed by {actor}",
            action="agent.kill",
        )
        return await self.get_agent(live.agent.id)

    async def _stop_agent(
        self, agent_id: str, *, actor: str, source: StatusSource, reason: str, action: str
    ) -> None:
        live = self._live.get(agent_id)
        if live is None:
            return
        live.stopping = True
        await live.runtime.kill(live.handle)
        if live.exec_task is not None:
            # The exec ends INTERRUPTED once its process is gone; wait so its record lands.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(live.exec_task), timeout=10)
        if live.watcher is not None:
            live.watcher.cancel()
        self._live.pop(agent_id, None)
        await self._set_status(
            agent_id,
            StatusChange(status=AgentStatus.STOPPED, source=source, reason=reason),
            audit=AuditDraft(
                actor=actor, action=action, subject=agent_id, payload={"pid": live.handle.pid}
            ),
        )
        self._untrack(agent_id)
        if not self.dispatcher.stopping:
            await self._requeue(agent_id, reason)

    # exec ----------------------------------------------------------------------------

    async def exec(
        self,
        agent_id: str,
        input: str,
        *,
        actor: str,
        timeout: float | None = None,
        task_id: str | None = None,
    ) -> AsyncIterator[RuntimeEvent]:
        """Run ``input`` on an agent; yields output chunks and ends with the ``ExecResult``.

        The exec runs in its own task, so it is recorded to the end even if the caller
        goes away; a caller that stops reading early aborts it (like closing ssh).
        """
        if not input.strip():
            raise InvalidInput("nothing to run: the input is empty")
        if timeout is not None and timeout <= 0:
            raise InvalidInput(f"timeout must be positive, got {timeout}", timeout=timeout)
        live = await self._live_agent(agent_id, "exec on")
        if live.exec_id is not None:
            raise AgentUnavailable(
                f"agent {live.agent.id} is busy with exec {live.exec_id}",
                agent_id=live.agent.id,
                exec_id=live.exec_id,
            )
        exec_id = new_id("exec")
        live.exec_id = exec_id
        if timeout is None:
            timeout = self.config.config.defaults.exec_timeout
        stream = _ExecStream()
        try:
            busy = StatusChange(
                status=AgentStatus.BUSY,
                source=StatusSource.RUNTIME_EVENT,
                reason=f"running {exec_id}",
            )
            prev = await self.store.insert_exec(
                ExecRecord(
                    id=exec_id,
                    agent_id=live.agent.id,
                    input=input,
                    status=ExecStatus.RUNNING,
                    started_at=utcnow(),
                    actor=actor,
                    model=live.agent.model,
                ),
                audit=AuditDraft(
                    actor=actor,
                    action="agent.exec",
                    subject=live.agent.id,
                    result="started",
                    payload={
                        "exec_id": exec_id,
                        "input": input,
                        "timeout": timeout,
                        "task_id": task_id,
                    },
                ),
                status=busy,
            )
            self._status_changed(live.agent.id, busy, prev)
        except BaseException:
            live.exec_id = None
            raise
        self.bus.publish(
            ExecStarted(agent_id=live.agent.id, exec_id=exec_id, input=input, actor=actor)
        )
        live.exec_task = asyncio.create_task(
            self._run_exec(live, exec_id, input, timeout, actor, stream), name=exec_id
        )
        finished = False
        try:
            while True:
                ev = await stream.queue.get()
                yield ev
                if isinstance(ev, ExecResult):
                    finished = True
                    return
        finally:
            if not finished and live.exec_id == exec_id:
                with contextlib.suppress(Exception):
                    await live.runtime.abort(live.handle)

    async def _run_exec(
        self,
        live: LiveAgent,
        exec_id: str,
        input: str,
        timeout: float | None,
        actor: str,
        stream: _ExecStream,
    ) -> None:
        agent_id = live.agent.id
        started = time.monotonic()
        result: ExecResult | None = None
        try:
            async for ev in live.runtime.exec(live.handle, input, exec_id=exec_id, timeout=timeout):
                if isinstance(ev, OutputChunk):
                    self._output.append(OutputRow(agent_id, exec_id, ev.stream, utcnow(), ev.data))
                    self.bus.publish(
                        AgentOutput(
                            agent_id=agent_id, exec_id=exec_id, stream=ev.stream, data=ev.data
                        )
                    )
                    if len(self._output) >= OUTPUT_FLUSH_ROWS:
                        await self._flush_output()
                    stream.queue.put_nowait(ev)
                elif isinstance(ev, ExecResult):
                    result = ev
                else:
                    await self._on_activity(agent_id, exec_id, ev, actor)
                    stream.queue.put_nowait(ev)
        except Exception as e:
            log.exception("exec %s on %s failed", exec_id, agent_id)
            result = ExecResult(
                exec_id=exec_id,
                status=ExecStatus.INTERRUPTED,
                exit_code=None,
                reason=f"runtime error: {type(e).__name__}: {e}",
            )
        if result is None:
            result = ExecResult(
                exec_id=exec_id,
                status=ExecStatus.INTERRUPTED,
                exit_code=None,
                reason="the runtime ended the exec without a result",
            )
        result.duration_s = result.duration_s or round(time.monotonic() - started, 6)
        idle: StatusChange | None = None
        if not live.stopping and agent_id in self._live:
            idle = StatusChange(
                status=AgentStatus.IDLE,
                source=StatusSource.RUNTIME_EVENT,
                reason=f"{exec_id} {result.status.value}",
            )
        # The exec's output, its end, its audit entry and the agent's return to idle
        # commit together: one transaction per exec end.
        rows, self._output = self._output, []
        prev = await self.store.finish_exec(
            exec_id,
            result.status,
            result.exit_code,
            result.reason,
            utcnow(),
            usage=result.usage,
            cost_usd=result.cost_usd,
            output=rows,
            agent_status=(agent_id, idle) if idle else None,
            audit=AuditDraft(
                actor=actor,
                action="agent.exec.finish",
                subject=agent_id,
                result=result.status.value,
                payload={
                    "exec_id": exec_id,
                    "exit_code": result.exit_code,
                    "reason": result.reason,
                    "duration_s": result.duration_s,
                    "tokens": result.usage.total_tokens,
                    "cost_usd": None if result.cost_usd is None else str(result.cost_usd),
                },
            ),
        )
        live.exec_id = None
        live.exec_task = None
        if idle is not None:
            self._status_changed(agent_id, idle, prev)
        self.bus.publish(
            ExecFinished(
                agent_id=agent_id,
                exec_id=exec_id,
                status=result.status,
                exit_code=result.exit_code,
                duration_s=result.duration_s,
                reason=result.reason,
            )
        )
        stream.queue.put_nowait(result)

    async def _on_activity(self, agent_id: str, exec_id: str, ev: RuntimeEvent, actor: str) -> None:
        """Tool calls, usage, notices: kept in the agent's log and published; a refused
        action is audited."""
        if isinstance(ev, AssistantText):
            self._output.append(OutputRow(agent_id, exec_id, "stdout", utcnow(), ev.text))
            self.bus.publish(
                AgentOutput(agent_id=agent_id, exec_id=exec_id, stream="stdout", data=ev.text)
            )
            return
        data = ev.model_dump(mode="json", exclude={"kind", "exec_id"})
        line = activity_line(ev)
        if line:
            self._output.append(OutputRow(agent_id, exec_id, "system", utcnow(), line))
        self.bus.publish(AgentActivity(agent_id=agent_id, exec_id=exec_id, kind=ev.kind, data=data))
        if isinstance(ev, PolicyViolation):
            await self.store.append_audit(
                AuditDraft(
                    actor=actor,
                    action="policy.violation",
                    subject=agent_id,
                    result="refused",
                    payload={"exec_id": exec_id, "rule": ev.rule, "detail": ev.detail},
                )
            )

    async def steer(self, agent_id: str, message: str, actor: str) -> bool:
        if not message.strip():
            raise InvalidInput("nothing to steer with: the message is empty")
        live = await self._live_agent(agent_id, "steer")
        delivered = await live.runtime.steer(live.handle, message)
        await self.store.append_audit(
            AuditDraft(
                actor=actor,
                action="agent.steer",
                subject=live.agent.id,
                result="ok" if delivered else "nothing running",
                payload={"exec_id": live.exec_id, "message": message},
            )
        )
        return delivered

    async def abort(self, agent_id: str, actor: str) -> bool:
        live = await self._live_agent(agent_id, "abort")
        aborted = await live.runtime.abort(live.handle)
        await self.store.append_audit(
            AuditDraft(
                actor=actor,
                action="agent.abort",
                subject=live.agent.id,
                result="ok" if aborted else "nothing running",
                payload={"exec_id": live.exec_id},
            )
        )
        return aborted

    # output --------------------------------------------------------------------------

    async def _flush_output(self) -> None:
        rows, self._output = self._output, []
        if rows:
            await self.store.append_output(rows)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(OUTPUT_FLUSH_INTERVAL)
            try:
                await self._flush_output()
            except Exception:
                log.exception("could not write agent output to the store")

    async def logs(
        self, agent_id: str, *, after_seq: int = 0, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        """Stored output of an agent; with ``follow``, keep going until the agent ends."""
        agent = await self.get_agent(agent_id)
        sub = (
            self.bus.subscribe(
                f"logs-{agent.id}", maxsize=64, types={"agent.output", "agent.status_changed"}
            )
            if follow
            else None
        )
        try:
            await self._flush_output()
            seq = after_seq
            while True:
                lines = await self.store.read_output(agent.id, after_seq=seq)
                for line in lines:
                    seq = line.seq
                    yield line
                if sub is None:
                    return
                current = await self.store.get_agent(agent.id)
                if current is None or current.status.is_terminal:
                    await self._flush_output()
                    if not await self.store.read_output(agent.id, after_seq=seq, limit=1):
                        return
                    continue
                # The bus only wakes us up; the store is the source of every line.
                with contextlib.suppress(TimeoutError, SubscriptionClosed):
                    await asyncio.wait_for(sub.get(), timeout=1.0)
                await asyncio.sleep(OUTPUT_FLUSH_INTERVAL)
        finally:
            if sub is not None:
                sub.close()

    async def list_execs(self, agent_id: str, limit: int = 50) -> list[ExecRecord]:
        agent = await self.get_agent(agent_id)
        return await self.store.list_execs(agent.id, limit)

    # tasks ---------------------------------------------------------------------------

    async def submit_tasks(self, specs: list[TaskSpec], actor: str) -> list[Task]:
        if not specs:
            raise InvalidInput("no tasks to submit")
        swarm_name = specs[0].swarm
        capacity = self.config.config.queue.default_capacity
        if swarm_name is not None:
            swarm = await self.store.get_swarm(swarm_name)
            if swarm is None or swarm.status != "active":
                raise SwarmError(f"swarm {swarm_name!r} not found", swarm=swarm_name)
            capacity = swarm.capacity
        self.store.overall_capacity = self.config.config.queue.capacity
        tasks, fill = await self.store.submit_tasks(
            specs, swarm_capacity=capacity, audit_actor=actor
        )
        if fill >= 0.9:
            scope = f"swarm {swarm_name!r}" if swarm_name else "the default pool"
            self.bus.publish(QueuePressure(scope=scope, fraction=round(fill, 4), capacity=capacity))
        self.dispatcher.wake()
        return tasks

    async def get_task(self, task_id: str) -> Task:
        task = await self.store.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"task {task_id!r} not found", task_id=task_id)
        return task

    async def cancel_task(self, task_id: str, actor: str) -> Task:
        prev, agent_id = await self.store.cancel_task(task_id, actor)
        if prev is TaskStatus.RUNNING and agent_id is not None and self.is_live(agent_id):
            live = self._live[agent_id]
            with contextlib.suppress(Exception):
                await live.runtime.abort(live.handle)
        self.dispatcher.wake()
        return await self.get_task(task_id)

    async def retry_task(self, task_id: str, actor: str) -> Task:
        task = await self.store.retry_task(task_id, actor)
        self.dispatcher.wake()
        return task

    def publish_route(self, task: Task, routed: Routed) -> None:
        """Every routing decision is an event (the assigning ones are audited too)."""
        self.bus.publish(
            TaskRouted(
                task_id=task.id,
                agent_id=routed.agent_id,
                swarm=task.swarm,
                strategy=routed.strategy,
                reason=routed.reason,
            )
        )

    def route_audit(self, task: Task, routed: Routed) -> AuditDraft:
        payload: dict[str, Any] = {
            "agent_id": routed.agent_id,
            "strategy": routed.strategy,
            "reason": routed.reason,
        }
        if routed.explain is not None:
            payload["explain"] = routed.explain
        return AuditDraft(
            actor="dispatcher",
            action="task.route",
            subject=task.id,
            result=routed.agent_id or "unroutable",
            payload=payload,
        )

    async def task_finished(
        self, task: Task, agent_id: str, result: ExecResult, status: TaskStatus
    ) -> None:
        """After the queue recorded an attempt: event, metrics, anomaly detection."""
        self.bus.publish(
            TaskFinished(
                task_id=task.id,
                status=status.value,
                agent_id=agent_id,
                exec_id=result.exec_id,
                reason=result.reason,
            )
        )
        live = self._live.get(agent_id)
        runtime = live.agent.runtime if live else "unknown"
        ok = status is TaskStatus.SUCCEEDED
        m = self.metrics
        m.inc_task(task.swarm, runtime, "retried" if status is TaskStatus.READY else status.value)
        m.observe_task(task.swarm, runtime, result.duration_s)
        m.observe_agent_task(agent_id, runtime, ok, result.duration_s)
        if result.usage.total_tokens:
            m.inc_tokens(
                task.swarm,
                runtime,
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
            )
        if result.cost_usd is not None:
            m.inc_cost(task.swarm, runtime, result.cost_usd)
        anomaly = self.anomalies.record(runtime, ok, time.monotonic())
        if anomaly is not None:
            self.bus.publish(anomaly)
            await self.store.append_audit(
                AuditDraft(
                    actor="daemon",
                    action="runtime.anomaly",
                    subject=runtime,
                    result=anomaly.kind,
                    payload=anomaly.model_dump(mode="json", exclude={"at", "seq", "type"}),
                )
            )

    async def metrics_text(self) -> bytes:
        """Prometheus exposition, with the gauges refreshed from the store first."""
        agents = await self.store.list_agents(include_ended=False)
        counts: dict[tuple[str | None, str], int] = {}
        for a in agents:
            counts[(a.swarm, a.status.value)] = counts.get((a.swarm, a.status.value), 0) + 1
        pools: list[str | None] = [None, *[s.name for s in await self.store.list_swarms()]]
        for pool in pools:
            for st in AgentStatus:
                self.metrics.set_agents(pool, st.value, counts.get((pool, st.value), 0))
            ready = await self.store.ready_by_priority(pool)
            for prio in TaskPriority:
                self.metrics.set_queue_depth(pool, prio.value, ready.get(prio.value, 0))
        return self.metrics.exposition()

    # swarms ----------------------------------------------------------------------------

    async def set_strategy(self, swarm: str, strategy: str, actor: str) -> Swarm:
        """Change a swarm's routing strategy at run time (audited)."""
        check_strategy(strategy)
        old = await self.get_swarm(swarm)
        updated = await self.store.update_swarm(
            swarm,
            strategy=strategy,
            audit=AuditDraft(
                actor=actor,
                action="swarm.strategy",
                subject=swarm,
                payload={"from": old.strategy, "to": strategy},
            ),
        )
        self.routing.pool(swarm, strategy)
        return updated

    async def explain_route(self, task_id: str) -> dict[str, Any]:
        """How the router would place this task now, every candidate scored, and how it
        was placed before (from the audit log)."""
        task = await self.get_task(task_id)
        strategy = None
        if task.swarm is not None:
            strategy = (await self.get_swarm(task.swarm)).strategy
        agents = self.pool_agents(task.swarm)
        in_flight = await self.store.in_flight([a.id for a in agents])
        pool = self.routing.sync(task.swarm, strategy, agents, in_flight)
        decision = self.routing.explain(pool, task)
        past = [e for e in await self.store.list_audit(subject=task_id) if e.action == "task.route"]
        return {"task": task, "now": decision.to_dict(), "past": past}

    async def create_swarm(
        self, spec: SwarmSpec, actor: str
    ) -> tuple[Swarm, list[Agent], list[str]]:
        """Create a swarm and spawn its agents; returns (swarm, agents, spawn errors)."""
        runtime = self.registry.get(spec.runtime)
        check_strategy(spec.strategy)
        if Capability.MODEL in runtime.capabilities:
            await self.models.resolve(spec.model or self.config.config.defaults.model)
        elif spec.model:
            raise InvalidInput(f"the {spec.runtime} runtime does not use a model")
        min_agents = spec.min_agents if spec.min_agents is not None else 0
        max_agents = spec.max_agents if spec.max_agents is not None else max(spec.count, 1)
        if not min_agents <= spec.count <= max_agents:
            raise InvalidInput(
                f"count {spec.count} must lie between --min {min_agents} and --max {max_agents}"
            )
        swarm = Swarm(
            name=spec.name,
            runtime=spec.runtime,
            model=spec.model,
            skills=spec.skills,
            strategy=spec.strategy,
            min_agents=min_agents,
            max_agents=max_agents,
            target_per_agent=spec.target_per_agent,
            desired=spec.count,
            capacity=spec.capacity,
            status="active",
            created_at=utcnow(),
        )
        await self.store.insert_swarm(
            swarm,
            audit=AuditDraft(
                actor=actor,
                action="swarm.create",
                subject=spec.name,
                payload=spec.model_dump(mode="json"),
            ),
        )
        agents, errors = await self._grow(swarm, spec.count, actor)
        return swarm, agents, errors

    async def _grow(self, swarm: Swarm, n: int, actor: str) -> tuple[list[Agent], list[str]]:
        """Spawn ``n`` agents into a swarm, a few at a time (spawns are CPU-heavy)."""
        runtime = self.registry.get(swarm.runtime)
        # A runtime whose start is CPU-heavy may ask for fewer parallel spawns.
        parallel = min(
            self.config.config.queue.spawn_concurrency,
            int(getattr(runtime, "max_parallel_spawns", 1 << 30)),
        )
        limit = asyncio.Semaphore(parallel)
        agents: list[Agent] = []
        errors: list[str] = []

        async def one() -> None:
            async with limit:
                try:
                    agents.append(
                        await self.spawn_agent(
                            AgentSpec(
                                runtime=swarm.runtime, model=swarm.model, skills=swarm.skills
                            ),
                            actor,
                            swarm=swarm.name,
                        )
                    )
                except Exception as e:
                    errors.append(str(e))

        await asyncio.gather(*(one() for _ in range(n)))
        self.dispatcher.wake()
        return agents, errors

    async def _shrink(self, swarm: str, n: int, actor: str, reason: str) -> list[str]:
        """Stop ``n`` agents of a swarm: idle ones first, then the newest."""
        members = [live for live in self._live.values() if live.agent.swarm == swarm]
        members.sort(key=lambda lv: (lv.exec_id is not None, -lv.agent.created_at.timestamp()))
        stopped = []
        for live in members[:n]:
            await self._stop_agent(
                live.agent.id,
                actor=actor,
                source=StatusSource.USER,
                reason=reason,
                action="agent.stop",
            )
            stopped.append(live.agent.id)
        return stopped

    def swarm_members(self, swarm: str) -> list[Agent]:
        return [
            lv.agent for lv in self._live.values() if lv.agent.swarm == swarm and not lv.stopping
        ]

    async def resize_swarm(self, name: str, count: int, *, actor: str, reason: str) -> None:
        """Spawn or stop agents so the swarm has ``count``; records the new desired size."""
        swarm = await self.store.update_swarm(name, desired=count)
        current = len(self.swarm_members(name))
        if count > current:
            await self._grow(swarm, count - current, actor)
        elif count < current:
            await self._shrink(name, current - count, actor, reason)

    async def get_swarm(self, name: str) -> Swarm:
        swarm = await self.store.get_swarm(name)
        if swarm is None or swarm.status != "active":
            raise SwarmError(f"swarm {name!r} not found", swarm=name)
        return swarm

    async def scale_swarm(self, name: str, count: int, actor: str) -> tuple[Swarm, list[str]]:
        swarm = await self.get_swarm(name)
        if not swarm.min_agents <= count <= swarm.max_agents:
            raise InvalidInput(
                f"swarm {name} scales between {swarm.min_agents} and {swarm.max_agents} agents; "
                f"{count} is outside",
                swarm=name,
            )
        swarm = await self.store.update_swarm(
            name,
            desired=count,
            audit=AuditDraft(
                actor=actor,
                action="swarm.scale",
                subject=name,
                payload={"from": swarm.desired, "to": count},
            ),
        )
        current = len([lv for lv in self._live.values() if lv.agent.swarm == name])
        errors: list[str] = []
        if count > current:
            _, errors = await self._grow(swarm, count - current, actor)
        elif count < current:
            await self._shrink(name, current - count, actor, f"scaled down by {actor}")
        return swarm, errors

    async def destroy_swarm(self, name: str, actor: str) -> tuple[list[str], int]:
        """Stop every agent of the swarm and cancel its unfinished tasks."""
        await self.get_swarm(name)
        await self.store.update_swarm(
            name,
            status="destroyed",
            audit=AuditDraft(actor=actor, action="swarm.destroy", subject=name),
        )
        stopped = await self._shrink(name, 1_000_000, actor, f"swarm destroyed by {actor}")
        cancelled = 0
        for status in (TaskStatus.QUEUED, TaskStatus.READY, TaskStatus.RUNNING):
            for task in await self.store.list_tasks(swarm=name, status=status, limit=1_000_000):
                with contextlib.suppress(GodelError):
                    await self.store.cancel_task(task.id, actor)
                    cancelled += 1
        return stopped, cancelled

    async def swarm_status(self, name: str) -> dict[str, Any]:
        swarm = await self.get_swarm(name)
        agents = [a for a in await self.store.list_agents(include_ended=False) if a.swarm == name]
        by_status: dict[str, int] = {}
        for a in agents:
            by_status[a.status.value] = by_status.get(a.status.value, 0) + 1
        return {
            "swarm": swarm,
            "agents": agents,
            "agents_by_status": by_status,
            "tasks": await self.store.count_tasks(name, any_swarm=False),
            "ready_by_priority": await self.store.ready_by_priority(name),
        }

    # audit ---------------------------------------------------------------------------

    async def audit_list(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> list[AuditEntry]:
        return await self.store.list_audit(after_seq=after_seq, limit=limit, subject=subject)

    async def audit_verify(self) -> VerifyReport:
        entries = [e async for e in self.store.iter_audit()]
        return verify_chain(entries, await self.store.audit_head())

    async def record(self, actor: str, action: str, subject: str, **payload: Any) -> None:
        """Audit an action that faces perform outside the engine (e.g. an export)."""
        await self.store.append_audit(
            AuditDraft(actor=actor, action=action, subject=subject, payload=payload)
        )
