"""``?``: the keys of the focused pane and of the whole console, the ``/`` filter grammar
and the ``:`` commands, all from their registries (``godel_tui.actions``,
``godel_tui.filter``, ``godel_tui.commands``), with the keys as the user's keymap binds
them. ``help_sections`` is pure; ``HelpScreen`` shows it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen
from textual.widgets import Static

from godel_tui.actions import ACTIONS, Action
from godel_tui.commands import SPECS
from godel_tui.filter import KEYS as FILTER_KEYS

PANES = {
    "app": "everywhere",
    "swarm": "agents pane",
    "log": "log pane",
    "router": "router pane",
    "budget": "spend pane",
    "replay": "replay (godel replay)",
    "runs": "runs view",
}
READ_ONLY_NOTE = " (disabled: read-only)"

Section = tuple[str, list[tuple[str, str]]]


def key_display(keys: str) -> str:
    """``ctrl+backslash,question_mark`` -> ``ctrl+\\ ?``: as the user presses them."""
    shown = []
    for key in keys.split(","):
        *mods, name = key.strip().split("+")
        shown.append("+".join([*mods, format_key(name)]))
    return " ".join(shown)


def bound_keys(action: Action, keymap: Mapping[str, str]) -> str:
    """The keys that run ``action`` now: the user's, else the default."""
    return keymap.get(action.id, action.keys)


def help_sections(
    pane: str, keymap: Mapping[str, str], read_only: bool, replay: bool = False
) -> list[Section]:
    def rows(where: str) -> list[tuple[str, str]]:
        out = []
        for a in ACTIONS:
            if a.pane == where:
                note = READ_ONLY_NOTE if read_only and a.changes_state else ""
                out.append((key_display(bound_keys(a, keymap)), f"{a.help}{note}"))
        return out

    sections: list[Section] = []
    if pane != "app" and rows(pane):
        sections.append((f"Keys: {PANES.get(pane, pane)}", rows(pane)))
    if replay:
        sections.append((f"Keys: {PANES['replay']}", rows("replay")))
    sections.append(("Keys: everywhere", rows("app")))
    sections.append(
        (
            "Filter grammar (/ or :filter)",
            [
                ("key:value", f"the field starts with value; keys: {', '.join(FILTER_KEYS)}"),
                ("key:a,b", "any of the values (status:busy,idle)"),
                ("word", "any field contains word"),
                ("!term", "the term must not hold (!idle, !swarm:api)"),
                ("a b c", "every term must hold: status:busy runtime:pi !swarm:api"),
            ],
        )
    )
    commands = []
    for s in SPECS:
        note = READ_ONLY_NOTE if read_only and s.changes_state else ""
        alias = f" (also :{', :'.join(s.aliases)})" if s.aliases else ""
        commands.append((f":{s.usage}", f"{s.help}{alias}{note}"))
    sections.append((": commands (Tab completes, ↑↓ history)", commands))
    return sections


def plain_text(sections: list[Section]) -> str:
    lines = []
    for title, rows in sections:
        lines.append(title)
        lines.extend(f"  {left}  {right}" for left, right in rows)
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar = [
        Binding("escape,q,question_mark", "close", "Close", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 120; height: 90%;
        border: round $accent; background: $surface; padding: 0 1; }
    HelpScreen .help-title { text-style: bold; color: $accent; margin-top: 1; }
    """

    def __init__(
        self, pane: str, keymap: Mapping[str, str], read_only: bool, replay: bool = False
    ) -> None:
        super().__init__()
        self.pane = pane
        self.sections = help_sections(pane, keymap, read_only, replay)
        self.text = plain_text(self.sections)  # what it says, for tests and copying

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "help  (esc closes)"
            for title, rows in self.sections:
                yield Static(title, classes="help-title", markup=False)
                table = Table.grid(padding=(0, 2))
                table.add_column(style="bold", no_wrap=True)
                table.add_column()
                for left, right in rows:
                    table.add_row(Text(left), Text(right))
                yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
