"""An in-process engine on a fake clock, and helpers that wait for events.

Everything time-based in the engine (retry backoff, breaker open time, restart backoff,
the autoscaler's interval and window, the dispatcher's poll, heartbeats) reads the
engine's clock, so nothing time-based happens until a test calls ``advance``. Tests wait
for the event that proves a thing happened (``next_event``), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import psutil
import pytest

from core.clock import FakeClock
from core.config import GodelConfig, LoadedConfig
from core.engine import Engine, build_engine
from core.events import Event, EventBase, EventsDropped, Subscription, SubscriptionClosed
from core.models import Agent, AuditEntry, SwarmSpec, TaskSpec
from core.paths import GodelPaths
from core.runtimes.process import is_same_process

# The autoscaler's loop is off unless a test turns it on: otherwise any ``advance`` past
# its interval would resize swarms behind a test's back. Autoscaler tests call
# ``engine.s.autoscaler.evaluate`` directly (or enable the loop and advance to it).
# The prober schedules on the loop's real clock (first probes spread over one interval):
# an hour keeps scheduled probes out of every test, which drive them with ``probe_now``.
DEFAULT_OVERRIDES: dict[str, Any] = {
    "autoscaler": {"enabled": False},
    "health": {"interval_s": 3600.0},
}


class MakeEngine(Protocol):
    async def __call__(
        self, *, start: bool = True, home: GodelPaths | None = None, **overrides: Any
    ) -> Engine: ...


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the real user config (a reload would otherwise pick it up)."""
    for key in list(os.environ):
        if key.startswith("GODEL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GODEL_CONFIG", str(tmp_path / "no-user-config.toml"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def config_of(**overrides: Any) -> LoadedConfig:
    """A config from ``GodelConfig`` defaults with whole sections or section keys replaced,
    e.g. ``config_of(health={"failure_threshold": 2})``."""
    data: dict[str, Any] = {}
    for section, value in {**DEFAULT_OVERRIDES, **overrides}.items():
        if isinstance(value, dict) and isinstance(DEFAULT_OVERRIDES.get(section), dict):
            value = {**DEFAULT_OVERRIDES[section], **value}
        data[section] = value
    return LoadedConfig(config=GodelConfig.model_validate(data), sources=[], digest="test")


@dataclass(frozen=True)
class _Proc:
    pid: int
    started_at: float | None
    what: str


async def _processes(engine: Engine) -> list[_Proc]:
    """Every process of every agent this engine spawned (ended ones included: one that
    escaped the engine's hold is found too), and whatever the live ones started."""
    out: list[_Proc] = []
    if engine.ctx.running:
        for agent in await engine.list_agents():
            if agent.pid is not None:
                out.append(_Proc(agent.pid, agent.pid_started_at, f"agent {agent.id}"))
    for live in engine.ctx.live:
        if live.handle.pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(live.handle.pid).children(recursive=True):
                out.append(_Proc(child.pid, child.create_time(), f"child of agent {live.id}"))
    return out


def _survives(p: _Proc) -> bool:
    if not is_same_process(p.pid, p.started_at):
        return False
    try:
        return psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _stop_and_check(engine: Engine) -> None:
    processes = await _processes(engine)
    await engine.stop("test teardown", actor="test")
    survivors = [p for p in processes if _survives(p)]
    if not survivors:
        return
    # A child that left the agent's group may take a moment to be killed: wait on the
    # processes themselves (not for a fixed time), then kill what is left so no test
    # leaks processes, and fail.
    procs = []
    for p in survivors:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(p.pid))
    _, alive = await asyncio.to_thread(psutil.wait_procs, procs, 3.0)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not alive, f"processes survived the engine: {survivors}"


@pytest.fixture
async def make_engine(tmp_path: Path, clock: FakeClock) -> AsyncIterator[MakeEngine]:
    """``await make_engine(health={...}, queue={...}, agents=[...])``: an engine on
    ``tmp_path`` and the fake ``clock``, started (unless ``start=False``) and stopped at
    teardown, where no agent process (nor anything it started) may survive. ``home``
    (another engine's ``paths``) builds a daemon restart: a new engine on the same store."""
    engines: list[Engine] = []

    async def make(
        *, start: bool = True, home: GodelPaths | None = None, **overrides: Any
    ) -> Engine:
        paths = home or GodelPaths.resolve(tmp_path / f"home{len(engines)}")
        paths.ensure()
        engine = build_engine(paths, config=config_of(**overrides), clock=clock)
        engines.append(engine)
        if start:
            await engine.start("test")
        return engine

    yield make
    failures = []
    for engine in engines:
        try:
            await _stop_and_check(engine)
        except Exception as e:  # stop every engine before reporting
            failures.append(e)
    if failures:
        raise failures[0]


@pytest.fixture
async def engine(make_engine: MakeEngine) -> Engine:
    """A started engine with the default config (autoscaler loop off)."""
    return await make_engine()


# --- waiting for events ---------------------------------------------------------------


E = TypeVar("E", bound=EventBase)


class Match(Generic[E]):
    """A readable event predicate: ``Match(TaskFinished, task_id=t, status="failed")``; a
    field's expected value may also be a one-argument predicate. ``next_event`` returns
    the event as that class."""

    def __init__(self, cls: type[E], **fields: Any) -> None:
        self.cls = cls
        self.fields = fields

    def __call__(self, ev: Event) -> bool:
        if not isinstance(ev, self.cls):
            return False
        for name, want in self.fields.items():
            got = getattr(ev, name)
            if callable(want):
                if not want(got):
                    return False
            elif got != want:
                return False
        return True

    def __repr__(self) -> str:
        parts = [self.cls.__name__, *(f"{k}={v!r}" for k, v in self.fields.items())]
        return f"Match({', '.join(parts)})"


def subscribe(engine: Engine, name: str = "test", *types: str) -> Subscription:
    """A subscription large enough that a test never loses an event to a full queue."""
    return engine.bus.subscribe(name, maxsize=100_000, types=set(types) or None, max_bytes=1 << 40)


async def next_event(
    sub: Subscription, predicate: Match[E], timeout: float = 10.0, *, what: str | None = None
) -> E:
    """The first event on ``sub`` matching ``predicate`` (earlier ones are consumed).

    ``timeout`` is only a safety net: a test that reaches it fails, naming what it
    awaited."""
    described = what or repr(predicate)
    try:
        async with asyncio.timeout(timeout):
            while True:
                ev = await sub.get()
                if isinstance(ev, EventsDropped):
                    pytest.fail(f"{ev.count} events dropped while waiting for {described}")
                if predicate(ev):
                    assert isinstance(ev, predicate.cls)
                    return ev
    except TimeoutError:
        pytest.fail(f"no event {described} within {timeout:g}s")
    except SubscriptionClosed:
        pytest.fail(f"the subscription closed while waiting for {described}")


async def events(sub: Subscription, predicate: Match[E], n: int, timeout: float = 10.0) -> list[E]:
    """The next ``n`` events matching ``predicate``, each within ``timeout``."""
    return [await next_event(sub, predicate, timeout) for _ in range(n)]


def pending(sub: Subscription, predicate: Match[E]) -> list[E]:
    """Events already delivered to ``sub`` that match (consumes everything queued)."""
    out: list[E] = []
    while True:
        try:
            ev = sub.get_nowait()
        except (asyncio.QueueEmpty, SubscriptionClosed):
            return out
        if predicate(ev):
            assert isinstance(ev, predicate.cls)
            out.append(ev)


async def settle(rounds: int = 10) -> None:
    """Let ready tasks run to their next await (e.g. a task just spawned reaching its
    ``clock.sleep``) without letting any time pass."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def advance(clock: FakeClock, seconds: float) -> None:
    """Settle, then move the fake clock: a sleeper registered by a task that was just
    created is counted from before the jump, as it would be in real time."""
    await settle()
    await clock.advance(seconds)


def poll_now(engine: Engine) -> None:
    """Start a dispatch round now, as the dispatcher's poll would within ``POLL_S``.

    The poll's phase is unknown after an ``advance`` (a round it started may still be
    reading the store, and the poll after that round may lie past the advance), so a
    test that made a task eligible by moving the clock wakes the dispatcher instead:
    the round it starts (after any round under way) reads the clock as it is now."""
    engine.s.dispatcher.wake()


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` (yielding to the loop only, never sleeping) until it holds. Only
    for states no event announces; the caller says which in a comment."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 (no event exists to wait on)
                await asyncio.sleep(0)
    except TimeoutError:
        pytest.fail(f"{what}: not within {timeout:g}s")


async def audit(engine: Engine, action: str, subject: str | None = None) -> list[AuditEntry]:
    return [e for e in await engine.audit_list(subject=subject) if e.action == action]


# --- a gate a shell task can wait on --------------------------------------------------


class Gate:
    """A named pipe a shell command blocks on (``gate.cmd``) until the test ``open``s it.

    The test holds the pipe open read-write from the start, so a command's ``read``
    never blocks in ``open`` and a line written before the command reads it is kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    @property
    def cmd(self) -> str:
        return f"read -r _ < {self.path}"

    def open(self, n: int = 1) -> None:
        """Let ``n`` waiting (or future) commands through."""
        os.write(self._fd, b"go\n" * n)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


@pytest.fixture
def gates(tmp_path: Path) -> Iterator[Callable[[str], Gate]]:
    made: list[Gate] = []

    def make(name: str) -> Gate:
        gate = Gate(tmp_path / f"gate-{name}")
        made.append(gate)
        return gate

    yield make
    for gate in made:
        gate.close()


# --- building blocks ------------------------------------------------------------------


async def make_swarm(
    engine: Engine, name: str, count: int, runtime: str = "shell", **spec: Any
) -> list[Agent]:
    """Create a swarm; fails the test if any of its agents did not start."""
    _, agents, errors = await engine.create_swarm(
        SwarmSpec(name=name, runtime=runtime, count=count, **spec), "test"
    )
    assert not errors, errors
    return agents


async def submit(engine: Engine, swarm: str | None, *inputs: str, **spec: Any) -> list[str]:
    """Submit one task per input (sharing ``spec``); returns their ids in order."""
    tasks = await engine.submit_tasks(
        [TaskSpec(input=i, swarm=swarm, **spec) for i in inputs], "test"
    )
    return [t.id for t in tasks]


def pid_of(engine: Engine, agent_id: str) -> int:
    live = engine.ctx.live.get(agent_id)
    assert live is not None and live.handle.pid is not None, f"{agent_id} holds no process"
    return live.handle.pid


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
