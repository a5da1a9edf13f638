"""``godel daemon``: the long-lived process that owns the engine and the agents.

It listens for JSON-RPC 2.0 (one JSON message per line) on a unix socket created with
mode 0600, holds an exclusive lock on ``daemon.lock`` so only one daemon serves a
home, and stops every agent when it stops. CLI commands start it on demand the way
tmux starts its server (``core.api.client.ensure_daemon``).

Run as ``python -m core.daemon --home DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pwd
import resource
import signal
import socket
import stat
import struct
import sys
import time
from typing import IO

from core.api.jsonrpc import EXIT_ALREADY_RUNNING, JSON, MAX_MESSAGE, RpcMethods
from core.api.methods import build_methods
from core.config import load_config
from core.config.checks import check_usable
from core.engine import Engine, build_engine
from core.errors import GodelError
from core.events import EventBus, EventRecorder, SeqFile
from core.home import prepare_home
from core.paths import GodelPaths
from core.runtimes.registry import known_runtime_names

log = logging.getLogger("godel.daemon")

EXIT_CONFIG = 78  # EX_CONFIG
RECORDER_QUEUE = 200_000  # events
# Output not yet written: room for a few loud execs at once (each keeps at most
# `[defaults] exec_output_max_bytes`) while the disk catches up, and a bound if it stalls.
RECORDER_QUEUE_BYTES = 64 * 1024 * 1024
EXIT_STORE = 74  # EX_IOERR
SOCKET_CHECK_EVERY = 2.0  # seconds between checks that our socket is still at its path


def peer_actor(sock: socket.socket | None) -> str:
    """The caller's identity from the kernel (SO_PEERCRED), not from anything it claims."""
    if sock is None or sock.family != socket.AF_UNIX:
        return "unknown"
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", raw)
    except OSError:
        return "unknown"
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return f"{user}(uid={uid}) pid={pid} via unix socket"


class Daemon:
    def __init__(self, paths: GodelPaths) -> None:
        self.paths = paths
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._stop_reason = "stop requested"
        self._stop_actor = "daemon"
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._sock_id: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        self.engine: Engine | None = None
        self.rpc: RpcMethods | None = None

    def request_stop(self, reason: str, actor: str) -> None:
        self._stop_reason = reason
        self._stop_actor = actor
        self._stop.set()

    async def run(self) -> None:
        paths = self.paths
        # The config that applies where the daemon was started: the directory of the
        # command that started it (``config reload`` loads another's).
        loaded = load_config(known_runtime_names())
        check_usable(loaded)  # a bad shell or workspace root: refuse now, not at each spawn
        log.info(
            "config: %s (digest %s)",
            " + ".join(str(s) for s in loaded.sources) or "no config files (defaults)",
            loaded.digest[:12],
        )
        bus = EventBus(seq_file=SeqFile(paths.event_seq))
        # The durable record of the stream: room for the burst of a 10,000-task submit
        # (two events a task, published in one callback) before the writer catches up.
        settings = loaded.config.daemon
        recorder = EventRecorder(
            bus,
            paths.events,
            maxsize=RECORDER_QUEUE,
            queue_bytes=RECORDER_QUEUE_BYTES,
            max_bytes=settings.events_max_bytes,
            keep=settings.events_keep,
        )
        engine = build_engine(paths, config=loaded, bus=bus)
        self.engine = engine
        recorder.start()
        await engine.start(actor="daemon")
        self.rpc = build_methods(engine, started_at=self.started_at, request_stop=self.request_stop)
        sock_path = paths.socket
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()  # stale: we hold the lock, so no daemon is serving it
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others connect
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(sock_path), limit=MAX_MESSAGE
            )
        finally:
            os.umask(old_umask)
        os.chmod(sock_path, 0o600)
        self._sock_id = _file_id(sock_path)
        watch = asyncio.create_task(self._watch_socket())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.request_stop, f"signal {sig.name}", "daemon")
        log.info("daemon %d serving %s on %s", os.getpid(), paths.home, sock_path)
        print(json.dumps({"ready": True, "pid": os.getpid(), "socket": str(sock_path)}), flush=True)
        await self._stop.wait()
        log.info("stopping: %s (requested by %s)", self._stop_reason, self._stop_actor)
        watch.cancel()
        self._server.close()
        # Let in-flight responses (like the reply to daemon.stop) go out first.
        await asyncio.sleep(0.05)
        await engine.stop(reason=self._stop_reason, actor=self._stop_actor)
        # The engine ended every event stream: let their last events and replies go out.
        await asyncio.sleep(0.05)
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await recorder.stop()
        bus.close()
        if _file_id(sock_path) == self._sock_id:  # not a file someone put there since
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()

    async def _watch_socket(self) -> None:
        """Every few seconds: is our socket still at its path? A deleted or replaced socket
        file leaves a daemon that runs agents but that no client can find."""
        while True:
            await asyncio.sleep(SOCKET_CHECK_EVERY)
            if _file_id(self.paths.socket) != self._sock_id:
                try:
                    await self._relisten()
                except OSError as e:  # tried again at the next check
                    log.error("could not re-create the socket %s: %s", self.paths.socket, e)

    async def _relisten(self) -> None:
        """Listen on a new socket at the same path; connections already open stay."""
        sock_path = self.paths.socket
        # Bound under a temporary name and renamed into place: the path never shows a
        # socket that is not 0600, without touching the process umask (other threads
        # create files meanwhile). The directory is private, so the temporary name is too.
        tmp = sock_path.with_name(sock_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            sock.listen(100)
            os.replace(tmp, sock_path)  # a plain file or a foreign socket there is replaced
        except OSError:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        old = self._server
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_MESSAGE)
        self._sock_id = _file_id(sock_path)
        if old is not None:
            old.close()
        log.warning("the socket %s was removed or replaced; re-created it", sock_path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        actor = peer_actor(writer.get_extra_info("socket"))
        write_lock = asyncio.Lock()
        inflight: set[asyncio.Task[None]] = set()

        async def send(msg: JSON) -> None:
            data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
            async with write_lock:
                writer.write(data)
                await writer.drain()

        async def handle(line: bytes) -> None:
            assert self.rpc is not None
            reply = await self.rpc.handle_line(line, actor, send)
            if reply is not None:
                await send(reply)

        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # a line over the limit: answer, then drop the connection
                    await send(
                        {
                            "jsonrpc": "2.0",
                            "id": None,
                            "error": {
                                "code": -32600,
                                "message": "Invalid Request: message too large",
                            },
                        }
                    )
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                # Each request runs on its own so a long stream never blocks the next call.
                t = asyncio.create_task(handle(line))
                inflight.add(t)
                t.add_done_callback(inflight.discard)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            # The client went away: cancelling its handlers aborts what it was streaming.
            for t in inflight:
                t.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._conns.discard(task)


def _file_id(path: os.PathLike[str] | str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the socket at ``path``; None if none (or not a socket) is there."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None


def _setup_logging(paths: GodelPaths) -> None:
    logging.basicConfig(
        level=os.environ.get("GODEL_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _raise_fd_limit() -> None:
    """Each agent holds a few pipes; 1,000 agents need more than a default 1,024 fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.daemon", description=__doc__)
    ap.add_argument("--home", default=None)
    args = ap.parse_args(argv)
    paths = GodelPaths.resolve(args.home)
    # Everything the daemon creates (store, WAL, logs, events, workspaces) is private.
    os.umask(0o077)
    try:
        tightened = prepare_home(paths)
    except GodelError as e:
        print(f"godel daemon: {e.message}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    _setup_logging(paths)
    for note in tightened:
        log.warning("home made private: %s", note)
    _raise_fd_limit()
    lock: IO[str] = open(paths.lockfile, "a+")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"godel: a daemon is already running for {paths.home}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    paths.pidfile.write_text(f"{os.getpid()}\n")
    daemon = Daemon(paths)
    code = 0
    try:
        asyncio.run(daemon.run())
    except GodelError as e:
        print(f"godel daemon: {e.message}", file=sys.stderr, flush=True)
        code = EXIT_CONFIG if e.kind == "config_error" else EXIT_STORE
    finally:
        with contextlib.suppress(FileNotFoundError):
            paths.pidfile.unlink()
        lock.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
