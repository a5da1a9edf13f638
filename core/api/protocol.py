"""The JSON-RPC wire as both ends see it: constants, and replies' errors as exceptions.

It imports only ``core.errors``, so the thin client (``core.api.client``,
``core.api.blocking``, the CLI) can use it without loading the dispatcher
(``core.api.jsonrpc``, which needs pydantic).
"""

from __future__ import annotations

from typing import Any

from core.errors import ERRORS_BY_CODE, DaemonError, GodelError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

STREAM_METHOD = "stream"

# The largest message either side accepts (one JSON per line).
MAX_MESSAGE = 64 * 1024 * 1024
# The daemon's exit code when another daemon already serves the home: the client that
# started it just connects to that one. (EX_TEMPFAIL)
EXIT_ALREADY_RUNNING = 75


class DaemonNotRunning(DaemonError):
    """No daemon serves the home, and the call was not one that starts it."""

    kind = "daemon_not_running"


class RpcError(GodelError):
    """A standard JSON-RPC error (parse, invalid request, method, params, internal)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.rpc_code = code
        self.data = {"kind": "rpc_error", "code": code, "detail": data}


def raise_error(err: dict[str, Any]) -> None:
    """Raise the reply's error: Godel's own as its GodelError class, others as RpcError."""
    code = int(err.get("code", -32603))
    message = str(err.get("message", "unknown error"))
    data = err.get("data")
    cls = ERRORS_BY_CODE.get(code)
    if cls is not None:
        exc = cls(message)
        if isinstance(data, dict):
            exc.data = data
        raise exc
    raise RpcError(code, message, data)
