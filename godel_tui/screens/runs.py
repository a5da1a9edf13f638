"""The runs view (``D`` or ``:runs``): the ``godel do`` runs the daemon runs, newest
first, and for the selected one its tasks and its last printed lines, live.

It reads the console's model (``Views.runs``, folded from the ``do.*`` events) once per
frame, as the agents table does, and redraws only what moved: a run whose version
changed (``ConsoleModel.run_versions``) has its changed cells updated, the selected
run's new lines are appended (``ConsoleModel.run_steps`` counts them), and the ages
tick once a second. There are at most ``core.views.state.RECENT_RUNS`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from core.views.rows import DoRunRow
from core.views.state import RUN_LINES
from godel_tui.actions import pane_bindings
from godel_tui.model import ConsoleModel
from godel_tui.render import (
    RUN_COLUMNS,
    TASK_COLUMNS,
    Cell,
    Column,
    run_active,
    run_cells,
    run_title,
    runs_newest_first,
    task_cells,
)
from godel_tui.widgets.log_view import LogView


def _text(cell: Cell, column: Column) -> Text:
    return Text(cell[0], style=cell[1], justify="right" if column.right else "left")


class RunTable(DataTable[Text]):
    """The list of runs; it holds the runs view's keys (``runs`` pane of the registry)."""

    BINDINGS: ClassVar = pane_bindings("runs")

    def action_close(self) -> None:
        self.app.pop_screen()

    def action_toggle_follow(self) -> None:
        screen = self.screen
        if isinstance(screen, RunsScreen):
            screen.toggle_follow()


class RunsScreen(Screen[None]):
    DEFAULT_CSS = """
    RunsScreen { layout: vertical; }
    RunsScreen #runs-head { height: 1; background: $panel; padding: 0 1; }
    RunsScreen #runs-pane { height: auto; max-height: 14; }
    RunsScreen #runs { height: auto; max-height: 12; }
    RunsScreen #run-tasks-pane { height: 1fr; }
    RunsScreen #run-lines-pane { height: 1fr; }
    RunsScreen .pane { border: round $primary 50%; }
    RunsScreen .pane:focus-within { border: round $accent; }
    """

    def __init__(self, model: ConsoleModel, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.model = model
        self.clock = clock  # the console's: a replay's is the recording's
        self.selected: str | None = None
        self._order: list[str] = []  # run ids as listed
        self._cells: dict[str, list[Cell]] = {}  # each listed run's cells as shown
        self._seen: dict[str, int] = {}  # each run's version when last drawn
        self._loads = -1
        self._shown: str | None = None  # the run whose tasks and lines are shown
        self._tasks: list[str] = []  # its task names, as listed
        self._task_cells: list[list[Cell]] = []
        self._lines_seen = 0  # its steps when its lines were last written
        self._tick = -1
        self._ready = False  # the frame may come before on_mount made the columns

    def compose(self) -> ComposeResult:
        yield Static(id="runs-head", markup=False)
        with Vertical(id="runs-pane", classes="pane"):
            yield RunTable(id="runs", cursor_type="row", zebra_stripes=False)
        with Vertical(id="run-tasks-pane", classes="pane"):
            yield DataTable[Text](id="run-tasks", cursor_type="none")
        with Vertical(id="run-lines-pane", classes="pane"):
            yield LogView(max_lines=RUN_LINES, id="run-lines")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#runs-pane").border_title = "godel do runs (newest first)"
        self.query_one("#run-tasks-pane").border_title = "tasks"
        self.query_one("#run-lines-pane").border_title = "lines"
        runs = self.query_one(RunTable)
        for c in RUN_COLUMNS:
            runs.add_column(_text((c.title, "bold"), c), width=c.width, key=c.key)
        tasks = self.query_one("#run-tasks", DataTable)
        for c in TASK_COLUMNS:
            tasks.add_column(_text((c.title, "bold"), c), width=c.width, key=c.key)
        runs.focus()
        self._ready = True
        self.refresh_runs(self.clock())

    # what the frame calls ----------------------------------------------------------------

    def refresh_runs(self, now: datetime) -> None:
        """Redraw what changed since the last frame (cheap when nothing did)."""
        if not self._ready:
            return
        model = self.model
        tick = int(now.timestamp())
        ticked, self._tick = tick != self._tick, tick
        if model.loads != self._loads:  # a resync or a replay's seek: start over
            self._loads = model.loads
            self._order, self._seen, self._shown = [], {}, None
        versions = model.run_versions
        moved = [r for r in model.views.runs if versions.get(r, 0) != self._seen.get(r)]
        if not moved and not ticked and self._shown == self.selected:
            return
        for r in moved:
            self._seen[r] = versions.get(r, 0)
        runs = runs_newest_first(model.views.runs.values())
        order = [r.run for r in runs]
        table = self.query_one(RunTable)
        if order != self._order:
            self._relist(table, runs, now)
        else:
            for run in runs:
                if run.run in moved or (ticked and run_active(run)):
                    self._update_row(table, run, now)
        self._head(runs)
        chosen = model.views.runs.get(self.selected) if self.selected else None
        if chosen is None:
            self._clear_selected()
        elif chosen.run != self._shown:
            self._show(chosen, now)
        elif chosen.run in moved or ticked:
            self._update_selected(chosen, now)

    def toggle_follow(self) -> None:
        log = self.query_one(LogView)
        log.follow = not log.follow
        self._lines_title()
        if log.follow:
            log.scroll_end(animate=False)

    # the list of runs --------------------------------------------------------------------

    def _relist(self, table: RunTable, runs: list[DoRunRow], now: datetime) -> None:
        # The newest run is followed: a run that starts while the newest was selected
        # (or none was) is selected.
        follow_newest = self.selected is None or (
            bool(self._order) and self.selected == self._order[0]
        )
        table.clear()
        self._cells = {}
        for run in runs:
            cells = run_cells(run, now)
            self._cells[run.run] = cells
            table.add_row(
                *(_text(c, col) for c, col in zip(cells, RUN_COLUMNS, strict=True)), key=run.run
            )
        self._order = [r.run for r in runs]
        if not self._order:
            self.selected = None
            return
        if follow_newest or self.selected not in self._order:
            self.selected = self._order[0]
        table.move_cursor(row=self._order.index(self.selected), animate=False)

    def _update_row(self, table: RunTable, run: DoRunRow, now: datetime) -> None:
        cells = run_cells(run, now)
        old = self._cells.get(run.run, [])
        for i, (cell, col) in enumerate(zip(cells, RUN_COLUMNS, strict=True)):
            if i >= len(old) or old[i] != cell:
                table.update_cell(run.run, col.key, _text(cell, col))
        self._cells[run.run] = cells

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is not self.query_one(RunTable):
            return
        # Where the cursor is now (a relist moves it after the message was sent).
        row = event.data_table.cursor_row
        if 0 <= row < len(self._order) and self._order[row] != self.selected:
            self.selected = self._order[row]
            self.refresh_runs(self.clock())

    def _head(self, runs: list[DoRunRow]) -> None:
        active = sum(1 for r in runs if run_active(r))
        n = len(runs)
        text = (
            f"godel do runs: {n} run{'s' if n != 1 else ''}, {active} active  ·  "
            "↑↓ select  ·  esc back to the agents"
            if runs
            else "godel do runs: none yet (run `godel do INTENT` and it shows here)"
        )
        self.query_one("#runs-head", Static).update(text)

    # the selected run --------------------------------------------------------------------

    def _clear_selected(self) -> None:
        if self._shown is None and not self._tasks:
            return
        self._shown, self._tasks, self._task_cells = None, [], []
        self.query_one("#run-tasks", DataTable).clear()
        self.query_one(LogView).clear()
        self.query_one("#run-tasks-pane").border_title = "tasks"

    def _show(self, run: DoRunRow, now: datetime) -> None:
        self._shown = run.run
        self._tasks = []
        self.query_one("#run-tasks-pane").border_title = f"tasks · {run_title(run)}"
        self._update_tasks(run, now)
        log = self.query_one(LogView)
        log.clear()
        log.write_lines([(line, "") for line in run.lines])
        self._lines_seen = self.model.run_steps.get(run.run, len(run.lines))
        self._lines_title()

    def _update_selected(self, run: DoRunRow, now: datetime) -> None:
        self.query_one("#run-tasks-pane").border_title = f"tasks · {run_title(run)}"
        self._update_tasks(run, now)
        steps = self.model.run_steps.get(run.run, len(run.lines))
        new = steps - self._lines_seen
        if new < 0 or new > len(run.lines):  # more than the run keeps: write them all
            self._show(run, now)
            return
        if new:
            self.query_one(LogView).write_lines([(line, "") for line in run.lines[-new:]])
            self._lines_seen = steps

    def _update_tasks(self, run: DoRunRow, now: datetime) -> None:
        table = self.query_one("#run-tasks", DataTable)
        names = [t.name for t in run.tasks]
        cells = [task_cells(t, now) for t in run.tasks]
        if names != self._tasks:  # a new plan (or another run): list them again
            table.clear()
            for name, row in zip(names, cells, strict=True):
                table.add_row(
                    *(_text(c, col) for c, col in zip(row, TASK_COLUMNS, strict=True)), key=name
                )
        else:
            for name, row, old in zip(names, cells, self._task_cells, strict=True):
                for cell, was, col in zip(row, old, TASK_COLUMNS, strict=True):
                    if cell != was:
                        table.update_cell(name, col.key, _text(cell, col))
        self._tasks, self._task_cells = names, cells

    def _lines_title(self) -> None:
        follow = "following" if self.query_one(LogView).follow else "paused (f follows)"
        self.query_one("#run-lines-pane").border_title = f"lines · {follow}"
