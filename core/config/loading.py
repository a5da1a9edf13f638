"""Finding, reading and merging ``config.toml`` files into a validated ``LoadedConfig``."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.config.files import (
    CONFIG_ENV_VAR,
    PROJECT_CONFIG_PATH,
    ConfigFile,
    config_paths,
    find_project_config,
    fingerprint,
    user_config_path,
)
from core.config.messages import config_error, describe_error, key_path
from core.config.schema import BUILTIN_CONFIG, CONTEXT_KEY, PARTIAL_KEY, GodelConfig, LoadedConfig
from core.config.tui import TuiSettings

__all__ = [
    "CONFIG_ENV_VAR",
    "FILE_KEY",
    "PROJECT_CONFIG_PATH",
    "SYNTAX_KEY",
    "find_project_config",
    "load_config",
    "load_tui_settings",
    "parse_config_file",
    "user_config_path",
]

SYNTAX_KEY = "(syntax)"
FILE_KEY = "(file)"

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _validate(
    data: Mapping[str, Any], known_runtimes: Collection[str], file: str, *, partial: bool = False
) -> GodelConfig:
    try:
        return GodelConfig.model_validate(
            data, context={CONTEXT_KEY: frozenset(known_runtimes), PARTIAL_KEY: partial}
        )
    except ValidationError as exc:
        problems = [
            {
                "key": str((err.get("ctx") or {}).get("key") or key_path(err["loc"])),
                "problem": describe_error(err),
            }
            for err in exc.errors()
        ]
        raise config_error(file, problems) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        problem = f"cannot read the file: {exc.strerror or exc}"
        raise config_error(str(path), [{"key": FILE_KEY, "problem": problem}]) from None


def _read_toml(path: Path, raw: bytes) -> dict[str, Any]:
    file = str(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not valid UTF-8 (byte {exc.start})"
        raise config_error(file, [{"key": SYNTAX_KEY, "problem": problem}]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        extra: dict[str, int] = {}
        if position:
            line, column = int(position[1]), int(position[2])
            extra = {"line": line, "column": column}
            detail = message[: position.start()]
            problem = f"invalid TOML at line {line}, column {column}: {detail}"
        else:
            problem = f"invalid TOML: {message}"
        raise config_error(file, [{"key": SYNTAX_KEY, "problem": problem}], **extra) from None


def _base_dir(path: Path) -> Path:
    # As with Cargo's .cargo/config.toml, a project file's relative paths mean
    # "from the project root", not "from inside .godel".
    parent = path.parent
    return parent.parent if parent.name == PROJECT_CONFIG_PATH.parent.name else parent


def parse_config_file(
    path: Path, known_runtimes: Collection[str], raw: bytes | None = None
) -> dict[str, Any]:
    """Read (unless ``raw`` holds its bytes) and validate one file; return its raw table,
    ready to merge.

    A relative ``defaults.workspace_root`` or ``providers.NAME.script`` is made absolute
    here, while we still know which file it came from; a script that cannot be read is
    refused here too (its rules are checked when its server starts: ``core.llm``).
    """
    data = _read_toml(path, _read_bytes(path) if raw is None else raw)
    config = _validate(data, known_runtimes, str(path), partial=True)
    root = config.defaults.workspace_root
    if root is not None:
        root = root.expanduser()
        if not root.is_absolute():
            root = _base_dir(path.absolute()) / root
        data["defaults"] = {**data["defaults"], "workspace_root": str(root)}
    worktrees = config.do.worktrees.root
    if worktrees is not None and not worktrees.expanduser().is_absolute():
        # ``[do.worktrees] root``, relative to the project root as workspace_root is.
        section = data["do"]["worktrees"]
        section["root"] = str(_base_dir(path.absolute()) / worktrees.expanduser())
    for name, provider in config.providers.items():
        if provider.script is None or name not in data.get("providers", {}):
            continue
        script = provider.script.expanduser()
        if not script.is_absolute():
            script = _base_dir(path.absolute()) / script
        problem = _script_problem(script)
        if problem is not None:
            key = f"providers.{key_path([name])}.script"
            raise config_error(str(path), [{"key": key, "problem": problem}])
        data["providers"][name] = {**data["providers"][name], "script": str(script)}
    return data


def _script_problem(script: Path) -> str | None:
    """Why the scripted server could not read ``script``, or None."""
    try:
        with script.open("rb"):
            pass
    except IsADirectoryError:
        return f"{script} is a directory, not a script file"
    except OSError as exc:
        return f"cannot read the script {script}: {exc.strerror or exc}"
    return None


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _digest(config: GodelConfig) -> str:
    canonical = json.dumps(
        config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_config(
    known_runtimes: Collection[str],
    *,
    cwd: Path | None = None,
    user_file: Path | None = None,
) -> LoadedConfig:
    """Load the user file, then the project file over it; missing files are skipped.

    ``user_file`` replaces the ``GODEL_CONFIG`` / platform lookup (for tests and
    ``--config``); ``cwd`` is where the walk for ``.godel/config.toml`` starts.
    """
    # Built-in providers and models sit under the files, so a file adds or overrides keys.
    merged: dict[str, Any] = json.loads(json.dumps(BUILTIN_CONFIG))
    sources: list[Path] = []
    files: list[ConfigFile] = []
    for kind, path in config_paths(cwd, user_file):
        # Hashed from the bytes parsed, so the fingerprint is of what is in force.
        raw = _read_bytes(path)
        merged = _deep_merge(merged, parse_config_file(path, known_runtimes, raw))
        sources.append(path)
        files.append(fingerprint(kind, path, raw))
    # Each file passed on its own, so a failure here comes from their combination.
    label = " + ".join(str(p) for p in sources) or "(defaults)"
    config = _validate(merged, known_runtimes, label)
    return LoadedConfig(
        config=config,
        sources=sources,
        digest=_digest(config),
        files=files,
        loaded_at=datetime.now(UTC),
    )


def load_tui_settings(*, cwd: Path | None = None, user_file: Path | None = None) -> TuiSettings:
    """The ``[tui]`` section of the files that apply in ``cwd``, merged as ``load_config``
    merges; a problem in it is the same one-line ``ConfigError``.

    Only that section is read: the console knows no runtimes to check the rest against
    (the daemon and ``config validate`` check it), and must not refuse to start over it.
    """
    merged: dict[str, Any] = {}
    for _kind, path in config_paths(cwd, user_file):
        data = _read_toml(path, _read_bytes(path))
        if "tui" in data:
            section = {"tui": data["tui"]}
            _validate(section, (), str(path), partial=True)
            merged = _deep_merge(merged, section)
    return _validate(merged, (), "(merged)", partial=True).tui
