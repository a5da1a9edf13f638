"""What keeps a frame short with 1,000 agents (docs/console.md#speed): rows are re-sorted
only when an event can move one, the table repaints only the lines that changed, and
the summary panes only their changed lines. Timing is `godel bench tui`'s business;
these check the behaviour that the figures rest on."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import App, ComposeResult
from textual.strip import Strip

from core.events import AgentCreated, AgentStatusChanged
from core.models import AgentStatus, StatusSource
from godel_tui.model import ConsoleModel
from godel_tui.widgets.agent_table import AgentTable
from godel_tui.widgets.text_pane import TextPane

NOW = datetime.now(UTC)


def _model(n: int) -> ConsoleModel:
    model = ConsoleModel()
    for i in range(n):
        model.apply(
            AgentCreated(agent_id=f"noop-{i:03}", runtime="noop", swarm="s", workspace="/w", at=NOW)
        )
    return model


def _status(agent: str, status: AgentStatus) -> AgentStatusChanged:
    return AgentStatusChanged(agent_id=agent, status=status, source=StatusSource.USER, at=NOW)


def test_a_status_change_resorts_only_when_it_can_move_a_row() -> None:
    model = _model(5)
    shown = model.order()
    model.apply(_status("noop-001", AgentStatus.BUSY))
    assert model.order() is shown  # grouped by swarm: busy moves nothing, no new sort
    model.apply(_status("noop-001", AgentStatus.STOPPED))
    assert "noop-001" not in model.order()  # an ended row leaves the list

    model.set_sort("status")
    model.order()
    model.apply(_status("noop-002", AgentStatus.BUSY))
    assert model.order()[-1] == "noop-002"  # by status: starting, idle, busy, ...

    model.set_sort("swarm")
    model.set_filter("status:busy")
    model.order()
    model.apply(_status("noop-003", AgentStatus.BUSY))
    assert model.order() == ["noop-002", "noop-003"]  # a filter is asked again


class _CountingTable(AgentTable):
    asked = 0

    def render_line(self, y: int) -> Strip:
        self.asked += 1
        return super().render_line(y)


class _TableApp(App[None]):
    def __init__(self, model: ConsoleModel) -> None:
        super().__init__()
        self.model = model

    def compose(self) -> ComposeResult:
        yield _CountingTable(self.model)


async def test_the_table_repaints_only_the_rows_that_changed() -> None:
    model = _model(30)
    app = _TableApp(model)
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(_CountingTable)
        table.refresh_rows(NOW)  # a fixed clock: no age ticks
        await pilot.pause()
        table.asked = 0
        model.apply(_status("noop-004", AgentStatus.BUSY))
        table.refresh_rows(NOW)
        await pilot.pause()
        assert table.asked == 1
        assert "busy" in table.render_line(1 + 4).text

        table.asked = 0
        model.set_sort("name", reverse=True)  # the order changed: every line again
        table.refresh_rows(NOW)
        await pilot.pause()
        assert table.asked >= table.size.height


class _PaneApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TextPane(id="pane")


async def test_a_text_pane_repaints_only_its_changed_lines() -> None:
    app = _PaneApp()
    async with app.run_test(size=(60, 10)) as pilot:
        pane = app.query_one(TextPane)
        pane.set_text("total $0  execs 1\nby swarm:\n  s  $0")
        await pilot.pause()
        asked: list[int] = []
        original = pane.render_line

        def counting(y: int) -> Strip:
            asked.append(y)
            return original(y)

        pane.render_line = counting  # type: ignore[method-assign]
        pane.set_text("total $0  execs 2\nby swarm:\n  s  $0")
        await pilot.pause()
        assert asked == [0]
        assert pane.render_line(0).text.startswith("total $0  execs 2")
        assert pane.render_line(1).text.startswith("by swarm:")
        pane.set_text("total $0  execs 2\nby swarm:\n  s  $0")  # the same: nothing to do
        await pilot.pause()
        assert asked == [0, 0, 1]  # the two reads above, no repaint
