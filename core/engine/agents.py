"""The agent service: spawn agents, watch their processes, stop them, and recover what a
crashed daemon left behind.

Every status change is stored with its audit entry and published (``record_status``).
Stopping many agents (a swarm destroyed, the daemon stopping) runs the stops
concurrently. When an agent is gone, the hooks in ``on_gone`` run (its tasks go back to
the queue; a swarm schedules a replacement).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.audit import AuditDraft
from core.engine.context import EngineContext
from core.engine.execs import ExecService
from core.engine.health import HealthService
from core.engine.live import LiveAgent
from core.engine.status import record_status
from core.errors import InvalidInput, RuntimeFailure
from core.events import AgentCreated, AgentSpawned, ExecFinished
from core.llm.catalog_types import ResolvedModel
from core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    ExecStatus,
    StatusChange,
    StatusSource,
    new_agent_id,
    utcnow,
)
from core.runtimes.base import AgentRuntime, Capability
from core.store import ops

log = logging.getLogger("godel.engine")

STOP_CONCURRENCY = 128  # stops at once: each is mostly waiting for processes to end
RECOVER_CONCURRENCY = 32

# (the agent that is gone, why, whether it ended on its own)
GoneHook = Callable[[Agent, str, bool], Awaitable[None]]


def prepare_workspace(spec: AgentSpec, root: Path, agent_id: str) -> Path:
    """The agent's workspace: ``--workdir`` if given, else a fresh folder under ``root``."""
    if spec.workdir is not None:
        workspace = spec.workdir.expanduser().absolute()
        if workspace.exists() and not workspace.is_dir():
            raise InvalidInput(f"--workdir {workspace} is not a directory", workdir=str(workspace))
    else:
        workspace = root.expanduser().absolute() / agent_id
    try:
        workspace.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        # The root may have gone (or turned read-only) since the config was checked.
        where = "--workdir" if spec.workdir is not None else "workspace root"
        raise RuntimeFailure(
            f"cannot create the workspace {workspace} ({where}): {e.strerror or e}",
            workspace=str(workspace),
        ) from None
    return workspace


class AgentService:
    def __init__(self, ctx: EngineContext, health: HealthService, execs: ExecService) -> None:
        self.ctx = ctx
        self.health = health
        self.execs = execs
        self.on_gone: list[GoneHook] = []
        self._starting: set[asyncio.Future[Agent]] = set()

    # spawn ---------------------------------------------------------------------------------

    async def resolve_model(
        self, runtime: str, model: str | None, keys: Mapping[str, str] | None = None
    ) -> ResolvedModel | None:
        """The model an agent of ``runtime`` will use; fails before anything runs.
        ``keys``: the caller's API key variables (see ``spawn``)."""
        rt = self.ctx.registry.get(runtime)  # raises UnknownRuntime
        if Capability.MODEL in rt.capabilities:
            return await self.ctx.models.resolve(model or self.ctx.config.defaults.model, keys)
        if model:
            raise InvalidInput(
                f"the {runtime} runtime does not use a model; drop --model {model}",
                runtime=runtime,
            )
        return None

    async def spawn(
        self,
        spec: AgentSpec,
        actor: str,
        *,
        swarm: str | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> Agent:
        """``keys``: the calling shell's values of API key variables, taken over the
        daemon's own (as tmux's ``update-environment``). Only the resolved model's key
        reaches the runtime; none is stored, audited, published or logged."""
        runtime = self.ctx.registry.get(spec.runtime)
        model = await self.resolve_model(spec.runtime, spec.model, keys)
        if model is not None:
            spec = spec.model_copy(update={"model": model.name})
        agent_id = new_agent_id(spec.runtime)
        # Six hex digits: at a thousand agents a repeat is a few percent likely, so a
        # taken id is drawn again rather than failing the spawn on the store's key.
        for _ in range(8):
            if await self.ctx.store.get_agent(agent_id) is None:
                break
            agent_id = new_agent_id(spec.runtime)
        root = self.ctx.config.defaults.workspace_root or self.ctx.paths.workspaces
        workspace = await asyncio.to_thread(prepare_workspace, spec, Path(root), agent_id)
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
        # From here the agent is on record: finish what was started even if the caller
        # goes away (a Ctrl-C, a dropped connection), or it would stay `starting`, holding
        # its name and counted as on its way, until the next daemon start.
        task = asyncio.ensure_future(self._start(agent, runtime, model, actor))
        self._starting.add(task)
        task.add_done_callback(self._started)
        return await asyncio.shield(task)

    def _started(self, task: asyncio.Future[Agent]) -> None:
        self._starting.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller still waiting was given it

    async def wait_starting(self) -> None:
        """Let spawns under way finish (at engine stop, before the agents are stopped)."""
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)

    async def _start(
        self, agent: Agent, runtime: AgentRuntime, model: ResolvedModel | None, actor: str
    ) -> Agent:
        agent_id, spec, workspace, swarm, now = (
            agent.id,
            agent.spec,
            agent.workspace,
            agent.swarm,
            agent.created_at,
        )
        await self.ctx.journal.commit(
            ops.InsertAgent(agent),
            events=[
                AgentCreated(
                    at=now,
                    agent_id=agent_id,
                    runtime=spec.runtime,
                    name=spec.name,
                    model=spec.model,
                    skills=spec.skills,
                    swarm=swarm,
                    workspace=str(workspace),
                    status_reason=agent.status_reason,
                )
            ],
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
            await record_status(
                self.ctx,
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
        live = LiveAgent(
            agent=agent.model_copy(
                update={"pid": handle.pid, "pid_started_at": handle.pid_started_at}
            ),
            runtime=runtime,
            handle=handle,
        )
        self.ctx.live.add(live)
        await record_status(
            self.ctx,
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
        live.watcher = asyncio.create_task(self._watch_exit(live), name=f"watch-{agent_id}")
        self.health.track(agent_id)
        self.ctx.journal.publish(
            AgentSpawned(
                agent_id=agent_id,
                runtime=spec.runtime,
                name=spec.name,
                workspace=str(workspace),
                pid=handle.pid,
            )
        )
        self.ctx.wake_dispatcher()
        return live.agent

    async def _watch_exit(self, live: LiveAgent) -> None:
        """An agent process that ends on its own is ``failed``, with its exit code."""
        code = await live.runtime.wait_exit(live.handle)
        if live.stopping:
            return
        self.ctx.live.pop(live.id)
        reason = f"process {live.handle.pid} exited with code {code}"
        await record_status(
            self.ctx,
            live.id,
            StatusChange(
                status=AgentStatus.FAILED, source=StatusSource.PROCESS_EXIT, reason=reason
            ),
            audit=AuditDraft(
                actor="daemon",
                action="agent.exit",
                subject=live.id,
                result="failed",
                payload={"pid": live.handle.pid, "exit_code": code},
            ),
        )
        self.health.untrack(live.id)
        # The agent is gone: nothing it started may outlive it (before its work is
        # handed to another agent, which might otherwise meet what it left running).
        escaped = await self.ctx.containment.current.end(live.id)
        if escaped:
            await self.ctx.journal.audit(
                AuditDraft(
                    actor="daemon",
                    action="agent.cleanup",
                    subject=live.id,
                    payload={"processes_left_ended": escaped},
                )
            )
        await self._gone(live.agent, reason, on_its_own=True)

    async def _gone(self, agent: Agent, reason: str, *, on_its_own: bool) -> None:
        for hook in self.on_gone:
            try:
                await hook(agent, reason, on_its_own)
            except Exception:
                log.exception("after agent %s ended: a hook failed", agent.id)

    # stop ------------------------------------------------------------------------------------

    async def kill(self, agent_id: str, actor: str) -> Agent:
        live = await self.execs.live_agent(agent_id, "kill")
        await self.stop(
            live.id,
            actor=actor,
            source=StatusSource.USER,
            reason=f"killed by {actor}",
            action="agent.kill",
        )
        return await self.execs.get_agent(live.id)

    async def restart(
        self, agent_id: str, actor: str, keys: Mapping[str, str] | None = None
    ) -> Agent:
        """Stop a live agent and spawn a new one from its spec, in its swarm; the new
        agent is returned (a new id: a record is never reused)."""
        live = await self.execs.live_agent(agent_id, "restart")
        old = live.agent
        await self.stop(
            live.id,
            actor=actor,
            source=StatusSource.USER,
            reason=f"restarted by {actor}",
            action="agent.restart",
        )
        return await self.spawn(old.spec, actor, swarm=old.swarm, keys=keys)

    async def stop(
        self,
        agent_id: str,
        *,
        actor: str,
        source: StatusSource,
        reason: str,
        action: str,
        requeue: bool = True,
    ) -> bool:
        """End a held agent and everything it started; False if it was not held."""
        live = self.ctx.live.get(agent_id)
        if live is None or live.stopping:
            return False
        live.stopping = True
        await live.runtime.kill(live.handle)
        # What left the agent's process tree (setsid, a double fork) ends with it.
        escaped = await self.ctx.containment.current.end(agent_id)
        await self.execs.wait_exec_end(live)
        if live.watcher is not None:
            live.watcher.cancel()
        self.ctx.live.pop(agent_id)
        await record_status(
            self.ctx,
            agent_id,
            StatusChange(status=AgentStatus.STOPPED, source=source, reason=reason),
            audit=AuditDraft(
                actor=actor,
                action=action,
                subject=agent_id,
                payload={"pid": live.handle.pid, "processes_left_ended": escaped},
            ),
        )
        self.health.untrack(agent_id)
        if requeue:
            await self._gone(live.agent, reason, on_its_own=False)
        return True

    async def stop_many(
        self,
        agent_ids: Sequence[str],
        *,
        actor: str,
        source: StatusSource,
        reason: str,
        action: str = "agent.stop",
        requeue: bool = True,
    ) -> list[str]:
        """Stop agents concurrently; returns those stopped (a failed stop is logged)."""
        limit = asyncio.Semaphore(STOP_CONCURRENCY)

        async def one(agent_id: str) -> bool:
            async with limit:
                try:
                    return await self.stop(
                        agent_id,
                        actor=actor,
                        source=source,
                        reason=reason,
                        action=action,
                        requeue=requeue,
                    )
                except Exception:
                    log.exception("could not stop agent %s", agent_id)
                    return False

        done = await asyncio.gather(*(one(a) for a in agent_ids))
        return [a for a, ok in zip(agent_ids, done, strict=True) if ok]

    # recovery at start ---------------------------------------------------------------------

    async def recover(self, actor: str) -> None:
        """Mark what the last daemon left behind: execs interrupted, agents lost (and any
        process of theirs that survived, ended), and every task still leased sent back
        to the queue at once.

        No agent is held yet when this runs, so every running lease is stranded: its
        agent was lost in a crash, or stopped by ``daemon stop`` (which keeps leases).
        Waiting out the lease would only delay the task. Each requeue clears the lease
        token, so nothing the old daemon started can complete the task any more, and it
        runs after the agent's surviving processes were ended (``runtime.recover``)."""
        for rec in await self.ctx.store.running_execs():
            await self.ctx.journal.commit(
                ops.FinishExec(
                    rec.id,
                    ExecStatus.INTERRUPTED,
                    None,
                    "the daemon stopped unexpectedly while this ran",
                    utcnow(),
                ),
                audit=AuditDraft(
                    actor=actor,
                    action="exec.recover",
                    subject=rec.agent_id,
                    result="interrupted",
                    payload={"exec_id": rec.id},
                ),
                events=[
                    ExecFinished(
                        agent_id=rec.agent_id,
                        exec_id=rec.id,
                        status=ExecStatus.INTERRUPTED,
                        reason="the daemon stopped unexpectedly while this ran",
                        model=rec.model,
                    )
                ],
            )
        limit = asyncio.Semaphore(RECOVER_CONCURRENCY)

        lost: dict[str, str] = {}  # agent id -> why it was lost

        async def one(agent: Agent) -> None:
            async with limit:
                try:
                    runtime = self.ctx.registry.get(agent.runtime)
                    reason = await runtime.recover(agent)
                    await self.ctx.containment.current.end(agent.id)
                except Exception as e:  # a runtime that cannot recover must not stop the daemon
                    reason = f"could not recover after a daemon restart: {e}"
            lost[agent.id] = reason
            await record_status(
                self.ctx,
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

        await asyncio.gather(
            *(one(a) for a in await self.ctx.store.list_agents(include_ended=False))
        )
        for agent_id in await self.ctx.store.in_flight(None):
            if agent_id in lost:
                why = f"agent {agent_id} was lost when the daemon restarted ({lost[agent_id]})"
            else:
                ended = await self.ctx.store.get_agent(agent_id)
                how = f": {ended.status.value}, {ended.status_reason}" if ended else ""
                why = f"agent {agent_id} ended with the previous daemon{how}"
            requeued = await self.ctx.journal.commit(ops.RequeueAgent(agent_id, why, actor))
            if requeued:
                log.info("requeued %d tasks of %s at start: %s", len(requeued), agent_id, why)
