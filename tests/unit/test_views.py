"""The views' fold, event by event (pure: no engine, no store, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.events import (
    AgentCreated,
    AgentHealthChanged,
    AgentStatusChanged,
    DaemonStarted,
    EventsDropped,
    ExecFinished,
    ExecStarted,
    SwarmChanged,
    TaskChanged,
    TaskRouted,
)
from core.models import AgentStatus, ExecStatus, StatusSource, Swarm, Usage
from core.views import AgentRow, Views
from core.views.filter import EventFilter

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def swarm(name: str, status: str = "active", strategy: str = "balanced") -> Swarm:
    return Swarm(
        name=name,
        runtime="pi",
        model="m",
        skills=[],
        strategy=strategy,
        min_agents=0,
        max_agents=5,
        target_per_agent=1,
        desired=2,
        capacity=100,
        status=status,  # type: ignore[arg-type]
        created_at=T0,
    )


def fold(*events: object) -> Views:
    views = Views()
    for seq, e in enumerate(events, start=1):
        views.apply(e.model_copy(update={"seq": seq}))  # type: ignore[attr-defined]
    return views


def test_an_agent_is_created_works_spends_and_ends() -> None:
    views = fold(
        SwarmChanged(swarm=swarm("api")),
        AgentCreated(at=T0, agent_id="pi-1", runtime="pi", model="m", swarm="api", workspace="/w"),
        AgentStatusChanged(agent_id="pi-1", status=AgentStatus.IDLE, source=StatusSource.SPAWN),
        ExecStarted(agent_id="pi-1", exec_id="e1", input="hi"),
        TaskChanged(task_id="t1", swarm="api", status="running", previous="ready", agent_id="pi-1"),
        ExecFinished(
            agent_id="pi-1",
            exec_id="e1",
            status=ExecStatus.SUCCEEDED,
            model="m",
            usage=Usage(input_tokens=100, output_tokens=20),
            cost_usd="0.0125",
        ),
    )
    [row] = views.agent_rows()
    assert (row.swarm, row.status, row.current_task, row.current_exec) == (
        "api",
        AgentStatus.IDLE,
        "t1",
        None,
    )
    assert (row.execs, row.tokens.total, row.cost_usd) == (1, 120, Decimal("0.0125"))
    spend = views.spend_state()
    assert spend.by_swarm["api"].cost_usd == Decimal("0.0125")
    assert spend.by_runtime["pi"].tokens.input == 100
    assert spend.by_model["m"].execs == 1 and spend.total.execs == 1
    views.apply(
        AgentStatusChanged(agent_id="pi-1", status=AgentStatus.STOPPED, source=StatusSource.USER)
    )
    assert views.agent_rows() == []  # ended agents are hidden unless asked for
    assert [a.id for a in views.agent_rows(include_ended=True)] == ["pi-1"]
    assert [a.id for a in views.agent_rows(status="stopped")] == ["pi-1"]


def test_an_unknown_price_is_never_free() -> None:
    views = fold(
        AgentCreated(at=T0, agent_id="n-1", runtime="native", workspace="/w"),
        ExecFinished(
            agent_id="n-1", exec_id="e", status=ExecStatus.SUCCEEDED, usage=Usage(input_tokens=5)
        ),
    )
    row = views.agent_row("n-1")
    assert row is not None
    assert row.cost_usd is None and row.cost_unknown_execs == 1


def test_task_counts_follow_every_transition() -> None:
    views = fold(
        TaskChanged(task_id="a", swarm="s", status="ready"),
        TaskChanged(task_id="b", swarm="s", status="queued"),
        TaskChanged(task_id="a", swarm="s", status="running", previous="ready", agent_id="x"),
        TaskChanged(task_id="a", swarm="s", status="failed", previous="running", error="exit 1"),
        TaskChanged(task_id="b", swarm="s", status="failed", previous="queued", error="dep"),
        TaskChanged(task_id="a", swarm="s", status="ready", previous="failed"),  # retried
    )
    assert views.task_counts == {"s": {"failed": 1, "ready": 1}}
    assert list(views.tasks_active) == ["a"]
    assert [t.id for t in views.tasks_recent] == ["b"]  # "a" was retried: not finished


def test_a_destroyed_swarm_leaves_the_view_and_the_router() -> None:
    views = fold(
        SwarmChanged(swarm=swarm("a", strategy="speed")),
        SwarmChanged(swarm=swarm("b")),
        SwarmChanged(swarm=swarm("a", status="destroyed")),
    )
    assert [s.name for s in views.swarm_rows()] == ["b"]
    assert views.router_state().strategies == {"b": "balanced"}


def test_router_latency_and_rate_come_from_the_decisions() -> None:
    events = [
        TaskRouted(
            at=T0 + timedelta(seconds=i / 10),
            task_id=f"t{i}",
            agent_id=None if i % 10 == 0 else "x",
            elapsed_ms=float(i),
        )
        for i in range(1, 101)
    ]
    state = fold(*events).router_state()
    assert (state.decisions, state.routed, state.unroutable) == (100, 90, 10)
    assert state.latency_p50_ms == pytest.approx(50.5)
    assert state.latency_p99_ms == pytest.approx(99.01)
    assert state.per_second == pytest.approx(10.1, rel=0.05)
    assert len(state.recent) == 50 and state.recent[-1].task_id == "t100"


def test_the_snapshot_round_trips_and_folds_on() -> None:
    views = fold(
        SwarmChanged(swarm=swarm("s")),
        AgentCreated(at=T0, agent_id="a", runtime="pi", swarm="s", workspace="/w"),
        TaskChanged(task_id="t", swarm="s", status="ready"),
    )
    snap = views.snapshot()
    again = Views(type(snap).model_validate_json(snap.model_dump_json()))
    assert again.snapshot() == snap
    again.apply(TaskChanged(seq=9, task_id="t", swarm="s", status="running", previous="ready"))
    assert again.seq == 9 and again.task_counts == {"s": {"running": 1}}


def test_breakers_fold_from_health_events_and_count_in_the_router() -> None:
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=31)
    views = fold(
        AgentCreated(at=T0, agent_id="a", runtime="pi", swarm="s", workspace="/w"),
        AgentCreated(at=T0, agent_id="b", runtime="pi", swarm="s", workspace="/w"),
        AgentHealthChanged(at=T0, agent_id="a", failures=1, detail="1 consecutive exec failure"),
        AgentHealthChanged(
            at=t1,
            agent_id="a",
            breaker="open",
            failures=2,
            ejected=True,
            detail="2 consecutive failures; open for 30s",
        ),
        AgentHealthChanged(at=t1, agent_id="b", breaker="open", detail="x"),
        AgentHealthChanged(at=t2, agent_id="b", breaker="half_open", detail="open time elapsed"),
    )
    a = views.agent_row("a")
    assert a is not None
    assert (a.breaker, a.breaker_at, a.health_detail) == (
        "open",
        t1,
        "2 consecutive failures; open for 30s",
    )
    assert views.router_state().breakers == {"half_open": 1, "open": 1}

    # A detail without a state change keeps the time the state changed.
    views.apply(AgentHealthChanged(at=t2, agent_id="a", breaker="open", detail="kept out"))
    a = views.agent_row("a")
    assert a is not None and (a.breaker_at, a.health_detail) == (t1, "kept out")
    views.apply(AgentHealthChanged(at=t2, agent_id="b", breaker="closed", detail="trial ok"))
    assert views.router_state().breakers == {"open": 1}
    # Ended agents leave the count; a snapshot carries the fields through.
    views.apply(
        AgentStatusChanged(agent_id="a", status=AgentStatus.STOPPED, source=StatusSource.USER)
    )
    assert views.router_state().breakers == {}
    snap = views.snapshot()
    assert Views(type(snap).model_validate_json(snap.model_dump_json())).snapshot() == snap


def test_an_agent_row_without_breaker_fields_still_parses_as_closed() -> None:
    old = {
        "id": "a",
        "runtime": "pi",
        "status": "idle",
        "status_source": "spawn",
        "status_at": T0.isoformat(),
        "workspace": "/w",
        "created_at": T0.isoformat(),
    }
    row = AgentRow.model_validate(old)
    assert (row.breaker, row.breaker_at, row.health_detail) == ("closed", None, "")


def test_filters() -> None:
    views = fold(AgentCreated(at=T0, agent_id="a", runtime="pi", swarm="api", workspace="/w"))
    status = AgentStatusChanged(agent_id="a", status=AgentStatus.IDLE, source=StatusSource.SPAWN)
    assert EventFilter.make(swarm="api").matches(status, views)  # via the agent's swarm
    assert not EventFilter.make(swarm="web").matches(status, views)
    assert EventFilter.make({"agent.*"}).matches(status)
    assert not EventFilter.make({"task.*"}).matches(status)
    assert EventFilter.make({"task.*"}, agent="zzz").matches(EventsDropped(count=3, subscriber="x"))
    assert not EventFilter.make(task="t").matches(DaemonStarted(pid=1, version="x"))
    with pytest.raises(ValueError, match="unknown event type"):
        EventFilter.make({"task.finsihed"})


def test_views_from_a_snapshot_keep_its_routing_latency() -> None:
    from datetime import UTC, datetime

    from core.views import Views, ViewSnapshot
    from core.views.rows import Decision, RouterState

    at = datetime(2026, 1, 1, tzinfo=UTC)
    recent = [
        Decision(task_id=f"t{i}", agent_id="a", elapsed_ms=0.01 * (i + 1), at=at) for i in range(4)
    ]
    snap = ViewSnapshot(seq=9, router=RouterState(decisions=4, routed=4, recent=recent))
    state = Views(snap).router_state()
    assert state.latency_p50_ms is not None and state.latency_p99_ms is not None
    assert 0.01 <= state.latency_p50_ms <= state.latency_p99_ms <= 0.04
