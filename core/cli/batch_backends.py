"""Where a headless run's calls go: the daemon over its socket, or an engine built in this
process (``godel run --embedded``). Both take the same JSON-RPC calls and stream the
same data (the embedded one runs the daemon's own method table, with no socket), so
``core.cli.batch`` drives either the same way."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import pwd
import time
from collections.abc import Awaitable, Callable
from typing import IO, TYPE_CHECKING, Any, Protocol

from core.api.protocol import STREAM_METHOD, raise_error
from core.cli.caller import warn_config_drift_async, with_caller_keys
from core.errors import ConfigError
from core.paths import GodelPaths

if TYPE_CHECKING:
    from core.api.client import DaemonClient
    from core.api.jsonrpc import RpcMethods
    from core.engine import Engine

OnStream = Callable[[Any], Awaitable[None] | None]


class Backend(Protocol):
    async def call(
        self, method: str, params: dict[str, Any] | None = None, on_stream: OnStream | None = None
    ) -> Any: ...

    async def close(self) -> None: ...


class DaemonBackend:
    """The daemon of ``paths``, started if none runs (a run changes things)."""

    def __init__(self, client: DaemonClient) -> None:
        self.client = client

    @classmethod
    async def open(cls, paths: GodelPaths) -> DaemonBackend:
        from core.api.client import connect

        client = await connect(paths, autostart=True)
        await warn_config_drift_async(client, "task.submit")
        return cls(client)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, on_stream: OnStream | None = None
    ) -> Any:
        return await self.client.call(method, with_caller_keys(method, params), on_stream)

    async def close(self) -> None:
        await self.client.close()


class EmbeddedBackend:
    """An engine on ``paths`` in this process, behind the daemon's method table."""

    def __init__(self, engine: Engine, rpc: RpcMethods, lock: IO[str]) -> None:
        self.engine = engine
        self.rpc = rpc
        self._lock = lock
        self._ids = itertools.count(1)
        uid = os.getuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        self.actor = f"{user}(uid={uid}) pid={os.getpid()} embedded (godel run)"

    @classmethod
    async def open(cls, paths: GodelPaths) -> EmbeddedBackend:
        from core.api.methods import build_methods
        from core.engine.build import build_engine
        from core.home import prepare_home

        prepare_home(paths)
        # The daemon's lock: no daemon may open this store while the run has it.
        lock = open(paths.lockfile, "a+")  # noqa: SIM115, ASYNC230 - held until close(); tiny
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(
                f"a daemon runs for {paths.home}: run without --embedded to use it, or "
                "give --embedded a home of its own (--home DIR)",
                home=str(paths.home),
            ) from None
        try:
            engine = build_engine(paths)
            await engine.start(actor="godel run --embedded")
        except BaseException:
            lock.close()
            raise
        rpc = build_methods(engine, started_at=time.time(), request_stop=lambda _r, _a: None)
        return cls(engine, rpc, lock)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, on_stream: OnStream | None = None
    ) -> Any:
        req_id = next(self._ids)
        msg = {
            "jsonrpc": "2.0",
            "id": req_id,
            "method": method,
            "params": with_caller_keys(method, params) or {},
        }

        async def emit_raw(note: Any) -> None:
            if on_stream is not None and note.get("method") == STREAM_METHOD:
                r = on_stream(note["params"]["data"])
                if r is not None:
                    await r

        reply: Any = await self.rpc.handle_one(msg, self.actor, emit_raw)
        if "error" in reply:
            raise_error(reply["error"])
        return reply.get("result")

    async def close(self) -> None:
        try:
            await self.engine.stop(reason="godel run finished", actor="godel run --embedded")
        finally:
            with contextlib.suppress(OSError):
                self._lock.close()
