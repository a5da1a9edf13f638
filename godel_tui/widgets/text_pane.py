"""A pane of plain text lines (the router and spend summaries), one cached strip a line.

A ``Static`` renders its whole text again on every update, through markup, wrapping
and styles: 3-4 ms for the spend pane, 4 times a second, the slowest frames of the
console under load (``godel bench tui``). Here ``set_text`` compares the new lines with
the shown ones and repaints only those that differ; a line is built from one segment.
Lines are not wrapped: a long one scrolls sideways when the pane has focus.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.segment import Segment
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip


class TextPane(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    TextPane { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.lines: list[str] = []
        self._strips: dict[int, Strip] = {}

    def set_text(self, text: str) -> None:
        new = text.split("\n")
        old = self.lines
        changed = [
            i
            for i in range(max(len(new), len(old)))
            if i >= len(new) or i >= len(old) or new[i] != old[i]
        ]
        if not changed:
            return
        self.lines = new
        for i in changed:
            self._strips.pop(i, None)
        # No narrower than the pane: a line growing by a digit inside it (a count) then
        # changes nothing of the layout.
        size = Size(max(self.size.width, *map(cell_len, new)), len(new))
        if size != self.virtual_size:
            self.virtual_size = size  # scrollbars may come or go: a full repaint
            self.refresh()
            return
        top, width, height = int(self.scroll_offset.y), self.size.width, self.size.height
        self.refresh(*(Region(0, i - top, width, 1) for i in changed if top <= i < top + height))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # built with the old colours

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = y + scroll_y
        width = self.size.width
        if index >= len(self.lines):
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(index)
        if strip is None:
            line = self.lines[index]
            strip = Strip([Segment(line, self.rich_style)], cell_len(line))
            self._strips[index] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)
