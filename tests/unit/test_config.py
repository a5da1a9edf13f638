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
from core.errors import ConfigError

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
    assert cfg.budget.limit_usd is None
    assert cfg.budget.thresholds == [50, 75, 90, 100]
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

[budget]
limit_usd = 5
thresholds = [10, 20]

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

[budget]
thresholds = [90]

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
    assert cfg.budget.limit_usd == Decimal(5)
    assert cfg.budget.thresholds == [90]  # lists are replaced, not concatenated
    assert [a.name for a in cfg.agents] == ["builder"]
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
    cfg, err = project_error(project, no_user, 'budget.limit_usd = "ten"\n')
    assert err.message == (f"{cfg}: budget.limit_usd: expected a number of US dollars, got 'ten'")
    assert err.data["file"] == str(cfg)
    assert err.data["key"] == "budget.limit_usd"
    assert err.data["problem"] == "expected a number of US dollars, got 'ten'"
    assert "\n" not in err.message


def test_unknown_runtime(project: Path, no_user: Path) -> None:
    cfg, err = project_error(project, no_user, '[[agents]]\nruntime = "foo"\n')
    assert err.message == f"{cfg}: agents[0].runtime: unknown runtime 'foo' (known: claude, shell)"
    assert err.data["key"] == "agents[0].runtime"


def test_negative_count(project: Path, no_user: Path) -> None:
    cfg, err = project_error(project, no_user, "[[agents]]\n[[agents]]\ncount = -2\n")
    assert err.message == f"{cfg}: agents[1].count: must be at least 1, got -2"


def test_unknown_key(project: Path, no_user: Path) -> None:
    cfg, err = project_error(project, no_user, "[budget]\nlimt_usd = 10\n")
    assert err.data["file"] == str(cfg)
    assert err.data["key"] == "budget.limt_usd"
    assert "unknown key 'limt_usd'" in err.message
    assert "did you mean 'limit_usd'" in err.message


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
    assert info.value.message == f"{user}: defaults.exec_timeout: must be greater than 0, got -5"


def test_negative_exec_timeout(project: Path, no_user: Path) -> None:
    _, err = project_error(project, no_user, "[defaults]\nexec_timeout = -0.5\n")
    assert err.data["key"] == "defaults.exec_timeout"
    assert err.data["problem"] == "must be greater than 0, got -0.5"


def test_exec_timeout_accepts_float_and_int(project: Path, no_user: Path) -> None:
    write(project / ".godel" / "config.toml", "defaults.exec_timeout = 2.5\n")
    assert load(project, no_user).config.defaults.exec_timeout == 2.5


def test_thresholds_must_increase(project: Path, no_user: Path) -> None:
    _, err = project_error(project, no_user, "budget.thresholds = [50, 90, 75]\n")
    assert err.data["key"] == "budget.thresholds"
    assert err.data["problem"] == "must be strictly increasing, but 75 follows 90"


def test_threshold_out_of_range(project: Path, no_user: Path) -> None:
    _, err = project_error(project, no_user, "budget.thresholds = [50, 150]\n")
    assert err.data["key"] == "budget.thresholds[1]"
    assert err.data["problem"] == "must be at most 100, got 150"


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

[daemon]
log_level = "verbose"
event_queue_size = 0

[budget]
limit_usd = -1

[[agents]]
count = true
""",
    )
    problems = {p["key"]: p["problem"] for p in err.data["problems"]}
    assert problems == {
        "defaults.runtime": "unknown runtime 'nope' (known: claude, shell)",
        "daemon.log_level": "must be one of 'debug', 'info', 'warning' or 'error', got 'verbose'",
        "daemon.event_queue_size": "must be at least 1, got 0",
        "budget.limit_usd": "must be at least 0, got -1",
        "agents[0].count": "expected a whole number, got true",
    }
    first = err.data["problems"][0]
    assert err.data["key"] == first["key"]
    assert err.message == f"{cfg}: {first['key']}: {first['problem']} (and 4 more problems)"


def test_decimal_preserved_for_limit_usd(project: Path, no_user: Path) -> None:
    write(project / ".godel" / "config.toml", "budget.limit_usd = 10.1\n")
    cfg = load(project, no_user).config
    assert cfg.budget.limit_usd == Decimal("10.1")
    assert isinstance(cfg.budget.limit_usd, Decimal)
    # Exact string form is kept too, so cents are never lost to float rounding.
    write(project / ".godel" / "config.toml", 'budget.limit_usd = "10.10"\n')
    assert load(project, no_user).config.budget.limit_usd == Decimal("10.10")


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
        "budget.limit_usd = 12.5\n[[agents]]\nname = 'x'\ncount = 3\n",
    )
    cfg = load(project, no_user).config
    dumped = cfg.model_dump(mode="json")
    assert dumped["budget"]["limit_usd"] == "12.5"
    assert GodelConfig.model_validate(cfg.to_toml_dict()) == cfg


def test_user_file_that_is_a_directory_is_an_error(tmp_path: Path, project: Path) -> None:
    bad = tmp_path / "dir.toml"
    bad.mkdir()
    with pytest.raises(ConfigError) as info:
        load(project, bad)
    assert info.value.data["file"] == str(bad)
    assert info.value.data["key"] == "(file)"
