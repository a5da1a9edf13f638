"""``godel tui --serve``: the console in a browser, through textual-serve, for real: the
server is a subprocess, the page is fetched over HTTP, and a websocket session (what the
page's script opens) receives the console as it draws the daemon's agents."""

from __future__ import annotations

import asyncio
import re
import signal
import socket

import aiohttp
import psutil

from tests.conftest import Godel, until
from tests.tui.test_console_live import spawn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def consoles_of(godel: Godel) -> list[psutil.Process]:
    """``godel tui`` processes started for this test's home (by textual-serve)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if f"--home {godel.home} tui" in cmd:
            out.append(p)
    return out


async def test_the_page_and_its_console_session_start(godel: Godel) -> None:
    [agent] = spawn(godel, 1)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *godel.cmd("tui", "--serve", "--listen", f"127.0.0.1:{port}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=godel.cwd,
        env=godel.env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert f"godel console at http://127.0.0.1:{port}" in line, line
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as page:
                assert page.status == 200
                assert f"ws://127.0.0.1:{port}/ws" in await page.text()
            ws_url = f"ws://127.0.0.1:{port}/ws?width=160&height=40"
            async with http.ws_connect(ws_url) as ws:
                seen = b""
                while not (b"agents" in seen and agent.encode() in seen):
                    msg = await asyncio.wait_for(ws.receive(), 30)
                    assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
                    seen += msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                assert consoles_of(godel)  # the session is a `godel tui` of this home
        # The tab is closed: textual-serve tells its console to quit.
        await until(lambda: not consoles_of(godel), within=30)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0


def test_serve_refuses_a_host_beyond_this_machine(godel: Godel) -> None:
    r = godel.run("tui", "--serve", "--listen", "0.0.0.0:0")
    assert r.returncode == 2
    assert "no authentication" in r.stderr and "--allow-remote" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = godel.run("tui", "--serve", "--listen", "nowhere")
    assert r.returncode == 2 and re.search(r"expected HOST:PORT", r.stderr), r.stderr
