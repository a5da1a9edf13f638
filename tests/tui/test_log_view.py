"""The virtual log: a bounded ring, partial lines, search, and what it renders at the ends."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.strip import Strip

from godel_tui.widgets.log_view import MAX_LINE_CHARS, LogLines, LogView, clean


def text(strip: Strip) -> str:
    return "".join(s.text for s in strip).rstrip()


def test_ring_keeps_the_newest_lines_in_order() -> None:
    ring = LogLines(3)
    assert [ring.append((str(i), "")) for i in range(5)] == [False, False, False, True, True]
    assert [t for t, _ in ring] == ["2", "3", "4"]
    assert (ring[0], ring[-1], len(ring)) == (("2", ""), ("4", ""), 3)
    ring[-1] = ("four", "red")
    assert ring[2] == ("four", "red")
    assert ring.pop() == ("four", "red")  # rotated: still the newest
    assert [t for t, _ in ring] == ["2", "3"]
    ring.append(("5", ""))
    assert [t for t, _ in ring] == ["2", "3", "5"]
    with pytest.raises(IndexError):
        ring[3]


def test_unfinished_lines_grow_until_something_else_is_written() -> None:
    log = LogView()
    log.write("hel")
    log.write("lo\nwor", stream="stdout")
    log.write("oops\n", "red", stream="stderr")  # another stream: a line of its own
    log.write("ld\n")
    log.write_line("marker", "bold")
    assert list(log.lines) == [
        ("hello", ""),
        ("wor", ""),
        ("oops", "red"),
        ("ld", ""),
        ("marker", "bold"),
    ]


def test_lines_are_cleaned() -> None:
    assert clean("\x1b[31mred\x1b[0m\tx\r") == "red    x"
    assert clean("10%\r50%\r100%") == "100%"
    long = clean("x" * (MAX_LINE_CHARS + 10))
    assert long.endswith("… (10 more characters)")


class _LogApp(App[None]):
    def __init__(self, log: LogView) -> None:
        super().__init__()
        self.log_view = log

    def compose(self) -> ComposeResult:
        yield self.log_view


async def test_200k_lines_stay_bounded_and_render_right_at_both_ends() -> None:
    log = LogView(max_lines=50_000)
    async with _LogApp(log).run_test(size=(80, 20)) as pilot:
        for i in range(200_000):
            log.write(f"line {i}\n")
        await pilot.pause()
        assert len(log.lines) == 50_000 and log.dropped == 150_000 and log.total == 200_000
        assert log.lines[0] == ("line 150000", "") and log.lines[-1] == ("line 199999", "")
        assert log.virtual_size.height == 50_001  # the note, then the lines
        # Following: the bottom of the screen is the newest line.
        height = log.size.height
        assert text(log.render_line(height - 1)) == "line 199999"
        log.follow = False
        log.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        assert text(log.render_line(0)).startswith("… 150,000 earlier lines dropped")
        assert text(log.render_line(1)) == "line 150000"
        # Search runs over the kept lines only, wraps, and jumps.
        assert log.find("line 1500", log.total - 1, backwards=True) == 150_099
        assert log.find("line 199999", 0) == 199_999
        assert log.find("line 5\n", 0) is None
        log.search, log.current = "199998", 199_998
        log.jump_to(199_998)
        await pilot.pause()
        row = 199_998 - log.dropped + log.top - int(log.scroll_offset.y)
        segments = list(log.render_line(row))
        assert [s.text for s in segments][:2] == ["line ", "199998"]
        assert segments[1].style is not None and segments[1].style.bgcolor is not None


async def test_clear_forgets_everything() -> None:
    log = LogView(max_lines=10)
    async with _LogApp(log).run_test(size=(80, 20)) as pilot:
        for i in range(25):
            log.write_line(str(i))
        log.clear()
        await pilot.pause()
        assert (len(log.lines), log.dropped, log.virtual_size.height) == (0, 0, 0)
        assert text(log.render_line(0)) == ""
