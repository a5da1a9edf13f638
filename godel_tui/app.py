"""``GodelApp``: the console. A client of the daemon like the CLI (``godel_tui.feed``).

Events are buffered as they arrive and applied once per frame (30 Hz): the agents table
renders only the rows that changed, the summaries at most 4 times a second.
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from core.cli.caller import with_caller_keys
from core.errors import GodelError
from core.events import Event
from core.paths import GodelPaths
from core.views import ViewSnapshot
from godel_tui.actions import ACTIONS, BY_ID, bindings, unknown_ids
from godel_tui.command_runner import CommandRunner
from godel_tui.feed import ConsoleFeed, DaemonFeed, FeedSink, FeedState, PlaybackFeed
from godel_tui.filter import FilterError
from godel_tui.model import ATTENTION_WINDOW, ConsoleModel
from godel_tui.palette import ConsoleCommands
from godel_tui.panes.agent_log import AgentLogPane
from godel_tui.panes.summary import attention_text, router_text, spend_text
from godel_tui.render import COLUMNS, runs_cue
from godel_tui.screens.help import HelpScreen, bound_keys, key_display
from godel_tui.screens.runs import RunsScreen
from godel_tui.widgets.agent_table import AgentTable
from godel_tui.widgets.text_pane import TextPane

FRAME_S = 1 / 30
SUMMARY_S = 0.25
# The Textual actions of the agents and log panes: bound on the app, so the runs view
# (a screen over them) must not run them on the agents it hides.
_PANE_ACTIONS = frozenset(
    a.action.split("(")[0] for a in ACTIONS if not a.local and a.pane in ("swarm", "log")
) | {"focus_pane"}


class PromptScreen(ModalScreen[str | None]):
    """One line of input (exec, steer, filter, command); Esc cancels."""

    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center top; }
    PromptScreen > Vertical { width: 80%; height: auto; margin-top: 3;
        border: round $accent; background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text)
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class GodelApp(App[None]):
    TITLE = "godel"
    CSS_PATH = "godel.tcss"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS: ClassVar = App.COMMANDS | {ConsoleCommands}
    BINDINGS: ClassVar = bindings()

    def __init__(
        self,
        paths: GodelPaths,
        *,
        read_only: bool = False,
        record: Path | None = None,
        keymap: Mapping[str, str] | None = None,
        autostart: bool = True,
        feed: Callable[[FeedSink], ConsoleFeed] | None = None,
    ) -> None:
        super().__init__()
        self.paths = paths
        self.model = ConsoleModel()
        # ``feed``: another source than the daemon (``godel replay``'s ReplayFeed).
        self.feed: ConsoleFeed = (
            feed(self)
            if feed is not None
            else DaemonFeed(paths, self, autostart=autostart, record=record)
        )
        self.playback = self.feed if isinstance(self.feed, PlaybackFeed) else None
        self.read_only = read_only or self.playback is not None
        self._pending: list[Event] = []
        self._snapshot: ViewSnapshot | None = None
        self._state = FeedState(False, f"connecting to the daemon of {paths.home}", _now())
        self._last_summary = 0.0
        self._summary_text: dict[str, str] = {}  # what each summary Static shows now
        self._latencies: deque[float] = deque(maxlen=120)
        self._spend_samples: deque[tuple[float, Decimal]] = deque(maxlen=600)
        self._attention_index = -1
        self._user_keymap = dict(keymap or {})
        if self._user_keymap:
            self.set_keymap(self._user_keymap)
        self.commands = CommandRunner(self, self._user_keymap)
        self._runs_key = key_display(bound_keys(BY_ID["view.runs"], self._user_keymap))

    # layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Horizontal(id="main"):
            with Vertical(id="swarm-pane", classes="pane"):
                yield Static(id="attention")
                yield AgentTable(self.model, id="agents")
            with Vertical(id="right"):
                yield AgentLogPane(self.model, id="log-pane", classes="pane")
                with Horizontal(id="bottom"):
                    yield TextPane(id="router", classes="pane")
                    yield TextPane(id="budget", classes="pane")
        yield Footer()

    def on_unmount(self) -> None:
        gc.unfreeze()  # what _frame froze is the collector's again (tests run many apps)

    def on_mount(self) -> None:
        self.query_one("#swarm-pane").border_title = "agents"
        self.query_one("#log-pane").border_title = "log"
        self.query_one("#router").border_title = "router"
        self.query_one("#budget").border_title = "spend"
        self.query_one(AgentTable).focus()
        self._render_status()
        if bad := unknown_ids(self._user_keymap):
            self.notify(
                f"[tui] keymap: no action {', '.join(map(repr, bad))} (actions: "
                f"{', '.join(BY_ID)})",
                severity="error",
                timeout=20,
                markup=False,  # "[tui]" is text
            )
        self.set_interval(FRAME_S, self._frame)
        self.run_worker(self.feed.run(), name="feed", exclusive=True)

    # the feed (FeedSink) -------------------------------------------------------------

    def feed_snapshot(self, snapshot: ViewSnapshot, note: str) -> None:
        self._snapshot = snapshot
        self._pending.clear()
        if self.playback is not None:  # a replay's seek: its rates start over there
            self._latencies.clear()
            self._spend_samples.clear()

    def feed_event(self, event: Event) -> None:
        self._pending.append(event)

    def feed_state(self, state: FeedState) -> None:
        was = self._state.connected
        self._state = state
        self._render_status()
        if was != state.connected or "resynced" in state.note:
            self.notify(state.note, severity="information" if state.connected else "warning")

    # one frame -----------------------------------------------------------------------

    def _frame(self) -> None:
        if not self.is_running:  # shutting down: the screen's widgets are being removed
            return
        changed = False
        if self._snapshot is not None:
            self.model.load(self._snapshot)
            self._snapshot = None
            changed = True
            # What was just loaded (1,000 agents' cells) and the widgets live as long as
            # the console: out of the collector's sight, a full collection in a frame
            # takes ~10 ms instead of ~70 (`godel bench tui`, gc callbacks).
            gc.unfreeze()  # a resync: the old model may be garbage now
            gc.collect()
            gc.freeze()
            self.query_one(AgentLogPane).resync()
        if self._pending:
            events, self._pending = self._pending, []
            self.model.apply_all(events)
            self.query_one(AgentLogPane).feed_events(events)
            changed = True
        now = self._clock()
        table = self.query_one(AgentTable)
        if changed or int(now.timestamp()) != int(table.now.timestamp()):
            table.refresh_rows(now)
        if isinstance(self.screen, RunsScreen):
            self.screen.refresh_runs(now)
        loop_t = asyncio.get_running_loop().time()
        if loop_t - self._last_summary >= SUMMARY_S:
            self._last_summary = loop_t
            self._render_summaries(now)

    def _render_summaries(self, now: datetime) -> None:
        views = self.model.views
        router = views.router_state()
        # Samples for the sparkline and the burn rate, on the console's clock: the loop's
        # at this summary, or a replay's (still while paused: a paused replay draws the
        # same every time, and rates are per minute of the recording).
        at = now.timestamp() if self.playback is not None else self._last_summary
        sample = not self._spend_samples or at - self._spend_samples[-1][0] >= SUMMARY_S
        if sample and router.latency_p99_ms is not None:
            self._latencies.append(router.latency_p99_ms)
        ready: dict[str, int] = {}
        for t in views.tasks_active.values():
            if t.status == "ready":
                ready[t.priority] = ready.get(t.priority, 0) + 1
        order = {p: ready.get(p, 0) for p in ("critical", "high", "normal", "low")}
        self._put("#router", router_text(router, order, list(self._latencies)))
        spend = views.spend_state()
        cost = spend.total.cost_usd or Decimal(0)
        if sample:
            self._spend_samples.append((at, cost))
        burn = None
        first_at, first_cost = self._spend_samples[0]
        # No known cost at all (shell agents, unknown prices): no burn rate, never "$0/min".
        if at - first_at >= 5 and spend.total.cost_usd is not None:
            burn = (cost - first_cost) / Decimal(str((at - first_at) / 60))
        self._put("#budget", spend_text(spend, burn))
        attention = attention_text(att := self.model.attention(now))
        # A godel do run going on (or one that failed lately): say so, with the key.
        if cue := runs_cue(views.runs.values(), now, ATTENTION_WINDOW, self._runs_key):
            attention = cue if att.total == 0 else f"{cue}  ·  {attention}"
        self._put("#attention", attention)
        self._render_status()

    def _put(self, selector: str, text: str) -> None:
        """A summary's text, if it changed, without a layout: each summary has a fixed
        size (godel.tcss), and a layout re-renders the whole screen (a 30 ms frame with
        1,000 agents, 4 times a second: measured by `godel bench tui`). The two panes
        repaint only their lines that changed (``TextPane``)."""
        if self._summary_text.get(selector) == text:
            return
        self._summary_text[selector] = text
        widget = self.query_one(selector)
        if isinstance(widget, TextPane):
            widget.set_text(text)
        elif isinstance(widget, Static):
            widget.update(text, layout=False)

    def _render_status(self) -> None:
        st = self._state
        dot = "[green]●[/]" if st.connected else "[red]●[/]"
        agents = self.model.views.agents.values()
        live = sum(1 for a in agents if not a.status.is_terminal)
        ro = "  [b]read-only[/]" if self.read_only else ""
        if self.playback is not None:  # its note says what is played, where, how fast
            self._put("#status", f"{dot} {st.note}  ·  {live} live agents")
            return
        self._put(
            "#status",
            f"{dot} {st.note} ({st.at.astimezone():%H:%M:%S})  ·  {self.paths.home}  ·  "
            f"{live} live agents{ro}",
        )

    # agent log (godel_tui.panes.agent_log) -----------------------------------------

    def on_agent_table_selected(self, message: AgentTable.Selected) -> None:
        if not self.is_running:  # shutting down: the panes are being removed
            return
        self.query_one(AgentLogPane).show(message.agent_id)

    # actions -------------------------------------------------------------------------

    def _allowed(self, action_id: str) -> bool:
        if self.read_only and BY_ID[action_id].changes_state:
            self.notify(
                f"read-only console: {BY_ID[action_id].description} is disabled", severity="warning"
            )
            return False
        return True

    def _targets(self) -> list[str]:
        table = self.query_one(AgentTable)
        if self.model.marked:
            return sorted(self.model.marked)
        return [table.selected] if table.selected else []

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if isinstance(self.screen, RunsScreen) and action in _PANE_ACTIONS:
            return False  # the agents' keys would act on agents the runs view hides
        # The ``replay`` pane's keys exist only in a replay (hidden and inert otherwise).
        return action != "feed_control" or self.playback is not None

    def _clock(self) -> datetime:
        """Now, on the console's clock (a replay's is the recording's)."""
        return self.playback.now() if self.playback is not None else _now()

    def action_runs(self) -> None:
        """The runs view, or back from it."""
        if isinstance(self.screen, RunsScreen):
            self.pop_screen()
        else:
            self.show_runs()

    def show_runs(self) -> None:
        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen(self.model, self._clock))

    def action_feed_control(self, command: str) -> None:
        if self.playback is not None and (note := self.playback.control(command)):
            self.notify(note, severity="warning")

    def action_focus_pane(self, pane: str) -> None:
        target = {"swarm": "#agents", "log": "#log", "router": "#router", "budget": "#budget"}[pane]
        self.query_one(target).focus()

    def action_mark(self) -> None:
        table = self.query_one(AgentTable)
        if table.selected:
            self.model.toggle_mark(table.selected)
            table.refresh_rows()

    def action_clear_marks(self) -> None:
        self.model.marked.clear()
        self.model.set_filter(self.model.filter.text)
        self.query_one(AgentTable).refresh_rows()

    def action_sort_next(self) -> None:
        keys = [c.key for c in COLUMNS]
        nxt = keys[(keys.index(self.model.sort_key) + 1) % len(keys)]
        self.model.set_sort(nxt, self.model.sort_reverse)
        self.query_one(AgentTable).refresh_rows()

    def action_sort_reverse(self) -> None:
        self.model.set_sort(self.model.sort_key, not self.model.sort_reverse)
        self.query_one(AgentTable).refresh_rows()

    def action_toggle_ended(self) -> None:
        self.model.show_ended = not self.model.show_ended
        self.model.set_filter(self.model.filter.text)
        self.query_one(AgentTable).refresh_rows()

    def action_next_attention(self) -> None:
        now = self.playback.now() if self.playback is not None else _now()
        att = self.model.attention(now).agents  # a replay's: on the recording's clock
        if not att:
            self.notify("nothing needs you")
            return
        self._attention_index = (self._attention_index + 1) % len(att)
        agent = att[self._attention_index]
        table = self.query_one(AgentTable)
        if not table.select(agent):
            self.model.show_ended = True
            self.model.set_filter("")
            table.refresh_rows()
            table.select(agent)

    def action_filter(self) -> None:
        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                self.model.set_filter(text)
            except FilterError as e:
                self.notify(str(e), severity="error")
                return
            self.query_one(AgentTable).refresh_rows()
            self.query_one("#swarm-pane").border_subtitle = f"/ {text}" if text.strip() else ""

        self.push_screen(
            PromptScreen("filter agents", self.model.filter.text, "status:busy runtime:pi !idle"),
            done,
        )

    def action_kill(self) -> None:
        if not self._allowed("agent.kill"):
            return
        targets = self._targets()
        if not targets:
            self.notify("no agent selected")
            return
        self._call_each("agent.kill", targets, "killed")
        self.model.marked.clear()

    def action_restart(self) -> None:
        if not self._allowed("agent.restart"):
            return
        targets = self._targets()
        if not targets:
            self.notify("no agent selected")
            return
        self._call_each("agent.restart", targets, "restarted")
        self.model.marked.clear()

    def action_abort(self) -> None:
        if not self._allowed("agent.abort"):
            return
        for agent in self._targets():
            self._call("agent.abort", {"id": agent}, f"abort sent to {agent}")

    def action_exec_prompt(self) -> None:
        if not self._allowed("agent.exec"):
            return
        targets = self._targets()
        if not targets:
            self.notify("no agent selected")
            return

        def done(text: str | None) -> None:
            if text:
                for agent in targets:
                    self._call("agent.exec", {"id": agent, "input": text}, None)

        self.push_screen(PromptScreen(f"exec on {', '.join(targets)}", "", "echo hello"), done)

    def action_steer_prompt(self) -> None:
        if not self._allowed("agent.steer"):
            return
        targets = self._targets()

        def done(text: str | None) -> None:
            if text:
                for agent in targets:
                    self._call("agent.steer", {"id": agent, "message": text}, f"steered {agent}")

        if targets:
            self.push_screen(PromptScreen(f"steer {', '.join(targets)}"), done)

    def action_toggle_follow(self) -> None:
        self.query_one(AgentLogPane).toggle_follow()

    def action_help(self) -> None:
        focused = self.focused
        pane = (
            "runs"
            if isinstance(self.screen, RunsScreen)
            else "swarm"
            if isinstance(focused, AgentTable)
            else "log"
            if focused is not None and self.query_one(AgentLogPane) in focused.ancestors_with_self
            else "app"
        )
        self.push_screen(
            HelpScreen(pane, self._user_keymap, self.read_only, replay=self.playback is not None)
        )

    def action_command_line(self) -> None:
        self.commands.open()

    def _call_each(self, method: str, agents: list[str], done: str) -> None:
        for agent in agents:
            self._call(method, {"id": agent}, f"{done} {agent}")

    @work(group="calls")
    async def _call(self, method: str, params: dict[str, Any], ok: str | None) -> None:
        try:
            # A restart spawns: it carries this shell's API keys, as the CLI sends them.
            sent = await asyncio.to_thread(with_caller_keys, method, params)
            await self.feed.call(method, sent)
        except GodelError as e:
            self.notify(e.message, severity="error", timeout=8)
            return
        if ok:
            self.notify(ok)


def _now() -> datetime:
    return datetime.now(UTC)
