"""One JSON-RPC call to the daemon over a blocking socket, without asyncio.

The CLI's read-only commands make one call each (a listing, or one stream such as
``agent logs --follow``); importing asyncio alone would cost them about half of a bare
``python -c "import json, click"``. This never starts a daemon: with none running it
raises DaemonNotRunning. Commands that run several calls at once, or start the daemon,
use ``core.api.client``.
"""

from __future__ import annotations

import json
import select
import socket
import sys
from collections.abc import Callable
from typing import Any

from core.api.protocol import MAX_MESSAGE, STREAM_METHOD, DaemonNotRunning, raise_error
from core.errors import DaemonError
from core.paths import GodelPaths

OnStreamSync = Callable[[Any], None]


def call(
    paths: GodelPaths,
    method: str,
    params: dict[str, Any] | None = None,
    on_stream: OnStreamSync | None = None,
) -> Any:
    """Call ``method`` on the daemon of ``paths``; return its result or raise its error.

    ``on_stream`` gets each streamed item before the result arrives.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(str(paths.socket))
        except OSError as e:
            # A refused connection is a stale socket (a killed daemon): none runs either.
            raise DaemonNotRunning(
                f"no daemon is running for {paths.home}; start one with `godel daemon start`",
                home=str(paths.home),
            ) from e
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        sock.sendall(json.dumps(request).encode() + b"\n")
        if on_stream is None:
            _notice_if_silent(paths, sock)
        with sock.makefile("rb") as reader:
            return _read_reply(paths, reader, on_stream)
    finally:
        sock.close()


SILENT_NOTICE_S = 5.0


def _notice_if_silent(paths: GodelPaths, sock: socket.socket) -> None:
    """A daemon that accepted the call but does not answer (frozen, or very busy): say
    so once on stderr, then keep waiting (nothing is left silently waiting)."""
    ready, _, _ = select.select([sock], [], [], SILENT_NOTICE_S)
    if ready:
        return
    try:
        pid = paths.pidfile.read_text().strip()
    except OSError:
        pid = "?"
    sys.stderr.write(
        f"godel: the daemon (pid {pid}) has not answered for {SILENT_NOTICE_S:g}s; "
        f"still waiting (Ctrl-C gives up; its log: {paths.log})\n"
    )
    sys.stderr.flush()


def _read_reply(paths: GodelPaths, reader: Any, on_stream: OnStreamSync | None) -> Any:
    while True:
        try:
            line = reader.readline(MAX_MESSAGE + 1)
        except OSError as e:
            raise DaemonError(f"lost the connection to the daemon: {e}") from e
        if not line.endswith(b"\n"):
            raise DaemonError(
                "the daemon closed the connection before answering (did it stop or crash? "
                f"see {paths.log})"
                if len(line) <= MAX_MESSAGE
                else f"the daemon's reply is larger than {MAX_MESSAGE} bytes"
            )
        try:
            msg = json.loads(line)
        except ValueError as e:
            raise DaemonError(f"the daemon sent a line that is not JSON: {e}") from e
        if msg.get("method") == STREAM_METHOD:
            if on_stream is not None and msg.get("params", {}).get("request_id") == 1:
                on_stream(msg["params"].get("data"))
            continue
        if msg.get("id") != 1:
            continue
        if "error" in msg:
            raise_error(msg["error"])
        return msg.get("result")
