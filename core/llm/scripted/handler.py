"""The HTTP side of the scripted server: one ``RequestHandler`` per connection, which
records each request and answers it from the owner's script (JSON or SSE).
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import socketserver
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from core.llm.scripted.answer import ErrorAnswer, build_answer
from core.llm.scripted.encoding import (
    anthropic_json,
    anthropic_stream,
    error_body,
    openai_json,
    openai_stream,
)
from core.llm.scripted.request import ApiName, Context, Msg, anthropic_messages, openai_messages

if TYPE_CHECKING:
    from core.llm.scripted.server import ScriptedServer

__all__ = ["RecordedRequest", "RequestHandler", "ScriptedHTTPServer", "ScriptedHTTPServerV6"]

log = logging.getLogger("godel.llm.scripted")

_DISCONNECT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass
class RecordedRequest:
    """One request as the server saw it. ``headers`` keys are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None if it was not JSON)
    api: ApiName | None  # None: a path the server does not serve
    api_key: str | None = None  # from Authorization: Bearer / x-api-key
    rule: int | None = None  # index of the rule that answered
    status: int = 0
    disconnected: bool = False  # the client hung up before the answer was complete
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


class _ClientGone(Exception):
    pass


class ScriptedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (*_DISCONNECT_ERRORS, _ClientGone)):
            log.debug("client %s hung up: %r", client_address, exc)
        else:
            log.exception("scripted server: error answering %s", client_address)


class ScriptedHTTPServerV6(ScriptedHTTPServer):
    address_family = socket.AF_INET6


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedHTTPServer
    server_version = "GodelScripted/1"

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, add=False)
        with contextlib.suppress(*_DISCONNECT_ERRORS, OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def version_string(self) -> str:
        return self.server_version  # no Python version, and stable bytes

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Thu, 01 Jan 1970 00:00:00 GMT"  # deterministic responses

    def do_GET(self) -> None:
        if self.path.split("?")[0] in ("/", "/health"):
            self._send_json(200, {"ok": True, "server": "godel-scripted"})
        else:
            self._send_json(404, error_body(None, ErrorAnswer(404, f"no route {self.path}")))

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        api: ApiName | None = None
        if path in ("/v1/chat/completions", "/chat/completions"):
            api = "openai"
        elif path == "/v1/messages":
            api = "anthropic"
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        rec = RecordedRequest("POST", self.path, headers, body, api, _api_key(headers))
        owner = self.server.owner
        owner.requests.append(rec)
        try:
            self._answer(rec, body)
        except (*_DISCONNECT_ERRORS, _ClientGone) as e:
            rec.disconnected = True
            self.close_connection = True
            log.debug("client hung up during %s: %r", self.path, e)
        except Exception as e:  # a bug or an odd request: answer 500 rather than hang up
            log.exception("scripted server: error answering %s", self.path)
            self.close_connection = True
            if rec.status == 0:
                with contextlib.suppress(OSError):
                    msg = f"scripted server error: {type(e).__name__}: {e}"
                    self._send_error(rec, rec.api, ErrorAnswer(500, msg))
        finally:
            rec.finished.set()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer(self, rec: RecordedRequest, body: Any) -> None:
        api = rec.api
        if api is None:
            self._send_error(rec, None, ErrorAnswer(404, f"no route {self.path}"))
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            msg = "request body must be a JSON object with a 'messages' list"
            self._send_error(rec, api, ErrorAnswer(400, msg))
            return
        model = str(body.get("model") or "")
        messages = openai_messages(body) if api == "openai" else anthropic_messages(body)
        ctx = Context(api, model, messages)
        owner = self.server.owner
        picked = owner._pick(ctx)
        if picked is None:
            last = ctx.last or "nothing"
            text = (
                (ctx.user_text or "") if last == "user" else (ctx.tool_result or Msg("user")).text
            )
            msg = f"scripted server: no rule matched (last message: {last} {text[:80]!r})"
            self._send_error(rec, api, ErrorAnswer(400, msg))
            return
        index, rule, variables = picked
        rec.rule = index
        reply = rule.reply
        if reply.delay_s:
            self._pause(reply.delay_s)
        answer = build_answer(ctx, reply, variables)
        if isinstance(answer, ErrorAnswer):
            self._send_error(rec, api, answer)
            return
        turn = ctx.turn
        if not body.get("stream"):
            obj = (openai_json if api == "openai" else anthropic_json)(answer, model, turn)
            rec.status = 200
            self._send_json(200, obj)
            return
        if api == "openai":
            opts = body.get("stream_options") or {}
            include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
            frames = openai_stream(answer, model, turn, include_usage)
        else:
            frames = anthropic_stream(answer, model, turn)
        rec.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the body ends when the connection closes
        self.end_headers()
        paced = False
        for frame, is_content in frames:
            if is_content and paced and answer.chunk_delay_s:
                self._pause(answer.chunk_delay_s)
            paced = paced or is_content
            self.wfile.write(frame)
        self.wfile.flush()

    def _pause(self, seconds: float) -> None:
        """Sleep, but notice at once when the client hangs up (or the server stops): the
        socket turns readable with EOF. Raises _ClientGone then."""
        r, _, _ = select.select([self.connection], [], [], seconds)
        if not r:
            return
        try:
            peek = self.connection.recv(1, socket.MSG_PEEK)
        except OSError as e:
            raise _ClientGone(str(e)) from e
        if not peek:
            raise _ClientGone("connection closed")
        # The client sent more bytes (a pipelined request): wait out the delay plainly.
        threading.Event().wait(seconds)

    def _send_error(self, rec: RecordedRequest, api: ApiName | None, err: ErrorAnswer) -> None:
        rec.status = err.status
        extra = {}
        if err.retry_after is not None:
            ra = err.retry_after
            extra["Retry-After"] = str(int(ra)) if ra == int(ra) else str(ra)
        self._send_json(err.status, error_body(api, err), extra)

    def _send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        self.send_response(status, phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _api_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key") or (auth or None)
