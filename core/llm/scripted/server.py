"""``ScriptedServer``: the scripted model server on a loopback port, served from a daemon
thread; and ``serve_main`` for ``godel model serve``.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType

from core.errors import ConfigError
from core.llm.scripted.answer import match_rule
from core.llm.scripted.handler import (
    RecordedRequest,
    RequestHandler,
    ScriptedHTTPServer,
    ScriptedHTTPServerV6,
)
from core.llm.scripted.request import Context
from core.llm.scripted.script import Rule, Script

__all__ = ["ScriptedServer", "serve_main"]


class ScriptedServer:
    """The scripted model server on a loopback port, served from a daemon thread."""

    def __init__(
        self, script: Script | Path | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if script is None:
            script = Script.default()
        elif not isinstance(script, Script):
            script = Script.load(Path(script))
        self.script: Script = script
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._counters: dict[int, int] = {}
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._httpd: ScriptedHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = threading.Event()

    # lifecycle

    def start(self) -> None:
        """Bind and start serving; returns once the port is listening."""
        if self._httpd is not None:
            return
        cls = ScriptedHTTPServerV6 if ":" in self.host else ScriptedHTTPServer
        httpd = cls((self.host, self.port), RequestHandler)
        httpd.owner = self
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._stopping.clear()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(
            target=self._serve, name=f"scripted-model-server:{self.port}", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        # Our own accept loop instead of serve_forever(): stop() wakes it through a socket
        # pair at once, where serve_forever polls (0.5 s per stop, or idle wake-ups).
        assert self._httpd is not None and self._wake_r is not None
        httpd, wake = self._httpd, self._wake_r
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([httpd.fileno(), wake.fileno()], [], [])
            except (OSError, ValueError):
                return
            if self._stopping.is_set():
                return
            if httpd.fileno() in ready:
                httpd.handle_request()

    def stop(self) -> None:
        """Stop accepting, hang up on open connections, and free the port."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # wakes handlers sleeping in _pause; they end at once
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._httpd = self._thread = self._wake_r = self._wake_w = None

    def __enter__(self) -> ScriptedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``: OpenAI clients append ``/v1``, Anthropic ones use it as is."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def use_script(self, script: Script) -> None:
        """Swap the script and reset the ``nth_request`` counters."""
        with self._lock:
            self.script = script
            self._counters.clear()

    def reset(self) -> None:
        """Forget recorded requests and reset the ``nth_request`` counters."""
        with self._lock:
            self.requests.clear()
            self._counters.clear()

    # internals used by the handler

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _pick(self, ctx: Context) -> tuple[int, Rule, dict[str, str]] | None:
        picked: tuple[int, Rule, dict[str, str]] | None = None
        with self._lock:  # counters must advance atomically across concurrent requests
            for i, rule in enumerate(self.script.rules):
                variables = match_rule(rule, ctx)
                if variables is None:
                    continue
                nth = rule.match.nth_request
                if nth is not None:
                    # Count every request that meets the rule's other conditions, even one
                    # an earlier rule answers, so "nth_request: 2" means the 2nd such request.
                    self._counters[i] = self._counters.get(i, 0) + 1
                    if self._counters[i] != nth:
                        continue
                if picked is None:
                    picked = (i, rule, variables)
        return picked


def serve_main(script: Path | None, host: str = "127.0.0.1", port: int = 0) -> int:
    """``godel model serve``: serve in the foreground until SIGINT/SIGTERM."""
    try:
        server = ScriptedServer(script, host, port)
        server.start()
    except ConfigError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = server.base_url
        print(f"Scripted model server on {url} (OpenAI: {url}/v1, Anthropic: {url})", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.stop()
    return 0
