"""``godel tui --serve``: the console in a browser, through textual-serve.

textual-serve starts one ``godel tui`` process per browser tab, with the same home and
options as this command, under Textual's web driver, and relays it over a websocket.
The page has no authentication: whoever reaches the port drives the console (and so
the agents). It therefore listens on loopback unless told otherwise; from another
machine, use an SSH tunnel.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shlex
import signal
import socket
import sys
from typing import Any

from aiohttp import web
from textual_serve.server import Server

from core.paths import GodelPaths

DEFAULT_LISTEN = "127.0.0.1:8566"


class ServeError(ValueError):
    """Why the console cannot be served; the message is one line for the user."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip().removeprefix("[").removesuffix("]")
    if not sep or not host or not port.strip().isdigit() or int(port) > 65535:
        raise ServeError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True if ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_host(host: str, allow_remote: bool) -> None:
    if not allow_remote and not is_loopback(host):
        raise ServeError(
            f"--listen {host}: the console's page has no authentication, so anyone who "
            "reaches it could drive your agents; listen on 127.0.0.1 (use an SSH tunnel "
            "from elsewhere), or pass --allow-remote if you mean it"
        )


def free_port(host: str) -> int:
    """A port free on ``host`` now (for ``--listen HOST:0``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def console_command(paths: GodelPaths, read_only: bool) -> str:
    """The shell command textual-serve runs per browser tab: this console, this home."""
    args = [sys.executable, "-m", "core.cli.main", "--home", str(paths.home), "tui"]
    if read_only:
        args.append("--read-only")
    return shlex.join(args)


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ConsoleServer(Server):
    """textual-serve's server, saying where it is in one plain line (a pipe reads it)
    once it listens, and nothing more."""

    async def on_startup(self, app: Any) -> None:
        pass  # textual-serve prints a banner here, before the port is open

    def serve(self, debug: bool = False) -> None:
        # textual-serve's serve(), but for the line said once the port is open (aiohttp
        # calls ``print`` after its sites start).
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_exit)
        web.run_app(
            self._make_app(),
            host=self.host,
            port=self.port,
            handle_signals=False,
            loop=loop,
            print=self._listening,
        )

    def _listening(self, *args: Any) -> None:
        print(f"godel console at {self.public_url} (open it in a browser; Ctrl+C stops)")
        sys.stdout.flush()


def serve(paths: GodelPaths, listen: str, *, read_only: bool, allow_remote: bool) -> None:
    """Serve the console until interrupted; ``ServeError`` or ``OSError`` (the port is
    taken) if it cannot."""
    host, port = parse_listen(listen)
    check_host(host, allow_remote)
    if port == 0:
        port = free_port(host)
    url = url_of(host, port)
    server = ConsoleServer(
        console_command(paths, read_only), host=host, port=port, title="godel", public_url=url
    )
    server.serve()
