"""The agents table: a Line-API ``ScrollView`` with one cached strip per row.

Measured (``../shared/reference/textual-at-scale.md``): Textual's ``DataTable``
re-renders every visible cell on any update (render p95 53-78 ms at 500 events/s),
while this shape stays under 5 ms. Only rows whose agent changed since the last frame
(``ConsoleModel.take_dirty``), or whose age text ticked, are rendered again; the rest
come from the cache.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from godel_tui.model import ConsoleModel
from godel_tui.render import COLUMNS, age, agent_cells, fit

_STYLES: dict[str, Style] = {}


def _style(name: str) -> Style:
    s = _STYLES.get(name)
    if s is None:
        s = _STYLES[name] = Style.parse(name) if name else Style()
    return s


class AgentTable(ScrollView, can_focus=True):
    """Agents, grouped by swarm; the cursor row is the selected agent."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor(-20)", "Page up", show=False),
        Binding("pagedown", "cursor(20)", "Page down", show=False),
        Binding("home,g", "cursor_to(0)", "Top", show=False),
        Binding("end,G", "cursor_to(-1)", "Bottom", show=False),
    ]

    DEFAULT_CSS = """
    AgentTable { height: 1fr; }
    AgentTable > .agent-table--cursor { background: $accent 40%; }
    AgentTable > .agent-table--header { text-style: bold; color: $text-muted; }
    """
    COMPONENT_CLASSES = {"agent-table--cursor", "agent-table--header"}

    class Selected(Message):
        """The cursor moved to another agent (None: the table is empty)."""

        def __init__(self, agent_id: str | None) -> None:
            self.agent_id = agent_id
            super().__init__()

    def __init__(self, model: ConsoleModel, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self.cursor = 0
        self.selected: str | None = None
        self._cache: dict[str, tuple[str, bool, Strip]] = {}
        self._width = 2 + sum(c.width + 1 for c in COLUMNS)
        self.now = datetime.now(UTC)
        self.rendered_rows = 0  # rows rendered (not from the cache): for the benchmark
        # What the screen shows now: when neither changes, a frame repaints only the
        # lines whose row changed (a full repaint re-renders every visible line).
        self._shown: list[str] = []
        self._shown_header: tuple[str, bool] | None = None

    # frame ---------------------------------------------------------------------------

    def refresh_rows(self, now: datetime | None = None) -> None:
        """Called once per frame: drop changed rows from the cache, keep the cursor on
        the selected agent, repaint the lines that changed (all of them when the order,
        the sort or the number of rows did)."""
        self.now = now or datetime.now(UTC)
        for agent_id in self.model.take_dirty():
            self._cache.pop(agent_id, None)
        order = self.model.order()
        size = Size(self._width, len(order) + 1)
        header = (self.model.sort_key, self.model.sort_reverse)
        moved = size != self.virtual_size or header != self._shown_header or order != self._shown
        self.virtual_size = size
        if self.selected is not None and (
            self.cursor >= len(order) or order[self.cursor] != self.selected
        ):
            try:
                self.cursor = order.index(self.selected)
            except ValueError:
                self.cursor = min(self.cursor, max(0, len(order) - 1))
        self._announce()
        if moved:
            self._shown, self._shown_header = list(order), header
            self.refresh()
            return
        top, width = int(self.scroll_offset.y), self.size.width
        stale = [
            Region(0, i + 1, width, 1)
            for i, agent_id in enumerate(order[top : top + self.size.height - 1])
            if not self._cached(agent_id)
        ]
        if stale:
            self.refresh(*stale)

    def _announce(self) -> None:
        order = self.model.order()
        agent = order[self.cursor] if order else None
        if agent != self.selected:
            self.selected = agent
            self.post_message(self.Selected(agent))

    # lines ---------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            return self._header().crop_extend(scroll_x, scroll_x + width, None)
        index = y - 1 + scroll_y
        order = self.model.order()
        if index >= len(order):
            return Strip.blank(width)
        strip = self._row(order[index])
        if index == self.cursor:
            strip = strip.apply_style(self.get_component_rich_style("agent-table--cursor"))
        return strip.crop_extend(scroll_x, scroll_x + width, None)

    def _header(self) -> Strip:
        style = self.get_component_rich_style("agent-table--header")
        arrow = "▼" if self.model.sort_reverse else "▲"
        parts = ["  "]
        for c in COLUMNS:
            title = c.title + (arrow if c.key == self.model.sort_key else "")
            parts.append(fit(title, c.width, c.right) + " ")
        return Strip([Segment("".join(parts), style)])

    def _cached(self, agent_id: str) -> bool:
        """The row's cached strip is what it would render now."""
        a = self.model.agent(agent_id)
        hit = self._cache.get(agent_id)
        return (
            a is not None
            and hit is not None
            and hit[0] == age((self.now - a.status_at).total_seconds())
            and hit[1] == (agent_id in self.model.marked)
        )

    def _row(self, agent_id: str) -> Strip:
        a = self.model.agent(agent_id)
        if a is None:
            return Strip.blank(self._width)
        marked = agent_id in self.model.marked
        # The age as shown ("4s", "12m"): a row is rendered again when that text changes.
        age_key = age((self.now - a.status_at).total_seconds())
        hit = self._cache.get(agent_id)
        if hit is not None and hit[0] == age_key and hit[1] == marked:
            return hit[2]
        self.rendered_rows += 1
        cells = agent_cells(a, self.now)
        segs = [Segment("* " if marked else "  ", _style("bold yellow"))]
        for col, (text, style) in zip(COLUMNS, cells, strict=True):
            segs.append(Segment(fit(text, col.width, col.right), _style(style)))
            segs.append(Segment(" "))
        strip = Strip(segs, self._width)
        self._cache[agent_id] = (age_key, marked, strip)
        return strip

    # cursor --------------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor + delta)

    def action_cursor_to(self, index: int) -> None:
        n = len(self.model.order())
        self._move(n - 1 if index < 0 else index)

    def select(self, agent_id: str) -> bool:
        """Put the cursor on ``agent_id``; False if it is not shown (filtered out)."""
        try:
            index = self.model.order().index(agent_id)
        except ValueError:
            return False
        self._move(index)
        return True

    def _move(self, index: int) -> None:
        n = len(self.model.order())
        if n == 0:
            return
        self.cursor = max(0, min(n - 1, index))
        self.scroll_to_region(Region(0, self.cursor, 1, 1), animate=False, immediate=True)
        self._announce()
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self._move(event.y - 1 + int(self.scroll_offset.y))
