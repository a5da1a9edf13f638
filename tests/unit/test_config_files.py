"""``core.config.files``: which files apply, their fingerprints, the drift line, and the
key variables the client sends; all without pydantic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import load_config
from core.config.files import (
    ConfigFile,
    caller_api_keys,
    config_files,
    drift,
    key_env_names,
)

KNOWN = ["shell", "native", "noop"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "user.toml"
    monkeypatch.setenv("GODEL_CONFIG", str(path))
    return path


def test_fingerprints_are_those_of_the_loaded_config(tmp_path: Path, user: Path) -> None:
    write(user, "[defaults]\nexec_timeout = 5\n")
    proj = write(tmp_path / "p" / ".godel" / "config.toml", "[queue]\nlease_s = 9\n")
    (tmp_path / "p" / "sub").mkdir()
    here = config_files(tmp_path / "p" / "sub")
    assert [(f.kind, f.path) for f in here] == [
        ("user", str(user.resolve())),
        ("project", str(proj.resolve())),
    ]
    loaded = load_config(KNOWN, cwd=tmp_path / "p" / "sub")
    assert loaded.files == here
    assert loaded.identity()["files"] == [f.to_json() for f in here]
    assert [ConfigFile.from_json(f.to_json()) for f in here] == here
    proj.write_text("[queue]\nlease_s = 10\n")
    assert config_files(tmp_path / "p")[1] != here[1]  # new bytes, new hash


def test_a_file_named_twice_counts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = write(tmp_path / ".godel" / "config.toml", "")
    monkeypatch.setenv("GODEL_CONFIG", str(proj))
    assert [f.kind for f in config_files(tmp_path)] == ["user"]


U = ConfigFile("user", "/home/u/.config/godel/config.toml", "u1")
A = ConfigFile("project", "/a/.godel/config.toml", "a1")
B = ConfigFile("project", "/b/.godel/config.toml", "b1")


def test_drift_names_both_configs_and_the_fix() -> None:
    assert drift([U, A], [U, A], digest="d" * 64, loaded_at="t") is None
    line = drift([U, A], [U, B], digest="0123456789abcdef", loaded_at="t")
    assert line == (
        f"the daemon runs with {U.path} + {A.path} (digest 0123456789ab); this directory's "
        f"config is {U.path} + {B.path} — run `godel config reload` to use it"
    )
    line = drift([], [B], digest="d" * 64, loaded_at="t")
    assert line is not None
    assert "runs with no config files (the built-in defaults)" in line


def test_drift_says_which_file_changed_since_it_was_loaded() -> None:
    changed = ConfigFile("project", A.path, "a2")
    line = drift([U, A], [U, changed], digest="d" * 64, loaded_at="2026-01-01T10:00:00+00:00")
    assert line is not None
    assert "as it was at 2026-01-01T10:00:00+00:00" in line
    assert f"; {A.path} changed since — run `godel config reload`" in line


def test_without_a_project_file_here_only_the_user_file_is_compared() -> None:
    assert drift([U, A], [U], digest="d" * 64, loaded_at="t") is None
    assert drift([A], [], digest="d" * 64, loaded_at="t") is None
    other_user = ConfigFile("user", "/elsewhere.toml", "x")
    assert drift([U, A], [other_user], digest="d" * 64, loaded_at="t") is not None


def test_key_variables_of_builtin_and_configured_providers(tmp_path: Path, user: Path) -> None:
    write(
        tmp_path / ".godel" / "config.toml",
        '[providers.mine]\nkind = "openai"\nbase_url = "http://x/v1"\napi_key_env = "MY_KEY"\n'
        '[providers.no-env]\nkind = "openai"\nbase_url = "http://y/v1"\n',
    )
    names = key_env_names([tmp_path / ".godel" / "config.toml"])
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GODEL_SCRIPTED_API_KEY"} <= names
    assert {"MY_KEY", "GODEL_NO_ENV_API_KEY"} <= names
    env = {"MY_KEY": "k1", "OPENAI_API_KEY": "", "UNRELATED": "x", "ANTHROPIC_API_KEY": "k2"}
    assert caller_api_keys(tmp_path, environ=env) == {"ANTHROPIC_API_KEY": "k2", "MY_KEY": "k1"}


def test_a_broken_file_only_loses_its_own_names(tmp_path: Path, user: Path) -> None:
    write(tmp_path / ".godel" / "config.toml", "[providers\n")
    assert caller_api_keys(tmp_path, environ={"OPENAI_API_KEY": "k"}) == {"OPENAI_API_KEY": "k"}


def test_the_client_side_loads_no_pydantic() -> None:
    code = (
        "import sys, core.config.files, core.cli.caller\n"
        "core.config.files.caller_api_keys()\n"
        "bad = ('pydantic', 'core.engine', 'core.store', 'core.config.schema')\n"
        "print(','.join(m for m in sys.modules if m.startswith(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
