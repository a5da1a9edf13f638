"""The native runtime's tools, piece by piece."""

from __future__ import annotations

import asyncio

from core.runtimes.native_tools import read_capped


async def test_a_commands_output_keeps_its_start_and_end_only() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(b"START" + b"x" * 1_000_000 + b"END")
    stream.feed_eof()
    text = await read_capped(stream, head=100, tail=50)
    assert text.startswith("START") and text.endswith("END")
    assert f"[... {1_000_008 - 150} bytes of output left out ...]" in text
    assert len(text) < 300

    short = asyncio.StreamReader()
    short.feed_data(b"all of it\n")
    short.feed_eof()
    assert await read_capped(short, head=100, tail=50) == "all of it\n"
