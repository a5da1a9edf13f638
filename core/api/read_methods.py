"""The read side's JSON-RPC methods: ``view.*``, ``events.subscribe``, and the listings
that render views (``agent.list``/``agent.get``, ``swarm.list``/``swarm.status``).

Each object has one shape wherever it appears (``core.views.rows``): an agent from
``agent.list``, ``agent.get``, ``view.agents`` or ``view.snapshot`` is the same object.
"""

from __future__ import annotations

import contextlib
import itertools

from pydantic import BaseModel, ConfigDict, Field

from core.api.jsonrpc import JSON, CallContext, Emit, NoParams, RpcMethods
from core.engine import Engine
from core.errors import InvalidInput
from core.models import AgentStatus
from core.views.filter import EventFilter

_subscribers = itertools.count(1)


# An id or a name: longer is a mistake, and an error naming it stays one line.
REF_MAX = 200


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentListParams(_Params):
    swarm: str | None = Field(default=None, description="only this swarm's agents")
    status: AgentStatus | None = Field(default=None, description="only this status")
    include_ended: bool = Field(
        default=False, description="also stopped, lost and failed agents (--all)"
    )


class AgentGetParams(_Params):
    id: str = Field(min_length=1, max_length=REF_MAX, description="agent id or name")


class SwarmRef(_Params):
    name: str = Field(min_length=1, max_length=REF_MAX)


class SubscribeParams(_Params):
    types: list[str] | None = Field(
        default=None, description="event types (a prefix like 'task.*' matches a family)"
    )
    agent: str | None = Field(default=None, description="agent id or name")
    swarm: str | None = None
    task: str | None = None
    after_seq: int | None = Field(
        default=None,
        ge=0,
        description="resume: first the kept events after this seq (none of the past if unset)",
    )
    last: int | None = Field(
        default=None, ge=0, le=10_000, description="first the last N kept events that match"
    )
    follow: bool = Field(default=True, description="then stream live events until cancelled")


def register_read_methods(rpc: RpcMethods, engine: Engine) -> None:
    @rpc.method("view.snapshot")
    async def view_snapshot(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Every view (agents, swarms, tasks, router, spend) as of event ``seq``: apply the
        events after ``seq`` (``events.subscribe`` with ``after_seq``) to stay current."""
        return engine.view_snapshot()

    @rpc.method("view.agents", AgentListParams)
    async def view_agents(p: AgentListParams, ctx: CallContext, emit: Emit) -> JSON:
        """Agents with swarm, current task, tokens and cost, and ``seq``."""
        return {"seq": engine.views.seq, "agents": _agents(p)}

    @rpc.method("view.swarms")
    async def view_swarms(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Active swarms with their live agents and tasks by status, and ``seq``."""
        return {"seq": engine.views.seq, "swarms": engine.views.swarm_rows()}

    @rpc.method("view.tasks")
    async def view_tasks(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Tasks by swarm and status, the unfinished ones, the last finished, and ``seq``."""
        counts, active, recent = engine.views.task_state()
        return {
            "seq": engine.views.seq,
            "tasks_by_status": counts,
            "tasks_active": active,
            "tasks_recent": recent,
        }

    @rpc.method("view.router")
    async def view_router(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Routing decisions since the daemon started: rate, latency, latest, strategies."""
        return {"seq": engine.views.seq, "router": engine.views.router_state()}

    @rpc.method("view.spend")
    async def view_spend(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Tokens and cost of every exec, by swarm, runtime and model."""
        return {"seq": engine.views.seq, "spend": engine.views.spend_state()}

    def _agents(p: AgentListParams) -> JSON:
        status = p.status.value if p.status is not None else None
        return engine.agent_rows(swarm=p.swarm, status=status, include_ended=p.include_ended)

    @rpc.method("agent.list", AgentListParams)
    async def agent_list(p: AgentListParams, ctx: CallContext, emit: Emit) -> JSON:
        """Agents (live ones unless ``include_ended``), each with its status's source and
        age, swarm, current task, tokens and cost."""
        return _agents(p)

    @rpc.method("agent.get", AgentGetParams)
    async def agent_get(p: AgentGetParams, ctx: CallContext, emit: Emit) -> JSON:
        """One agent, in the same shape as ``agent.list`` (its execs: ``exec.list``)."""
        return engine.agent_row(p.id)

    @rpc.method("swarm.list")
    async def swarm_list(p: NoParams, ctx: CallContext, emit: Emit) -> JSON:
        """Active swarms with their live agents and tasks by status."""
        return engine.list_swarms()

    @rpc.method("swarm.status", SwarmRef)
    async def swarm_status(p: SwarmRef, ctx: CallContext, emit: Emit) -> JSON:
        """One swarm, in the same shape as ``swarm.list``."""
        return engine.swarm_status(p.name)

    @rpc.method("events.subscribe", SubscribeParams, streaming=True)
    async def events_subscribe(p: SubscribeParams, ctx: CallContext, emit: Emit) -> JSON:
        """Stream events (each one a notification, in the recorder's JSONL format) that
        match the filters: first the kept ones after ``after_seq`` (or the ``last`` N),
        then live ones while ``follow``. A gap arrives as an ``events.dropped`` event
        with the count missed: resync from ``view.snapshot``. Returns ``{seq}``, the last
        seq sent, when the stream ends (``follow`` false, or the daemon stops)."""
        try:
            flt = EventFilter.make(set(p.types) if p.types else None, None, p.swarm, p.task)
        except ValueError as e:
            raise InvalidInput(str(e)) from None
        if p.after_seq is not None and p.after_seq > engine.bus.seq:
            raise InvalidInput(
                f"seq {p.after_seq} is ahead of this daemon's last event ({engine.bus.seq}): "
                "a cursor from another home? Subscribe without after_seq (--since)",
                after_seq=p.after_seq,
                last_seq=engine.bus.seq,
            )
        if p.agent is not None:
            flt = EventFilter(flt.types, engine.agent_row(p.agent).id, p.swarm, p.task)
        stream = engine.events(
            flt,
            after_seq=p.after_seq,
            last=p.last,
            follow=p.follow,
            name=f"rpc-{next(_subscribers)}",
        )
        last_seq = p.after_seq or 0
        # Closed at once when the client goes away (the handler is cancelled), not
        # whenever the garbage collector gets to it: its subscription ends with it.
        async with contextlib.aclosing(stream):
            async for event in stream:
                await emit(event)
                last_seq = max(last_seq, event.seq)
        return {"seq": last_seq}
