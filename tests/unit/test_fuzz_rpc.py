"""Fuzzing the JSON-RPC surface: whatever a request holds, the reply is a result or an
error with a spec or Godel code and a one-line message; never -32603, never an exception.

The methods run over a real in-process engine (real SQLite store, fake clock) on a loop
in a thread of its own, so each example is one synchronous call.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.api.jsonrpc import INTERNAL_ERROR, RpcMethods
from core.api.methods import build_methods
from core.clock import FakeClock
from core.engine import build_engine
from core.paths import GodelPaths
from tests.engine.conftest import config_of

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written to the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Left out: events.subscribe streams until the client leaves, and task.wait waits for
# tasks on a fake clock that never moves (both are long-lived by design, not a fault).
LONG_LIVED = {"events.subscribe", "task.wait"}
SPEC_CODES = {-32700, -32600, -32601, -32602}


class Daemon:
    """The daemon's methods over a started engine, called from the test's thread."""

    def __init__(self, home: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        paths = GodelPaths.resolve(home)
        paths.ensure()
        self.engine = build_engine(paths, config=config_of(), clock=FakeClock())
        self.run(self.engine.start("test"))
        self.rpc: RpcMethods = build_methods(
            self.engine, started_at=0.0, request_stop=lambda reason, actor: None
        )

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, 30), self.loop).result()

    def call(self, line: str) -> Any:
        async def emit(msg: Any) -> None:
            json.dumps(msg)  # what the daemon writes must serialize

        return self.run(self.rpc.handle_line(line, "fuzz", emit))

    def close(self) -> None:
        self.run(self.engine.stop("test teardown", actor="test"))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with (
        tempfile.TemporaryDirectory(prefix="godel-fuzz-rpc-") as d,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key in list(os.environ):
            if key.startswith("GODEL_"):
                mp.delenv(key)
        mp.setenv("GODEL_CONFIG", str(Path(d) / "no-user-config.toml"))
        daemon = Daemon(Path(d) / "home")
        try:
            yield daemon
        finally:
            daemon.close()


def _methods() -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        paths = GodelPaths.resolve(Path(d))
        engine = build_engine(paths, config=config_of(), clock=FakeClock())
        names = build_methods(engine, started_at=0.0, request_stop=lambda r, a: None).methods
        return sorted(set(names) - LONG_LIVED)


METHODS = _methods()
# Parameter names the methods know, so params get past "unknown field" to their values.
PARAM_NAMES = [
    "id", "ids", "input", "timeout", "message", "after_seq", "follow", "limit", "subject",
    "path", "force", "tasks", "swarm", "status", "name", "strategy", "count", "runtime",
    "model", "skills", "workdir", "env", "api_keys", "keys_set", "cwd", "user_file", "agent",
    "include_ended", "priority", "depends_on", "max_attempts", "timeout_s", "min_agents",
    "max_agents", "target_per_agent", "capacity",
]  # fmt: skip

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    _text,
    st.sampled_from(["", "\n", "a\x00b", "shell", "noop", "queued", "/", "-1", "default"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)
_params = st.one_of(
    st.dictionaries(st.sampled_from(PARAM_NAMES) | _text, _json, max_size=5),
    _json,
)
_ids = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _text, _json)


@st.composite
def requests(draw: st.DrawFn) -> Any:
    msg: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2]))}
    msg["method"] = draw(st.sampled_from(METHODS) | _text | _json)
    if draw(st.integers(0, 5)):
        msg["params"] = draw(_params)
    if draw(st.integers(0, 5)):
        msg["id"] = draw(_ids)
    return msg


def _spawns_agents(msg: Any) -> bool:
    # A valid spawn really starts processes (pi, native: long work), and a backup writes
    # wherever its path points: left out (bad runtimes and non-object params still go).
    params = msg.get("params") if isinstance(msg, dict) else None
    if not isinstance(msg.get("method") if isinstance(msg, dict) else None, str):
        return False
    return (
        isinstance(params, dict)
        and msg.get("method") in {"agent.spawn", "swarm.create", "swarm.scale"}
        and params.get("runtime", "shell") in ("shell", "native", "pi", "noop", "claude")
    ) or (isinstance(params, dict) and msg.get("method") == "store.backup")


def _check(reply: Any) -> None:
    replies = reply if isinstance(reply, list) else [reply]
    for r in replies:
        if r is None:
            continue  # a notification
        json.dumps(r)
        assert r["jsonrpc"] == "2.0"
        if "error" in r:
            code, message = r["error"]["code"], r["error"]["message"]
            assert code != INTERNAL_ERROR, r
            assert code in SPEC_CODES or -32099 <= code <= -32000, r
            assert "\n" not in message and "\r" not in message, r
        else:
            assert "result" in r, r


@FUZZ
@given(msg=requests())
@example(msg={"jsonrpc": "2.0", "id": 1, "method": "task.get", "params": {"id": "a\nb"}})
# Found by this fuzz: a method name with a newline made a two-line error.
@example(msg={"jsonrpc": "2.0", "id": 1, "method": "\n"})
def test_any_request_gets_a_result_or_one_clear_error(daemon: Daemon, msg: Any) -> None:
    if _spawns_agents(msg):
        return
    _check(daemon.call(json.dumps(msg)))


@FUZZ
@given(
    line=st.one_of(
        _text,
        st.lists(requests(), max_size=3).map(json.dumps),
        st.integers(1, 200_000).map(lambda n: "[" * n + "]" * n),
        st.integers(1, 200_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    )
)
def test_any_line_gets_a_reply(daemon: Daemon, line: str) -> None:
    try:
        msgs = json.loads(line)
    except (ValueError, RecursionError):
        msgs = None
    if isinstance(msgs, list) and any(_spawns_agents(m) for m in msgs):
        return
    _check(daemon.call(line))
