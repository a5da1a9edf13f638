"""Shared fixtures: an isolated GODEL_HOME and a way to run the real ``godel`` CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest


@dataclass
class Godel:
    """Runs ``godel`` as a subprocess (a new process per command, as a user would)."""

    home: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "core.cli.main", *args]

    def run(
        self, *args: str, timeout: float = 60, check: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.cmd(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.cwd,
            env=self.env,
            input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"godel {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.cmd(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.cwd,
            env=self.env,
        )

    def daemon_pid(self) -> int | None:
        try:
            return int((self.home / "daemon.pid").read_text().strip())
        except (OSError, ValueError):
            return None


def _env(home: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
    env["GODEL_HOME"] = str(home)
    env["GODEL_CONFIG"] = str(tmp / "no-user-config.toml")  # never read the real user file
    return env


@pytest.fixture
def godel(tmp_path: Path) -> Iterator[Godel]:
    home = tmp_path / "home"
    project = tmp_path / "project"
    project.mkdir()
    g = Godel(home=home, cwd=project, env=_env(home, tmp_path))
    yield g
    # Stop the daemon this test started, and make sure nothing it owned survives.
    pid = g.daemon_pid()
    g.run("daemon", "stop", timeout=60)
    if pid is not None and psutil.pid_exists(pid):
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                os.kill(pid, signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


async def until(predicate: Callable[[], object], within: float = 5.0) -> None:
    """Wait until ``predicate()`` holds: for process states (started, gone) that no event
    announces, so they are polled; fails if it never holds within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"not within {within:g}s"
        await asyncio.sleep(0.01)


def daemon_runs(godel: Godel, command: str) -> bool:
    """True if a live descendant of the daemon runs ``command``."""
    pid = godel.daemon_pid()
    if pid is None:
        return False
    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for p in procs:
        try:
            if command in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            pass
    return False


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- the scripted model server (imported lazily: most tests never start it)

import typing  # noqa: E402

if typing.TYPE_CHECKING:
    from core.llm.scripted import ScriptedServer


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """Godel's scripted model server with the bundled script, on a free loopback port."""
    from core.llm.scripted import ScriptedServer

    server = ScriptedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
