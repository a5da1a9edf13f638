"""The CLI is a thin client: a read-only command loads no engine, store, runtime, LLM,
federation or numpy code (and the everyday reads not even pydantic or asyncio), so it
costs a Python start plus one round trip.

Each command runs in a fresh interpreter, for real, against a home where no daemon runs
(it gets as far as the socket and exits 3); then that interpreter's ``sys.modules`` is
inspected.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli.common import STARTS_DAEMON

FORBIDDEN = (
    "core.engine",
    "core.store",
    "core.runtimes",
    "core.federation",
    "core.llm",
    "core.daemon",
    "core.api.methods",
    "numpy",
)
# The everyday reads: one call over a blocking socket, no pydantic, no event loop.
FAST_READS = [
    ("agent", "list"),
    ("agent", "list", "--all", "--swarm", "s", "--status", "idle", "--json"),
    ("agent", "get", "shell-000000"),
    ("agent", "logs", "shell-000000"),
    ("agent", "health", "shell-000000"),
    ("runtime", "list"),
    ("model", "list"),
    ("audit", "list"),
    ("audit", "verify"),
    ("metrics",),
    ("task", "list"),
    ("task", "get", "task-000000000000"),
    ("swarm", "list"),
    ("swarm", "status", "s"),
    ("route", "explain", "task-000000000000"),
    ("events",),
]
OTHER_READS = [
    ("exec", "show", "x-000000000000"),
    ("config", "show", "--daemon"),
]

PROBE = """
import json, sys
from core.cli.main import cli
try:
    cli.main(sys.argv[1:], prog_name="godel", standalone_mode=False)
    code = 0
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def run_probe(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
    env |= {"GODEL_HOME": str(tmp_path / "home"), "GODEL_CONFIG": str(tmp_path / "none.toml")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    data = json.loads(out.stdout.splitlines()[-1])
    return data["code"], data["modules"]


def loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("args", FAST_READS, ids=" ".join)
def test_everyday_reads_load_neither_the_engine_nor_pydantic_nor_asyncio(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    code, modules = run_probe(tmp_path, *args)
    assert code == 3  # it reached the socket: no daemon runs
    assert loaded(modules, (*FORBIDDEN, "pydantic", "asyncio", "psutil")) == []


@pytest.mark.parametrize("args", OTHER_READS, ids=" ".join)
def test_other_reads_load_no_engine_code(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, modules = run_probe(tmp_path, *args)
    assert code == 3
    assert loaded(modules, FORBIDDEN) == []


def test_every_method_that_starts_the_daemon_exists() -> None:
    # A misspelt name would silently make a command that changes something a read.
    root = Path(__file__).resolve().parents[2] / "core" / "api"
    source = "".join(p.read_text() for p in root.glob("*methods.py"))
    served = set(re.findall(r'@rpc\.method\(\s*"([a-z_.]+)"', source))
    assert served >= STARTS_DAEMON, STARTS_DAEMON - served
