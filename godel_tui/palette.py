"""The command palette's console commands (ctrl+p): every registered action
(``godel_tui.actions``), titled for what it would act on now ("Kill 3 marked agents"),
and every ``:`` command as a template that opens the command line filled in. A line
typed in the palette that parses as a ``:`` command can be run from there.

In a read-only console the actions and commands that change state are listed, marked
disabled; choosing one says why instead of running it. ``entries`` is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.css.query import NoMatches
from textual.fuzzy import Matcher
from textual.markup import escape
from textual.screen import Screen
from textual.widget import Widget

from godel_tui.actions import ACTIONS
from godel_tui.commands import SPECS, CommandError, parse, spec_of
from godel_tui.render import agent_label
from godel_tui.screens.help import bound_keys, key_display
from godel_tui.widgets.agent_table import AgentTable

if TYPE_CHECKING:
    from godel_tui.app import GodelApp

READ_ONLY = "disabled: this console was started with --read-only"
# Actions on agents, and how their title names what they would act on.
_ON_AGENTS = {
    "agent.kill": "Kill",
    "agent.exec": "Exec on",
    "agent.steer": "Steer",
    "agent.abort": "Abort the exec of",
}
# Actions of one pane say which, so the log's "Search" is not taken for another.
_PANE_PREFIX = {"log": "Log", "replay": "Replay", "runs": "Runs"}
_TEMPLATE_WEIGHT = 0.8  # a typed "kill" ranks the action above the :kill template


@dataclass(frozen=True)
class Entry:
    title: str
    help: str
    action: str | None = None  # a Textual action run on the app (or its pane's widget)
    command: str | None = None  # a ":" line the command line opens with
    disabled: str | None = None  # why it cannot run now
    local: str | None = None  # the action id, when its pane's widget binds it


def _agents_phrase(marked: int, selected: str | None) -> str | None:
    if marked:
        return f"{marked} marked agent{'s' if marked != 1 else ''}"
    return selected


def entries(
    *,
    marked: int,
    selected: str | None,
    read_only: bool,
    keymap: Mapping[str, str],
    replay: bool = False,
) -> list[Entry]:
    out = []
    for a in ACTIONS:
        if a.id == "app.palette" or (a.pane == "replay" and not replay):
            continue
        title = a.description
        if a.id in _ON_AGENTS:
            phrase = _agents_phrase(marked, selected)
            title = f"{_ON_AGENTS[a.id]} {phrase}" if phrase else f"{title} (no agent selected)"
        elif a.pane in _PANE_PREFIX:
            title = f"{_PANE_PREFIX[a.pane]}: {title}"
        disabled = READ_ONLY if read_only and a.changes_state else None
        keys = key_display(bound_keys(a, keymap))
        out.append(
            Entry(
                title,
                f"{a.help}  [{keys}]",
                action=a.action,
                disabled=disabled,
                local=a.id if a.local else None,
            )
        )
    for s in SPECS:
        disabled = READ_ONLY if read_only and s.changes_state else None
        out.append(Entry(f":{s.usage}", s.help, command=f"{s.name} ", disabled=disabled))
    return out


class ConsoleCommands(Provider):
    @property
    def console(self) -> GodelApp:
        return cast("GodelApp", self.app)

    def _entries(self) -> list[Entry]:
        app = self.console
        try:
            selected = self.screen.query_one(AgentTable).selected
        except NoMatches:
            selected = None
        agent = app.model.agent(selected) if selected else None
        if agent is not None:
            selected = agent_label(agent)
        return entries(
            marked=len(app.model.marked),
            selected=selected,
            read_only=app.read_only,
            keymap=app.commands.keymap,
            replay=app.playback is not None,
        )

    def _run(self, entry: Entry) -> None:
        app = self.console
        if entry.disabled:
            app.notify(f"{entry.title}: {entry.disabled}", severity="warning", markup=False)
        elif entry.local is not None and entry.action is not None:
            widget = _binding_widget(self.screen, entry.local)
            if widget is None:
                app.notify(f"{entry.title}: not in this view", severity="warning", markup=False)
            else:
                widget.focus()  # the pane's keys act on the focused pane
                app.call_later(app.run_action, entry.action, widget)
        elif entry.action is not None:
            app.call_later(app.run_action, entry.action)
        elif entry.command is not None:
            app.commands.open(entry.command)

    async def discover(self) -> Hits:
        for e in self._entries():
            yield DiscoveryHit(Content(e.title), partial(self._run, e), e.title, _help(e))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for e in self._entries():
            score = matcher.match(e.title)
            if score > 0:
                if e.command is not None:
                    score *= _TEMPLATE_WEIGHT
                yield Hit(
                    score, _highlight(matcher, e.title), partial(self._run, e), e.title, _help(e)
                )
        line = query.strip()
        if " " not in line:
            return
        try:
            spec = spec_of(parse(line))
        except CommandError:
            return
        run = partial(self.console.commands.run, line)
        yield Hit(1.0, Content(f"Run :{line}"), run, f"Run :{line}", escape(spec.help))


def _binding_widget(screen: Screen[object], action_id: str) -> Widget | None:
    """The widget whose own bindings hold ``action_id`` (a pane's local action)."""
    for node in screen.query("*"):
        if any(getattr(b, "id", None) == action_id for b in type(node).BINDINGS):
            return node
    return None


def _highlight(matcher: Matcher, title: str) -> Content:
    """``matcher.highlight`` that reads ``title`` as text, not markup ("[N]" is text)."""
    content = Content(title)
    _, offsets = matcher.fuzzy_search.match(matcher.query, title)
    for i in offsets:
        if not title[i].isspace():
            content = content.stylize(matcher.match_style, i, i + 1)
    return content


def _help(e: Entry) -> str:
    """The help line, as markup (the palette reads it so): brackets escaped."""
    return escape(f"{e.help} ({e.disabled})" if e.disabled else e.help)
