"""A virtual log: lines kept as plain text, rendered only when on screen.

``RichLog`` pre-renders every line (100k lines: 19 s and 330 MiB here); this keeps
``(text, style)`` pairs in a bounded ring (``LogLines``: O(1) append and index, a
``deque`` indexes in O(n)) and builds a strip for the visible ones. When the ring is
full the oldest line goes, and the top line says how many went.

Search highlights every match on the visible lines; ``find`` scans the ring once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

MAX_LINES = 100_000
MAX_LINE_CHARS = 4_000  # a longer line is cut: one 1 MB line would be re-cropped per frame
_TAB = "    "
# Colour and cursor codes (CSI), OSC titles and links, then any other control character.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Line = tuple[str, str]  # (text, style)


class LogLines:
    """A ring of at most ``maxlen`` lines; index 0 is the oldest kept."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("a log keeps at least one line")
        self.maxlen = maxlen
        self._buf: list[Line] = []
        self._start = 0  # where index 0 is in _buf once it is full

    def __len__(self) -> int:
        return len(self._buf)

    def __getitem__(self, index: int) -> Line:
        n = len(self._buf)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("log line index out of range")
        return self._buf[(self._start + index) % n]  # _start is 0 until the ring is full

    def __setitem__(self, index: int, line: Line) -> None:
        n = len(self._buf)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("log line index out of range")
        self._buf[(self._start + index) % n] = line

    def __iter__(self) -> Iterator[Line]:
        buf, start = self._buf, self._start
        yield from buf[start:]
        yield from buf[:start]

    def append(self, line: Line) -> bool:
        """Add a line; True if the oldest one was dropped to make room."""
        if len(self._buf) < self.maxlen:
            self._buf.append(line)
            return False
        self._buf[self._start] = line
        self._start = (self._start + 1) % self.maxlen
        return True

    def pop(self) -> Line:
        """Remove and return the newest line."""
        if not self._buf:
            raise IndexError("pop from an empty log")
        if self._start:
            # Full and rotated: put it in order once (rare: a marker moved past a late line).
            self._buf, self._start = list(self), 0
        return self._buf.pop()

    def clear(self) -> None:
        self._buf.clear()
        self._start = 0


def clean(text: str) -> str:
    """One displayable line: no escape codes, tabs expanded, what a ``\\r`` overwrote gone."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    text = text.rstrip("\r")
    if "\r" in text:
        text = text.rsplit("\r", 1)[1]
    text = text.replace("\t", _TAB)
    if len(text) > MAX_LINE_CHARS:
        text = f"{text[:MAX_LINE_CHARS]} … ({len(text) - MAX_LINE_CHARS:,} more characters)"
    return _CONTROL.sub("", text)


class LogView(ScrollView, can_focus=True):
    DEFAULT_CSS = "LogView { height: 1fr; }"

    def __init__(self, *, max_lines: int = MAX_LINES, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines = LogLines(max_lines)
        self.follow = True
        self.dropped = 0  # lines that fell off the front (max_lines)
        self._open: str | None = None  # the stream whose unfinished line is the last line
        self._width = 0
        self._styles: dict[str, Style] = {}
        self.search = ""  # highlighted on screen (case-insensitive)
        self.current: int | None = None  # the line number of the current match
        self._sync_pending = False

    # writing -------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Lines written since the last clear; line numbers run from 0 to total - 1."""
        return self.dropped + len(self.lines)

    def clear(self) -> None:
        self.lines.clear()
        self._open = None
        self._width = 0
        self.dropped = 0
        self.current = None
        self._sync()

    def write(self, data: str, style: str = "", stream: str = "stdout") -> None:
        """Append output. An unfinished line shows at once and grows as the rest of it
        comes, as long as nothing else was written after it."""
        if not data:
            return
        ends = data.endswith("\n")
        pieces = data.split("\n")
        if ends:
            pieces.pop()
        if pieces and self._open == stream and self.lines:
            text, st = self.lines[-1]
            self._set_last(text + pieces[0], st)
            pieces = pieces[1:]
        for piece in pieces:
            self._add(piece, style)
        self._open = None if ends else stream
        self._schedule()

    def write_line(self, line: str, style: str = "") -> None:
        self.write_lines([(line, style)])

    def write_lines(self, lines: list[Line]) -> None:
        """Whole lines (markers, tool calls): they end any unfinished line first."""
        self._open = None
        for text, style in lines:
            self._add(text, style)
        self._schedule()

    def pop_line(self) -> Line:
        """Take back the newest line (to put it again after a late one)."""
        self._open = None
        line = self.lines.pop()
        self._schedule()
        return line

    def _add(self, text: str, style: str) -> None:
        text = clean(text)
        if self.lines.append((text, style)):
            self.dropped += 1
        if len(text) > self._width:
            self._width = len(text)

    def _set_last(self, text: str, style: str) -> None:
        text = clean(text)
        self.lines[-1] = (text, style)
        if len(text) > self._width:
            self._width = len(text)

    # layout --------------------------------------------------------------------------

    @property
    def top(self) -> int:
        """Screen lines above line 0: the "earlier lines dropped" note."""
        return 1 if self.dropped else 0

    def _schedule(self) -> None:
        # Many writes between two frames cost one resize and one scroll, not one each.
        if not self._sync_pending and self.is_mounted:
            self._sync_pending = True
            self.call_next(self._sync)

    def _sync(self) -> None:
        self._sync_pending = False
        if not self.is_mounted:
            return
        self.virtual_size = Size(self._width, len(self.lines) + self.top)
        if self.follow:
            # force: right after a resize the scrollbar (and so "can scroll") is not there yet
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        self.refresh()

    def jump_to(self, number: int) -> None:
        """Show line ``number`` (mid-screen) and stop following."""
        self.follow = False
        self._sync()
        y = number - self.dropped + self.top
        self.scroll_to(
            y=max(0, y - self.size.height // 2), animate=False, immediate=True, force=True
        )
        self.refresh()

    # search --------------------------------------------------------------------------

    def find(self, term: str, start: int, backwards: bool = False) -> int | None:
        """The number of the first line from ``start`` (itself included) containing
        ``term``, wrapping around; None if no line does."""
        term = term.lower()
        n = len(self.lines)
        if not term or n == 0:
            return None
        first = min(max(start - self.dropped, 0), n - 1)
        step = -1 if backwards else 1
        for k in range(n):
            i = (first + step * k) % n
            if term in self.lines[i][0].lower():
                return self.dropped + i
        return None

    @property
    def first_visible(self) -> int:
        """The number of the line at the top of the screen."""
        return self.dropped + max(0, int(self.scroll_offset.y) - self.top)

    # rendering -----------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        st = self._styles.get(name)
        if st is None:
            st = self._styles[name] = Style.parse(name) if name else Style()
        return st

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        row = y + scroll_y
        if row < self.top:
            note = f"… {self.dropped:,} earlier lines dropped (the log keeps {self.lines.maxlen:,})"
            return Strip([Segment(note, self._style("dim italic"))]).crop_extend(
                scroll_x, scroll_x + width, None
            )
        index = row - self.top
        if index >= len(self.lines):
            return Strip.blank(width)
        text, style = self.lines[index]
        base = self._style(style)
        if self.search and self.search.lower() in text.lower():
            current = self.current == self.dropped + index
            hit = self._style("bold black on dark_orange" if current else "black on yellow")
            segments = _highlight(text, self.search.lower(), base, hit)
        else:
            segments = [Segment(text, base)]
        return Strip(segments).crop_extend(scroll_x, scroll_x + width, None)


def _highlight(text: str, term: str, base: Style, hit: Style) -> list[Segment]:
    lower = text.lower()
    if len(lower) != len(text):  # a few characters lower to two: offsets would not match
        return [Segment(text, base)]
    out: list[Segment] = []
    at = 0
    while True:
        i = lower.find(term, at)
        if i < 0:
            break
        if i > at:
            out.append(Segment(text[at:i], base))
        out.append(Segment(text[i : i + len(term)], base + hit))
        at = i + len(term)
    if at < len(text):
        out.append(Segment(text[at:], base))
    return out
