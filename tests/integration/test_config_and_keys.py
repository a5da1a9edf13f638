"""The config the daemon runs with, as the CLI sees it; API keys from the calling shell.

Real daemon, real CLI processes, and Godel's scripted model server behind a provider that
is not ``scripted`` (so its key is required, as a real endpoint's would be).
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import Godel

if TYPE_CHECKING:
    from core.llm.scripted import ScriptedServer

KEY_ENV = "KEYED_TEST_API_KEY"


def project(root: Path, text: str) -> Path:
    (root / ".godel").mkdir(parents=True, exist_ok=True)
    (root / ".godel" / "config.toml").write_text(text)
    return root


def keyed_config(server: ScriptedServer) -> str:
    return f"""
[providers.keyed]
kind = "openai"
base_url = "{server.base_url}/v1"
api_key_env = "{KEY_ENV}"

[models.keyed]
provider = "keyed"
id = "scripted"
input_per_mtok = "1"
output_per_mtok = "2"
"""


def key_set(godel: Godel) -> bool:
    models = json.loads(godel.run("model", "list", "--json", check=True).stdout)
    return bool({m["name"]: m for m in models}["keyed"]["api_key_set"])


def spawned_id(stdout: str) -> str:
    m = re.search(r"(native-[0-9a-f]{6})", stdout)
    assert m, stdout
    return m.group(1)


def test_a_key_exported_after_the_daemon_started_is_used_and_never_written(
    godel: Godel, scripted_server: ScriptedServer
) -> None:
    project(godel.cwd, keyed_config(scripted_server))
    godel.env.pop(KEY_ENV, None)
    godel.run("daemon", "start", check=True)  # its environment has no key
    daemon_pid = godel.daemon_pid()

    r = godel.run("agent", "spawn", "--runtime", "native", "--model", "keyed")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert KEY_ENV in r.stderr and "calling shell" in r.stderr
    assert key_set(godel) is False

    secret = "sk-test-" + secrets.token_hex(16)
    godel.env[KEY_ENV] = secret  # exported in the calling shell only
    assert key_set(godel) is True
    agent_id = spawned_id(
        godel.run("agent", "spawn", "--runtime", "native", "--model", "keyed", check=True).stdout
    )
    r = godel.run("agent", "exec", agent_id, "hello keys", check=True)
    assert "You said: hello keys" in r.stdout
    assert scripted_server.requests and {q.api_key for q in scripted_server.requests} == {secret}

    # A swarm keeps its model's key in memory: scaling it up from a shell without the key
    # (as the autoscaler or a replacement would, with no shell at all) still works.
    godel.run(
        "swarm", "create", "llm", "--runtime", "native", "--model", "keyed", "--count", "1",
        "--max", "2", check=True,
    )  # fmt: skip
    del godel.env[KEY_ENV]
    r = godel.run("swarm", "scale", "llm", "2", "--json", check=True)
    assert json.loads(r.stdout)["failures"] == []
    r = godel.run("agent", "spawn", "--runtime", "native", "--model", "keyed")
    assert r.returncode == 1 and KEY_ENV in r.stderr  # a lone agent: no key kept for it
    assert godel.daemon_pid() == daemon_pid  # no restart was needed

    # The key reached the model server, and nothing Godel wrote holds it: not the store,
    # the event recording, the daemon's log, nor any other file of the home.
    godel.run("daemon", "stop", check=True)
    leaks = [
        str(p) for p in godel.home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
    ]
    assert leaks == []
    for name in ("godel.db", "events.jsonl", "daemon.log"):
        assert (godel.home / name).is_file(), name


def test_the_cli_says_when_the_daemon_runs_with_another_config(godel: Godel) -> None:
    a = project(godel.cwd / "a", "[defaults]\nexec_timeout = 30\n")
    b = project(godel.cwd / "b", "[defaults]\nexec_timeout = 40\n")
    a_file, b_file = a / ".godel" / "config.toml", b / ".godel" / "config.toml"

    godel.cwd = a
    godel.run("daemon", "start", check=True)
    r = godel.run("daemon", "status", check=True)
    assert f"Config:  {a_file} (digest " in r.stdout and r.stderr == ""
    status = json.loads(godel.run("daemon", "status", "--json", check=True).stdout)
    config = status["config"]
    assert config["sources"] == [str(a_file)] and config["loaded_at"]
    assert [f["kind"] for f in config["files"]] == ["project"]
    assert godel.run("agent", "list", check=True).stderr == ""

    # From project b: one warning line on stderr, naming both files and the fix.
    godel.cwd = b
    r = godel.run("agent", "list", check=True)
    (warning,) = r.stderr.strip().splitlines()
    assert warning.startswith(f"godel: the daemon runs with {a_file} (digest ")
    assert f"this directory's config is {b_file}" in warning
    assert "godel config reload" in warning
    r = godel.run("config", "validate", check=True)
    assert f"Config OK: {b_file}" in r.stdout
    assert f"runs with another config: {a_file}" in r.stdout
    v = json.loads(godel.run("config", "validate", "--json", check=True).stdout)
    assert v["daemon"]["running"] is True and v["daemon"]["same"] is False

    # Where no project file applies, the daemon's project config contradicts nothing.
    godel.cwd = godel.cwd.parent
    assert godel.run("agent", "list", check=True).stderr == ""

    # A file the daemon loaded has changed since: said too.
    godel.cwd = a
    a_file.write_text("[defaults]\nexec_timeout = 31\n")
    (warning,) = godel.run("agent", "list", check=True).stderr.strip().splitlines()
    assert f"{a_file} changed since" in warning

    # `config reload` in b makes the daemon run with b's config: no more warning there.
    godel.cwd = b
    r = godel.run("config", "reload", check=True)
    assert r.stdout.startswith(f"Config reloaded from {b_file}") and r.stderr == ""
    assert godel.run("agent", "list", check=True).stderr == ""
    shown = json.loads(godel.run("config", "show", "--daemon", "--json", check=True).stdout)
    assert shown["config"]["defaults"]["exec_timeout"] == 40
    v = json.loads(godel.run("config", "validate", "--json", check=True).stdout)
    assert v["daemon"]["same"] is True and v["digest"] == shown["digest"]
    assert "runs with the same settings" in godel.run("config", "validate").stdout


def test_config_validate_without_a_daemon_starts_none(godel: Godel) -> None:
    r = godel.run("config", "validate", check=True)
    assert "Daemon:    none runs for" in r.stdout
    assert json.loads(godel.run("config", "validate", "--json").stdout)["daemon"] == {
        "running": False
    }
    assert godel.daemon_pid() is None


def test_agents_do_not_inherit_the_daemons_secrets(godel: Godel) -> None:
    project(godel.cwd, '[defaults]\nenv_passthrough = ["PASS_ME"]\n')
    secrets_ = {"ANTHROPIC_API_KEY": "sk-ant-x", "OPENAI_API_KEY": "sk-oai-x", "SECRET_X": "x"}
    godel.env.update({**secrets_, "PASS_ME": "through"})
    godel.run("daemon", "start", check=True)  # the daemon's environment holds them all
    r = godel.run("agent", "spawn", "--runtime", "shell", check=True)
    m = re.search(r"(shell-[0-9a-f]{6})", r.stdout)
    assert m, r.stdout
    out = godel.run("agent", "exec", m.group(1), "env", check=True).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert not secrets_.keys() & env.keys(), env
    assert env["PASS_ME"] == "through" and env["PATH"] and env["GODEL_AGENT_ID"] == m.group(1)
