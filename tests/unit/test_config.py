"""Config loading: real files in tmp_path, no mocks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from core.config import (
    GodelConfig,
    LoadedConfig,
    find_project_config,
    load_config,
    parse_config_file,
    user_config_path,
)
from core.config.checks import check_usable
from core.engine.agents import prepare_workspace
from core.errors import ConfigError, RuntimeFailure
from core.models import AgentSpec

KNOWN = ("shell", "claude")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory (with no config yet) below tmp_path."""
    root = tmp_path / "proj"
    root.mkdir()
    return root


@pytest.fixture
def no_user(tmp_path: Path) -> Path:
    return tmp_path / "missing-user-config.toml"


def load(project: Path, user_file: Path) -> LoadedConfig:
    return load_config(KNOWN, cwd=project, user_file=user_file)


def project_error(project: Path, no_user: Path, text: str) -> tuple[Path, ConfigError]:
    cfg = write(project / ".godel" / "config.toml", text)
    with pytest.raises(ConfigError) as info:
        load(project, no_user)
    return cfg, info.value


def test_defaults_when_no_files(project: Path, no_user: Path) -> None:
    loaded = load(project, no_user)
    assert loaded.sources == []
    cfg = loaded.config
    assert cfg == GodelConfig()
    assert cfg.defaults.runtime == "shell"
    assert cfg.defaults.exec_timeout == 600
    assert cfg.defaults.workspace_root is None
    assert cfg.daemon.log_level == "info"
    assert cfg.daemon.event_queue_size == 1000
    assert (cfg.daemon.events_max_bytes, cfg.daemon.events_keep) == (64 << 20, 3)
    assert cfg.defaults.exec_output_max_bytes == 16 << 20
    assert cfg.agents == []
    assert cfg.runtimes == {}
    assert len(loaded.digest) == 64


def test_project_overrides_user_with_deep_merge(tmp_path: Path, project: Path) -> None:
    user = write(
        tmp_path / "user.toml",
        """
[defaults]
runtime = "claude"
exec_timeout = 30

[queue]
lease_s = 30
capacity = 500

[[agents]]
name = "user-agent"

[runtimes.shell]
shell = "/bin/zsh"
login = true
""",
    )
    proj = write(
        project / ".godel" / "config.toml",
        """
[defaults]
exec_timeout = 120

[queue]
capacity = 900

[[agents]]
name = "builder"
count = 2
skills = ["python"]

[runtimes.shell]
shell = "/bin/bash"
""",
    )
    loaded = load(project, user)
    assert loaded.sources == [user, proj]
    cfg = loaded.config
    assert cfg.defaults.runtime == "claude"  # kept from the user file
    assert cfg.defaults.exec_timeout == 120  # overridden by the project
    assert cfg.queue.lease_s == 30  # kept from the user file, key by key
    assert cfg.queue.capacity == 900
    assert [a.name for a in cfg.agents] == ["builder"]  # lists are replaced, not concatenated
    assert cfg.agents[0].count == 2
    # A group without a runtime takes the (merged) defaults.runtime.
    assert cfg.agents[0].runtime == "claude"
    assert cfg.runtimes == {"shell": {"shell": "/bin/bash", "login": True}}


def test_walks_up_to_the_nearest_project_file(tmp_path: Path, no_user: Path) -> None:
    outer = write(tmp_path / ".godel" / "config.toml", "daemon.log_level = 'debug'\n")
    inner_root = tmp_path / "a"
    inner = write(inner_root / ".godel" / "config.toml", "daemon.log_level = 'warning'\n")
    deep = inner_root / "b" / "c"
    deep.mkdir(parents=True)

    assert find_project_config(deep) == inner
    assert find_project_config(tmp_path / "a") == inner
    assert find_project_config(tmp_path) == outer
    loaded = load_config(KNOWN, cwd=deep, user_file=no_user)
    assert loaded.sources == [inner]
    assert loaded.config.daemon.log_level == "warning"


def test_no_project_file_anywhere(tmp_path: Path) -> None:
    # tmp_path's parents are system directories without .godel (we stop at the root).
    assert find_project_config(tmp_path) is None


def test_godel_config_env_override(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write(tmp_path / "elsewhere" / "godel.toml", "daemon.event_queue_size = 7\n")
    monkeypatch.setenv("GODEL_CONFIG", str(user))
    assert user_config_path() == user
    loaded = load_config(KNOWN, cwd=project)
    assert loaded.sources == [user]
    assert loaded.config.daemon.event_queue_size == 7


def test_env_override_to_missing_file_means_defaults(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GODEL_CONFIG", str(tmp_path / "nope.toml"))
    loaded = load_config(KNOWN, cwd=project)
    assert loaded.sources == []
    assert loaded.config == GodelConfig()


def test_bad_dollars_names_file_and_key(project: Path, no_user: Path) -> None:
    cfg, err = project_error(
        project, no_user, '[models.scripted]\nprovider = "scripted"\ninput_per_mtok = "ten"\n'
    )
    key = "models.scripted.input_per_mtok"
    assert err.message == (f"{cfg}: {key}: expected a number of US dollars, got 'ten'")
    assert err.data["file"] == str(cfg)
    assert err.data["key"] == key
    assert err.data["problem"] == "expected a number of US dollars, got 'ten'"
    assert "\n" not in err.message


def test_unknown_runtime(project: Path, no_user: Path) -> None:
    cfg, err = project_error(project, no_user, '[[agents]]\nruntime = "foo"\n')
    assert err.message == f"{cfg}: agents[0].runtime: unknown runtime 'foo' (known: claude, shell)"
    assert err.data["key"] == "agents[0].runtime"


def test_negative_count(project: Path, no_user: Path) -> None:
    cfg, err = project_error(project, no_user, "[[agents]]\n[[agents]]\ncount = -2\n")
    assert err.message == f"{cfg}: agents[1].count: must be from 1 to 10000, got -2"


def test_unknown_key(project: Path, no_user: Path) -> None:
    cfg, err = project_error(project, no_user, "[queue]\nleas_s = 10\n")
    assert err.data["file"] == str(cfg)
    assert err.data["key"] == "queue.leas_s"
    assert "unknown key 'leas_s'" in err.message
    assert "did you mean 'lease_s'" in err.message


def test_unknown_top_level_table(project: Path, no_user: Path) -> None:
    _, err = project_error(project, no_user, '[[agent]]\nruntime = "shell"\n')
    assert err.data["key"] == "agent"
    assert err.data["problem"] == "unknown key 'agent' (did you mean 'agents'?)"


def test_toml_syntax_error(project: Path, no_user: Path) -> None:
    cfg, err = project_error(project, no_user, "[daemon]\nlog_level = = 'info'\n")
    assert err.data["file"] == str(cfg)
    assert err.data["key"] == "(syntax)"
    assert (err.data["line"], err.data["column"]) == (2, 13)
    assert err.message.startswith(f"{cfg}: (syntax): invalid TOML at line 2, column 13: ")


def test_error_in_user_file_names_the_user_file(tmp_path: Path, project: Path) -> None:
    user = write(tmp_path / "user.toml", "defaults.exec_timeout = -5\n")
    write(project / ".godel" / "config.toml", "defaults.exec_timeout = 5\n")
    with pytest.raises(ConfigError) as info:
        load(project, user)
    # Each file is checked alone, so the project's valid value does not hide it.
    assert (
        info.value.message == f"{user}: defaults.exec_timeout: must be from 0.1 to 604800, got -5"
    )


def test_negative_exec_timeout(project: Path, no_user: Path) -> None:
    _, err = project_error(project, no_user, "[defaults]\nexec_timeout = -0.5\n")
    assert err.data["key"] == "defaults.exec_timeout"
    assert err.data["problem"] == "must be from 0.1 to 604800, got -0.5"


def test_exec_timeout_accepts_float_and_int(project: Path, no_user: Path) -> None:
    write(project / ".godel" / "config.toml", "defaults.exec_timeout = 2.5\n")
    assert load(project, no_user).config.defaults.exec_timeout == 2.5


def test_unknown_runtime_table(project: Path, no_user: Path) -> None:
    cfg, err = project_error(project, no_user, '[runtimes.foo]\nshell = "/bin/sh"\n')
    assert err.message == f"{cfg}: runtimes.foo: unknown runtime 'foo' (known: claude, shell)"


def test_several_problems_all_listed(project: Path, no_user: Path) -> None:
    cfg, err = project_error(
        project,
        no_user,
        """
[defaults]
runtime = "nope"
exec_output_max_bytes = 10

[daemon]
log_level = "verbose"
event_queue_size = 0
events_keep = -1

[queue]
lease_s = -1

[[agents]]
count = true
""",
    )
    problems = {p["key"]: p["problem"] for p in err.data["problems"]}
    assert problems == {
        "defaults.runtime": "unknown runtime 'nope' (known: claude, shell)",
        "defaults.exec_output_max_bytes": "must be from 1024 to 68719476736, got 10",
        "daemon.log_level": "must be one of 'debug', 'info', 'warning' or 'error', got 'verbose'",
        "daemon.event_queue_size": "must be from 1 to 1000000, got 0",
        "daemon.events_keep": "must be from 0 to 100, got -1",
        "queue.lease_s": "must be from 1 to 86400, got -1",
        "agents[0].count": "expected a whole number, got true",
    }
    first = err.data["problems"][0]
    assert err.data["key"] == first["key"]
    assert err.message == f"{cfg}: {first['key']}: {first['problem']} (and 6 more problems)"


def test_decimal_preserved_for_prices(project: Path, no_user: Path) -> None:
    model = '[models.scripted]\nprovider = "scripted"\n'
    write(project / ".godel" / "config.toml", model + "input_per_mtok = 10.1\n")
    cfg = load(project, no_user).config
    assert cfg.models["scripted"].input_per_mtok == Decimal("10.1")
    assert isinstance(cfg.models["scripted"].input_per_mtok, Decimal)
    # Exact string form is kept too, so cents are never lost to float rounding.
    write(project / ".godel" / "config.toml", model + 'input_per_mtok = "10.10"\n')
    price = load(project, no_user).config.models["scripted"].input_per_mtok
    assert price == Decimal("10.10")


def test_relative_workspace_root_is_relative_to_project_root(project: Path, no_user: Path) -> None:
    write(project / ".godel" / "config.toml", 'defaults.workspace_root = "ws"\n')
    root = load(project, no_user).config.defaults.workspace_root
    # Like Cargo: from the directory holding .godel, not from inside it.
    assert root == project.resolve() / "ws"


def test_unknown_default_runtime_is_reported_once(project: Path, no_user: Path) -> None:
    _, err = project_error(project, no_user, 'defaults.runtime = "foo"\n[[agents]]\ncount = 2\n')
    assert [p["key"] for p in err.data["problems"]] == ["defaults.runtime"]


def test_log_level_is_case_insensitive(project: Path, no_user: Path) -> None:
    write(project / ".godel" / "config.toml", 'daemon.log_level = "DEBUG"\n')
    assert load(project, no_user).config.daemon.log_level == "debug"


def test_bad_skill(project: Path, no_user: Path) -> None:
    _, err = project_error(project, no_user, '[[agents]]\nskills = ["python", "web dev"]\n')
    assert err.data["key"] == "agents[0].skills"
    assert err.data["problem"] == "skill 'web dev' must not contain spaces or commas"


def test_env_passthrough_names_variables(project: Path, no_user: Path) -> None:
    assert load(project, no_user).config.defaults.env_passthrough == []
    write(project / ".godel" / "config.toml", '[defaults]\nenv_passthrough = ["HTTPS_PROXY"]\n')
    assert load(project, no_user).config.defaults.env_passthrough == ["HTTPS_PROXY"]
    _, err = project_error(project, no_user, '[defaults]\nenv_passthrough = ["OK", "A B"]\n')
    assert err.data["key"] == "defaults.env_passthrough[1]"
    assert err.data["problem"] == (
        "expected an environment variable name (letters, digits and _, "
        "not starting with a digit), got 'A B'"
    )
    _, err = project_error(project, no_user, '[defaults]\nenv_passthrough = "HOME"\n')
    assert err.data["key"] == "defaults.env_passthrough"


def test_parse_config_file_returns_raw_table(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[runtimes.shell]\nshell = '/bin/sh'\n")
    assert parse_config_file(path, KNOWN) == {"runtimes": {"shell": {"shell": "/bin/sh"}}}


def test_digest_tracks_content(tmp_path: Path, project: Path, no_user: Path) -> None:
    base = load(project, no_user).digest
    write(project / ".godel" / "config.toml", "daemon.event_queue_size = 1000\n")
    same = load(project, no_user)
    assert same.digest == base  # the same effective config, however it is spelled
    write(project / ".godel" / "config.toml", "daemon.event_queue_size = 10\n")
    assert load(project, no_user).digest != base


def test_json_dump_round_trips(tmp_path: Path, project: Path, no_user: Path) -> None:
    write(
        project / ".godel" / "config.toml",
        "queue.lease_s = 12.5\n[[agents]]\nname = 'x'\ncount = 3\n",
    )
    cfg = load(project, no_user).config
    dumped = cfg.model_dump(mode="json")
    assert dumped["queue"]["lease_s"] == 12.5
    assert GodelConfig.model_validate(cfg.to_toml_dict()) == cfg


def test_user_file_that_is_a_directory_is_an_error(tmp_path: Path, project: Path) -> None:
    bad = tmp_path / "dir.toml"
    bad.mkdir()
    with pytest.raises(ConfigError) as info:
        load(project, bad)
    assert info.value.data["file"] == str(bad)
    assert info.value.data["key"] == "(file)"


# --- bounds on numeric settings, one test per family -----------------------------------


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        # An interval this short busy-loops a core.
        ("[health]\ninterval_s = 0.000001\n", "health.interval_s", "from 0.01 to 86400, got 1e-06"),
        ("[autoscaler]\ninterval_s = 0\n", "autoscaler.interval_s", "from 0.1 to 3600, got 0"),
        ("[health]\nrestart_window_s = 1e9\n", "health.restart_window_s", "from 1 to 604800"),
    ],
)
def test_interval_bounds(project: Path, no_user: Path, text: str, key: str, problem: str) -> None:
    cfg, err = project_error(project, no_user, text)
    assert err.message.startswith(f"{cfg}: {key}: must be {problem}")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[defaults]\nexec_timeout = 1e12\n", "defaults.exec_timeout", "from 0.1 to 604800"),
        ("[health]\ntimeout_s = -1\n", "health.timeout_s", "from 0.01 to 86400"),
        ("[defaults]\nexec_timeout = nan\n", "defaults.exec_timeout", "finite number"),
    ],
)
def test_timeout_bounds(project: Path, no_user: Path, text: str, key: str, problem: str) -> None:
    _, err = project_error(project, no_user, text)
    assert err.data["key"] == key
    assert problem in err.data["problem"]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[daemon]\nevent_queue_size = 100000000\n", "daemon.event_queue_size", "1 to 1000000"),
        ("[queue]\ncapacity = 0\n", "queue.capacity", "from 1 to 10000000, got 0"),
        ("[models.m]\nprovider = 'p'\nmax_tokens = 0\n", "models.m.max_tokens", "from 1 to"),
        ("[health]\njitter = 1\n", "health.jitter", "at least 0 and less than 1, got 1"),
    ],
)
def test_size_bounds(project: Path, no_user: Path, text: str, key: str, problem: str) -> None:
    _, err = project_error(project, no_user, text)
    assert err.data["key"] == key
    assert problem in err.data["problem"]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[[agents]]\ncount = 1000000\n", "agents[0].count", "from 1 to 10000, got 1000000"),
        ("[health]\nmax_restarts = 0\n", "health.max_restarts", "from 1 to 1000, got 0"),
        ("[queue]\nspawn_concurrency = 257\n", "queue.spawn_concurrency", "from 1 to 256"),
    ],
)
def test_count_bounds(project: Path, no_user: Path, text: str, key: str, problem: str) -> None:
    _, err = project_error(project, no_user, text)
    assert err.data["key"] == key
    assert problem in err.data["problem"]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        # Today every exec fails with no message.
        ("max_turns = -1", "runtimes.native.max_turns", "must be from 1 to 10000, got -1"),
        ("max_turns = 2.5", "runtimes.native.max_turns", "expected a whole number, got 2.5"),
        ("max_retries = 1000", "runtimes.native.max_retries", "must be from 0 to 100, got 1000"),
        ("request_timeout = 'x'", "runtimes.native.request_timeout", "expected a number, got 'x'"),
    ],
)
def test_runtime_option_bounds(
    project: Path, no_user: Path, text: str, key: str, problem: str
) -> None:
    cfg = write(project / ".godel" / "config.toml", f"[runtimes.native]\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_config(("shell", "native"), cwd=project, user_file=no_user)
    assert info.value.message == f"{cfg}: {key}: {problem}"


def test_bounds_accept_their_limits(project: Path, no_user: Path) -> None:
    write(
        project / ".godel" / "config.toml",
        "[health]\ninterval_s = 0.1\n[runtimes.native]\nmax_turns = 1\n[[agents]]\ncount = 10000\n",
    )
    cfg = load_config(("shell", "native"), cwd=project, user_file=no_user).config
    assert (cfg.health.interval_s, cfg.agents[0].count) == (0.1, 10_000)


# --- what spawn would check: the shell and the workspace root --------------------------


def usable_error(project: Path, no_user: Path, text: str) -> tuple[Path, ConfigError]:
    cfg = write(project / ".godel" / "config.toml", text)
    loaded = load(project, no_user)  # the values themselves are valid
    with pytest.raises(ConfigError) as info:
        check_usable(loaded)
    return cfg, info.value


def test_workspace_root_that_cannot_be_created(project: Path, no_user: Path) -> None:
    cfg, err = usable_error(project, no_user, '[defaults]\nworkspace_root = "/proc/nope"\n')
    assert err.data["key"] == "defaults.workspace_root"
    assert err.message.startswith(
        f"{cfg}: defaults.workspace_root: cannot create workspaces in /proc/nope: "
    )
    assert "\n" not in err.message


def test_workspace_root_under_a_file(project: Path, no_user: Path) -> None:
    write(project / "afile", "x")
    cfg, err = usable_error(project, no_user, '[defaults]\nworkspace_root = "afile/ws"\n')
    assert err.message.startswith(f"{cfg}: defaults.workspace_root: cannot create workspaces in ")


def test_workspace_root_checked_without_leaving_it_behind(project: Path, no_user: Path) -> None:
    write(project / ".godel" / "config.toml", '[defaults]\nworkspace_root = "a/b/ws"\n')
    check_usable(load(project, no_user))
    assert not (project / "a").exists()  # validating is a read


@pytest.mark.parametrize(
    ("shell", "problem"),
    [
        ("/nonexistent/bash", "/nonexistent/bash does not exist"),
        ("/etc", "/etc is not a file"),
        ("no-such-shell-godel", "'no-such-shell-godel' is not found on PATH"),
    ],
)
def test_shell_that_cannot_run(project: Path, no_user: Path, shell: str, problem: str) -> None:
    cfg, err = usable_error(project, no_user, f'[runtimes.shell]\nshell = "{shell}"\n')
    assert err.message == f"{cfg}: runtimes.shell.shell: {problem}"


def test_shell_not_executable(project: Path, no_user: Path) -> None:
    script = write(project / "sh", "#!/bin/sh\n")
    script.chmod(0o644)
    _, err = usable_error(project, no_user, f'[runtimes.shell]\nshell = "{script}"\n')
    assert err.data["problem"] == f"{script} is not executable"


def test_usable_config_passes(project: Path, no_user: Path) -> None:
    write(
        project / ".godel" / "config.toml",
        '[defaults]\nworkspace_root = "ws"\n[runtimes.shell]\nshell = "sh"\n',
    )
    check_usable(load(project, no_user))


def test_spawn_refuses_an_uncreatable_workspace_in_one_line() -> None:
    # The root can go bad after the daemon checked it; spawn says so, not "Internal error".
    with pytest.raises(RuntimeFailure) as info:
        prepare_workspace(AgentSpec(runtime="shell"), Path("/proc/nope"), "shell-abc123")
    assert info.value.message == (
        "cannot create the workspace /proc/nope/shell-abc123 (workspace root): "
        "No such file or directory"
    )
