"""The ``:`` command line (as k9s's): one input at the bottom, Tab completion, history.

The line under the input says the usage of the command being typed, or what Tab can
complete to; Enter hands the line back (the console runs it), Esc drops it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Static

from godel_tui.commands import BY_NAME, SPECS, common_prefix, complete

Names = Callable[[], Mapping[str, Sequence[str]]]


class History:
    """Lines run before, oldest first; up and down walk them, keeping the line being
    typed (the draft) to come back to."""

    def __init__(self, limit: int = 200) -> None:
        self.lines: list[str] = []
        self.limit = limit
        self._at: int | None = None  # index into lines while walking; None: at the draft
        self._draft = ""

    def add(self, line: str) -> None:
        line = line.strip()
        if line and (not self.lines or self.lines[-1] != line):
            self.lines.append(line)
            del self.lines[: -self.limit]
        self._at = None

    def older(self, current: str) -> str | None:
        """The line before the one shown (None: nothing older)."""
        if not self.lines:
            return None
        if self._at is None:
            self._draft = current
            self._at = len(self.lines)
        if self._at == 0:
            return None
        self._at -= 1
        return self.lines[self._at]

    def newer(self) -> str | None:
        """The line after the one shown, then the draft (None: already at the draft)."""
        if self._at is None:
            return None
        self._at += 1
        if self._at >= len(self.lines):
            self._at = None
            return self._draft
        return self.lines[self._at]


class CommandSuggester(Suggester):
    """Shows the one completion there is as grey text (Right accepts it, as Tab does)."""

    def __init__(self, names: Names) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.names = names

    async def get_suggestion(self, value: str) -> str | None:
        fits = complete(value, self.names())
        return fits[0] if len(fits) == 1 else None


def hint(line: str) -> str:
    """The line under the input: the usage of the command typed, or every command."""
    verb = line.split(maxsplit=1)[0].lower() if line.strip() else ""
    spec = BY_NAME.get(verb)
    if spec is not None:
        return f":{spec.usage}  —  {spec.help}"
    return "commands: " + "  ".join(s.name for s in SPECS) + "   (Tab completes, ↑↓ history)"


class CommandLine(ModalScreen[str | None]):
    BINDINGS: ClassVar = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("up", "older", "Older", show=False),
        Binding("down", "newer", "Newer", show=False),
        Binding("tab", "complete", "Complete", show=False, priority=True),
    ]
    DEFAULT_CSS = """
    CommandLine { align: left bottom; background: $background 20%; }
    CommandLine > Vertical { height: auto; width: 100%; background: $surface;
        border-top: solid $accent; padding: 0 1; }
    CommandLine #command-row { height: 1; }
    CommandLine #colon { width: 2; color: $accent; text-style: bold; }
    CommandLine Input { border: none; height: 1; padding: 0; width: 1fr; }
    CommandLine Input:focus { border: none; }  /* Input's own tall one would hide the text */
    CommandLine #command-hint { height: auto; color: $text-muted; }
    """

    def __init__(self, history: History, names: Names, value: str = "") -> None:
        super().__init__()
        self.history = history
        self.names = names
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            with Horizontal(id="command-row"):
                yield Static(":", id="colon")
                yield Input(
                    value=self.value,
                    placeholder="spawn shell 2 · kill · exec TEXT · scale SWARM N · help",
                    suggester=CommandSuggester(self.names),
                    id="command",
                )
            yield Static(hint(self.value), id="command-hint")

    @property
    def input(self) -> Input:
        return self.query_one("#command", Input)

    def on_mount(self) -> None:
        self.input.focus()
        self.input.cursor_position = len(self.input.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#command-hint", Static).update(hint(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.history.add(event.value)
        self.dismiss(event.value)

    def _show(self, line: str | None) -> None:
        if line is not None:
            self.input.value = line
            self.input.cursor_position = len(line)

    def action_older(self) -> None:
        self._show(self.history.older(self.input.value))

    def action_newer(self) -> None:
        self._show(self.history.newer())

    def action_complete(self) -> None:
        line = self.input.value
        fits = complete(line, self.names())
        if not fits:
            return
        self._show(common_prefix(fits) if len(fits) > 1 else fits[0])
        if len(fits) > 1:
            words = [f.rstrip().rpartition(" ")[2] or f.strip() for f in fits]
            self.query_one("#command-hint", Static).update("  ".join(words))

    def action_cancel(self) -> None:
        self.dismiss(None)
