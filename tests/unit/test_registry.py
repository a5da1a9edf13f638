"""The runtime registry: built-ins, and plug-ins from real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from core.errors import UnknownRuntime
from core.runtimes.base import RuntimeContext
from core.runtimes.registry import RuntimeRegistry, known_runtime_names
from core.runtimes.shell import ShellRuntime

REPO_ROOT = Path(__file__).resolve().parents[2]

SHELL_CAPABILITIES = [
    "abort",
    "exec",
    "health",
    "kill",
    "persistent_process",
    "stream",
    "timeout",
]


def load(tmp_path: Path) -> tuple[RuntimeRegistry, list[str]]:
    asked: list[str] = []

    def ctx_factory(name: str) -> RuntimeContext:
        asked.append(name)
        return RuntimeContext(home=tmp_path, options={"shell": "/bin/bash"})

    return RuntimeRegistry.load(ctx_factory), asked


def test_shell_is_builtin(tmp_path: Path) -> None:
    reg, asked = load(tmp_path)
    assert "shell" in reg.names()
    assert "shell" in asked
    assert isinstance(reg.get("shell"), ShellRuntime)
    assert reg.get("shell") is reg.get("shell")  # created once
    [info] = [i for i in reg.info() if i.name == "shell"]
    assert info.source == "builtin"
    assert info.capabilities == SHELL_CAPABILITIES
    assert info.description
    assert info.error is None


def test_unknown_runtime(tmp_path: Path) -> None:
    reg, _ = load(tmp_path)
    with pytest.raises(UnknownRuntime) as caught:
        reg.get("nope")
    known = reg.names()
    assert caught.value.message == f"unknown runtime 'nope' (known: {', '.join(known)})"
    assert caught.value.data["known"] == known
    assert caught.value.to_jsonrpc()["code"] == -32003


def test_known_runtime_names_lists_the_builtins() -> None:
    assert "shell" in known_runtime_names()


def test_builtins_only(tmp_path: Path) -> None:
    reg = RuntimeRegistry.load(lambda name: RuntimeContext(home=tmp_path), plugins=False)
    assert reg.names() == ["native", "noop", "pi", "shell"]


PLUGIN = """
from typing import ClassVar

class FakeRuntime:
    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "a fake runtime for tests"
    capabilities: ClassVar[frozenset[str]] = frozenset({"exec", "health"})

    def __init__(self, ctx):
        self.ctx = ctx

    async def spawn(self, agent_id, spec, workspace): ...
    async def exec(self, handle, input, *, exec_id, timeout):
        yield None
    async def steer(self, handle, message): return False
    async def abort(self, handle): return False
    async def kill(self, handle): ...
    async def health(self, handle): ...
    async def wait_exit(self, handle): return 0
    async def recover(self, agent): return ""


class NotARuntime:
    name = "not"
    description = "has no methods"
    capabilities = frozenset()


class ExplodingRuntime(FakeRuntime):
    def __init__(self, ctx):
        raise OSError("no licence")
"""

ENTRY_POINTS = """
[godel.runtimes]
fake = fakeplug:FakeRuntime
notaruntime = fakeplug:NotARuntime
explodes = fakeplug:ExplodingRuntime
broken = fakeplug_missing:Runtime
shell = core.runtimes.shell:ShellRuntime
"""

LOADER = """
import json
from pathlib import Path
from core.errors import RuntimeFailure
from core.runtimes.base import RuntimeContext
from core.runtimes.registry import RuntimeRegistry, known_runtime_names

reg = RuntimeRegistry.load(lambda name: RuntimeContext(home=Path("."), options={"for": name}))
try:
    reg.get("broken")
except RuntimeFailure as e:
    broken_error = e.message
print(json.dumps({
    "info": [i.model_dump() for i in reg.info()],
    "names": reg.names(),
    "known": known_runtime_names(),
    "fake_options": reg.get("fake").ctx.options,
    "broken_error": broken_error,
}))
"""


def write_plugin(root: Path) -> None:
    (root / "fakeplug").mkdir()
    (root / "fakeplug" / "__init__.py").write_text(PLUGIN)
    dist_info = root / "fakeplug-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)


def test_plugins_from_entry_points(tmp_path: Path) -> None:
    write_plugin(tmp_path)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO_ROOT}")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOADER)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    info = {i["name"]: i for i in out["info"]}
    assert [i["name"] for i in out["info"]].count("shell") == 1

    assert info["shell"]["source"] == "builtin"
    assert info["shell"]["error"] is None

    assert info["fake"]["error"] is None
    assert info["fake"]["capabilities"] == ["exec", "health"]
    assert info["fake"]["description"] == "a fake runtime for tests"
    assert info["fake"]["source"] == "fakeplug 0.1 (fakeplug:FakeRuntime)"
    assert out["fake_options"] == {"for": "fake"}

    assert "cannot import" in info["broken"]["error"]
    assert "fakeplug_missing" in info["broken"]["error"]
    assert info["broken"]["capabilities"] == []
    assert out["broken_error"].startswith("runtime 'broken' failed to load: cannot import")

    assert info["notaruntime"]["error"].startswith("not a runtime: NotARuntime lacks exec")
    assert "no licence" in info["explodes"]["error"]

    for name in ("fake", "shell"):
        assert name in out["names"]
    for name in ("broken", "notaruntime", "explodes"):
        assert name not in out["names"]
        assert name in out["known"]  # listed for config validation, without importing


def test_add_refuses_a_taken_name(tmp_path: Path) -> None:
    reg, _ = load(tmp_path)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("shell", ShellRuntime(RuntimeContext(home=tmp_path)))
    reg.add("shell2", ShellRuntime(RuntimeContext(home=tmp_path)), source="test")
    assert "shell2" in reg.names()
