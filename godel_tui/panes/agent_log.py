"""The agent-log pane: the selected agent's transcript, live.

Output comes from ``agent.logs`` on a connection of the pane's own: first what is
stored, then (``after_seq`` the last stored line, ``follow``) what comes next, so the
daemon stitches the two by sequence number and no line is missed or shown twice,
whatever arrives while the stored part is read. LLM activity (tool calls, results,
usage) is part of that stored log (``godel_tui.panes.transcript``); the event feed adds
exec start and end lines and the few activities the log does not store. Events that
come while the stored part is read wait until it is shown, so that they land after it.

Switching agents ends the old stream; a generation number keeps any line of it still
in flight out of the new agent's log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from core.api.client import DaemonClient
from core.errors import GodelError
from core.events import AgentActivity, AgentOutput, Event, ExecFinished, ExecStarted
from godel_tui.actions import pane_bindings
from godel_tui.model import ConsoleModel
from godel_tui.panes import transcript
from godel_tui.panes.transcript import STREAM_STYLES, Transcript
from godel_tui.render import GLYPHS, agent_label
from godel_tui.widgets.log_view import LogView

if TYPE_CHECKING:
    from godel_tui.app import GodelApp

HELD_MAX = 1_000  # events kept while the stored part is read (the rest: in the log)


class SearchInput(Input):
    """The log's search bar; Esc closes it."""

    BINDINGS: ClassVar = [Binding("escape", "close", "Close", show=False)]

    def action_close(self) -> None:
        pane = next(a for a in self.ancestors if isinstance(a, AgentLogPane))
        pane.close_search()


class AgentLogPane(Vertical):
    BINDINGS: ClassVar = pane_bindings("log")
    DEFAULT_CSS = """
    AgentLogPane #log-search { display: none; height: 1; border: none; padding: 0 1; }
    AgentLogPane #log-search.open { display: block; }
    """

    def __init__(
        self, model: ConsoleModel, *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.model = model
        self.agent_id: str | None = None
        self.state = ""  # where the log is: reading stored output, live, ended, unavailable
        self._gen = 0  # bumped per agent shown: a callback of an older stream is ignored
        self._seq = 0  # of the last stored line shown
        self._transcript = Transcript()
        self._catching_up = False
        self._held: list[Event] = []
        self._trailing: tuple[str, int] | None = None  # (exec, line) of a newest end line
        self._stream_done = True  # no stream running (ended, failed or none)
        self._ended = False  # the agent ended: no stream to resume
        # Held, not queried: a stream's last lines may come while the app tears down.
        self._title = Static("no agent selected", id="log-title")
        self._title_text: Text | None = None
        self._log = LogView(id="log")

    def compose(self) -> ComposeResult:
        yield self._title
        yield self._log
        yield SearchInput(placeholder="search the log (Enter; Esc closes)", id="log-search")

    @property
    def log_view(self) -> LogView:
        return self._log

    @property
    def _app(self) -> GodelApp:
        return cast("GodelApp", self.app)

    # the selected agent --------------------------------------------------------------

    def show(self, agent_id: str | None) -> None:
        """Show ``agent_id``'s log (None: none); the same agent again changes nothing."""
        if agent_id == self.agent_id:
            return
        self.agent_id = agent_id
        self._gen += 1
        self._seq = 0
        self._transcript = Transcript()
        self._held.clear()
        self._catching_up = False
        self._trailing = None
        self._ended = False
        self.log_view.clear()
        self.workers.cancel_group(self, "log-stream")
        self._stream_done = True
        if agent_id is not None:
            self._start()
        self._render_title()

    def _start(self) -> None:
        assert self.agent_id is not None
        if self._app.playback is not None:
            # A replay has no daemon to ask: the output is the recording's own events.
            self.state = "from the recording"
            return
        self._stream_done = False
        self._catching_up = True
        self.state = "reading stored output"
        self._stream(self._gen, self.agent_id, self._seq)

    def resync(self) -> None:
        """After the feed reconnected: resume a stream that failed, from its last line."""
        replay = self._app.playback is not None
        if self.agent_id is not None and self._stream_done and not self._ended and not replay:
            self.log_view.write_line("— reconnected —", "dim")
            self._start()
        self._render_title()  # the agent's status is the new snapshot's (a replay's seek)

    def feed_events(self, events: list[Event]) -> None:
        """The frame's events (already applied to the model): exec boundaries and the
        activity the stored log does not carry, for the shown agent."""
        if self.agent_id is None:
            return
        touched = False
        for e in events:
            if getattr(e, "agent_id", None) != self.agent_id:
                continue
            touched = True
            replay = self._app.playback is not None
            if isinstance(e, AgentOutput):
                if replay:  # a replay's only source of output
                    self._row(e.stream, e.data, e.exec_id)
                continue
            if not isinstance(e, ExecStarted | ExecFinished | AgentActivity):
                continue
            if isinstance(e, AgentActivity) and transcript.stored_in_log(e):
                if replay and (text := transcript.stored_text(e)):
                    self._row("system", text, e.exec_id)  # as the stored log shows it
                continue
            if self._catching_up:
                if len(self._held) < HELD_MAX:
                    self._held.append(e)
            else:
                self._event(e)
        if touched:
            self._render_title()

    def _event(self, e: ExecStarted | ExecFinished | AgentActivity) -> None:
        log = self.log_view
        if isinstance(e, ExecStarted):
            if self._transcript.mark(e.exec_id):
                log.write_lines([transcript.started(e)])
        elif isinstance(e, ExecFinished):
            log.write_lines([transcript.finished(e)])
            # Its last output may still be on the way (another connection): it goes above.
            self._trailing = (e.exec_id, log.total - 1)
        else:
            log.write_lines([transcript.activity(e)])

    def _row(self, stream: str, data: str, exec_id: str | None) -> None:
        log = self.log_view
        moved = None
        t = self._trailing
        if t is not None and t[0] == exec_id and t[1] == log.total - 1 and log.lines:
            moved = log.pop_line()
        self._trailing = None
        lines, out = self._transcript.row(stream, data, exec_id)
        if lines:
            log.write_lines(lines)
        if out:
            log.write(out, STREAM_STYLES.get(stream, ""), stream)
        if moved is not None and exec_id is not None:
            log.write_lines([moved])
            self._trailing = (exec_id, log.total - 1)

    def _caught_up(self) -> None:
        self._catching_up = False
        held, self._held = self._held, []
        for e in held:
            if isinstance(e, ExecStarted | ExecFinished | AgentActivity):
                self._event(e)
        self.state = "live"
        self._render_title()

    @work(group="log-stream", exclusive=True)
    async def _stream(self, gen: int, agent_id: str, after_seq: int) -> None:
        log = self.log_view
        client = DaemonClient(self._app.paths)

        def on_line(data: Any) -> None:
            if gen != self._gen or not self.is_attached or not isinstance(data, dict):
                return
            seq = int(data.get("seq", 0))
            if seq <= self._seq:  # never twice, whatever the daemon resends
                return
            self._seq = seq
            exec_id = data.get("exec_id")
            self._row(
                str(data.get("stream", "stdout")),
                str(data.get("data", "")),
                exec_id if isinstance(exec_id, str) else None,
            )

        try:
            await client.connect()
            await client.call("agent.logs", {"id": agent_id, "after_seq": after_seq}, on_line)
            if gen != self._gen:
                return
            self._caught_up()
            await client.call(
                "agent.logs", {"id": agent_id, "after_seq": self._seq, "follow": True}, on_line
            )
            ending = ("— the agent ended —", "dim")
            self._ended = True
        except (GodelError, OSError) as e:
            ending = (f"— log unavailable: {getattr(e, 'message', e)} —", "yellow")
        finally:
            await client.close()
        if gen == self._gen and self.is_attached:  # not when the app is closing
            self._stream_done = True
            if self._catching_up:
                self._caught_up()
            self.state = "the agent ended" if self._ended else "unavailable"
            log.write_line(*ending)
            self._render_title()

    # title ---------------------------------------------------------------------------

    def _render_title(self) -> None:
        """Called per frame with events of the agent: repaints only what changed, and
        without a layout (the title is one line, godel.tcss)."""
        a = self.model.agent(self.agent_id) if self.agent_id else None
        if a is None:
            text = Text("no agent selected" if self.agent_id is None else self.agent_id)
        else:
            glyph, style = GLYPHS.get(a.status, ("?", "magenta"))
            runtime = f"{a.runtime} · {a.model}" if a.model else a.runtime
            reason = f": {a.status_reason}" if a.status_reason else ""
            text = Text.assemble(
                (agent_label(a), "bold"),
                f"  {runtime}  ",
                (f"{glyph} {a.status.value}", style),
                (f"{reason} [{a.status_source.value}]", "dim"),
            )
        if text != self._title_text:
            self._title_text = text
            self._title.update(text, layout=False)
        log = self.log_view
        parts = [self.state] if self.state and self.agent_id else []
        parts.append("following" if log.follow else "paused (f: follow)")
        if log.search:
            parts.append(f"/ {log.search}")
        subtitle = " · ".join(parts)
        if subtitle != self.border_subtitle:
            self.border_subtitle = subtitle

    # follow and search ---------------------------------------------------------------

    def toggle_follow(self) -> None:
        log = self.log_view
        log.follow = not log.follow
        if log.follow:
            log.current = None
            log.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        self._render_title()

    def action_search(self) -> None:
        bar = self.query_one(SearchInput)
        bar.value = self.log_view.search
        bar.add_class("open")
        bar.focus()

    def close_search(self) -> None:
        self.query_one(SearchInput).remove_class("open")
        self.log_view.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "log-search":
            return
        event.stop()
        self.close_search()
        log = self.log_view
        log.search = event.value.strip()
        log.current = None
        log.refresh()
        if log.search:
            # Following: the newest match; paused: the first one from the top of the screen.
            if log.follow:
                self._jump(log.find(log.search, log.total - 1, backwards=True))
            else:
                self._jump(log.find(log.search, log.first_visible))
        self._render_title()

    def action_search_next(self) -> None:
        self._step(backwards=False)

    def action_search_previous(self) -> None:
        self._step(backwards=True)

    def _step(self, backwards: bool) -> None:
        log = self.log_view
        if not log.search:
            self.notify("no search yet: press / to search the log")
            return
        if log.current is None:
            start = log.first_visible
        else:
            start = log.current - 1 if backwards else log.current + 1
        self._jump(log.find(log.search, start, backwards=backwards))

    def _jump(self, number: int | None) -> None:
        log = self.log_view
        if number is None:
            self.notify(f"no line matches {log.search!r}", severity="warning")
            return
        log.current = number
        log.jump_to(number)
        self._render_title()

    # prompt, steer, abort ------------------------------------------------------------

    def _target(self, action_id: str) -> str | None:
        if not self._app._allowed(action_id):
            return None
        if self.agent_id is None:
            self.notify("no agent selected")
        return self.agent_id

    def action_prompt(self) -> None:
        agent = self._target("log.prompt")
        if agent is None:
            return
        from godel_tui.app import PromptScreen  # the app imports this module

        def done(text: str | None) -> None:
            if text:
                self._call("agent.exec", {"id": agent, "input": text}, agent)

        self.app.push_screen(
            PromptScreen(f"prompt {agent} (an LLM agent's prompt, a shell agent's command)"),
            done,
        )

    def action_steer(self) -> None:
        agent = self._target("log.steer")
        if agent is None:
            return
        from godel_tui.app import PromptScreen

        def done(text: str | None) -> None:
            if text:
                self._call("agent.steer", {"id": agent, "message": text}, agent)

        self.app.push_screen(PromptScreen(f"steer {agent} (a message to its running exec)"), done)

    def action_abort(self) -> None:
        agent = self._target("log.abort")
        if agent is not None:
            self._call("agent.abort", {"id": agent}, agent)

    @work(group="log-calls")
    async def _call(self, method: str, params: dict[str, Any], agent: str) -> None:
        try:
            result = await self._app.feed.call(method, params)
        except GodelError as e:
            self.notify(e.message, severity="error", timeout=8)
            return
        done = result if isinstance(result, dict) else {}
        if method == "agent.steer":
            if done.get("delivered"):
                self.notify(f"steered {agent}")
            else:
                self.notify(f"{agent} has no running exec to steer", severity="warning")
        elif method == "agent.abort":
            if done.get("aborted"):
                self.notify(f"abort sent to {agent}")
            else:
                self.notify(f"{agent} has no running exec to abort", severity="warning")
