"""The console shows breakers from the views' ``agent.health`` fold (pure: no daemon)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.events import AgentCreated, AgentHealthChanged, AgentStatusChanged
from core.models import AgentStatus, StatusSource
from godel_tui.model import ConsoleModel
from godel_tui.panes.summary import router_text
from godel_tui.render import COLUMNS, agent_cells

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HEALTH = [c.key for c in COLUMNS].index("health")


def test_open_breakers_show_filter_and_need_attention() -> None:
    model = ConsoleModel()
    for agent_id in ("a", "b"):
        model.apply(AgentCreated(at=T0, agent_id=agent_id, runtime="shell", workspace="/w"))
        model.apply(
            AgentStatusChanged(
                agent_id=agent_id, status=AgentStatus.IDLE, source=StatusSource.SPAWN
            )
        )
    model.apply(AgentHealthChanged(at=T0, agent_id="a", breaker="open", ejected=True, detail="x"))

    a = model.agent("a")
    assert a is not None and agent_cells(a, T0)[HEALTH] == ("open", "bold red")
    model.set_filter("health:open")
    assert model.order() == ["a"]
    att = model.attention(T0)
    assert (att.open_breakers, att.agents) == (1, ["a"])
    assert "breakers open 1" in router_text(model.views.router_state(), {}, [])

    model.apply(AgentHealthChanged(at=T0, agent_id="a", breaker="half_open"))
    assert model.order() == []  # the filter is applied again on a health change
    assert model.attention(T0).open_breakers == 0
    assert "breakers half_open 1" in router_text(model.views.router_state(), {}, [])
