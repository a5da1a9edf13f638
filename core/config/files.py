"""Which config files apply in a directory, and a fingerprint of each: standard library only.

The thin client uses this on every call to the daemon, so it must stay cheap (a few
``stat`` calls, reading and hashing one or two small files; no pydantic, no schema):

* ``config_files(cwd)``: the files that apply here and a SHA-256 of each one's bytes,
  which the client compares with the files the daemon loaded (``drift``);
* ``caller_api_keys(cwd)``: the values, in the calling shell, of the variables that the
  providers' ``api_key_env`` name, which the client sends with requests that spawn agents.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import platformdirs

from core.config.builtin import BUILTIN_CONFIG

__all__ = [
    "CONFIG_ENV_VAR",
    "PROJECT_CONFIG_PATH",
    "ConfigFile",
    "caller_api_keys",
    "config_files",
    "config_paths",
    "default_key_env",
    "describe_files",
    "drift",
    "find_project_config",
    "fingerprint",
    "key_env_names",
    "user_config_path",
]

CONFIG_ENV_VAR = "GODEL_CONFIG"
PROJECT_CONFIG_PATH = Path(".godel") / "config.toml"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Kind = Literal["user", "project"]


def user_config_path() -> Path:
    """``$GODEL_CONFIG`` if set, else ``<user config dir>/godel/config.toml``."""
    override = os.environ.get(CONFIG_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("godel")) / "config.toml"


def find_project_config(start: Path) -> Path | None:
    """The first ``.godel/config.toml`` in ``start`` or one of its parents."""
    here = start.expanduser().resolve()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_CONFIG_PATH
        if candidate.is_file():
            return candidate
    return None


def config_paths(cwd: Path | None = None, user_file: Path | None = None) -> list[tuple[Kind, Path]]:
    """The files that apply in ``cwd``, lowest precedence first: the user file (or
    ``user_file``), then the project file. A missing file is skipped; a file named twice
    (``GODEL_CONFIG`` pointing at the project file) counts once."""
    user_path = user_file.expanduser() if user_file is not None else user_config_path()
    project_path = find_project_config(cwd if cwd is not None else Path.cwd())
    out: list[tuple[Kind, Path]] = []
    seen: set[Path] = set()
    candidates: list[tuple[Kind, Path | None]] = [("user", user_path), ("project", project_path)]
    for kind, path in candidates:
        # A missing file is fine; a directory or an unreadable file is kept, so that
        # loading it names the problem.
        if path is None or not path.exists():
            continue
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        out.append((kind, path))
    return out


@dataclass(frozen=True)
class ConfigFile:
    """One config file as it was read: its kind, its resolved path, a hash of its bytes."""

    kind: Kind
    path: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfigFile:
        kind = data.get("kind")
        if kind not in ("user", "project"):
            raise ValueError(f"not a config file kind: {kind!r}")
        return cls(kind=kind, path=str(data["path"]), sha256=str(data["sha256"]))


def fingerprint(kind: Kind, path: Path, data: bytes) -> ConfigFile:
    return ConfigFile(kind, str(path.resolve()), hashlib.sha256(data).hexdigest())


def config_files(cwd: Path | None = None, user_file: Path | None = None) -> list[ConfigFile]:
    """Fingerprints of the files that apply in ``cwd`` (see ``config_paths``). A file
    that cannot be read gets its error in place of a hash, so it matches no content."""
    out = []
    for kind, path in config_paths(cwd, user_file):
        try:
            out.append(fingerprint(kind, path, path.read_bytes()))
        except OSError as e:
            out.append(ConfigFile(kind, str(path.resolve()), f"unreadable: {e.strerror or e}"))
    return out


def describe_files(files: Sequence[ConfigFile]) -> str:
    return " + ".join(f.path for f in files) or "no config files (the built-in defaults)"


def drift(
    daemon: Sequence[ConfigFile], here: Sequence[ConfigFile], *, digest: str, loaded_at: str
) -> str | None:
    """Why the config the daemon runs with is not the one that applies here, in one line;
    None when they agree.

    Where no project file applies, only the user file is compared: the daemon's project
    config is then more specific than anything here, not a contradiction of it (so
    ``godel agent list`` from the home directory stays quiet).
    """
    daemon, here = list(daemon), list(here)
    if not any(f.kind == "project" for f in here):
        daemon = [f for f in daemon if f.kind != "project"]
    if daemon == here:
        return None
    runs = f"the daemon runs with {describe_files(daemon)} (digest {digest[:12]})"
    fix = "run `godel config reload` to use it"
    if [f.path for f in daemon] == [f.path for f in here]:
        changed = [f.path for f, g in zip(daemon, here, strict=True) if f != g]
        return f"{runs} as it was at {loaded_at}; {', '.join(changed)} changed since — {fix}"
    return f"{runs}; this directory's config is {describe_files(here)} — {fix}"


def default_key_env(provider: str) -> str:
    """The key variable of a provider whose config names none."""
    return f"GODEL_{provider.upper().replace('-', '_')}_API_KEY"


def key_env_names(paths: Iterable[Path]) -> set[str]:
    """The variables the built-in providers and the providers of these files read their
    API key from. A file that does not parse is skipped (loading it reports why)."""
    import tomllib  # only for calls that spawn: the config check itself never parses

    tables: list[Any] = [BUILTIN_CONFIG["providers"]]
    for path in paths:
        try:
            tables.append(tomllib.loads(path.read_text("utf-8")).get("providers"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
    names: set[str] = set()
    for providers in tables:
        if not isinstance(providers, dict):
            continue
        for name, provider in providers.items():
            env = provider.get("api_key_env") if isinstance(provider, dict) else None
            names.add(env if isinstance(env, str) else default_key_env(str(name)))
    return {n for n in names if ENV_NAME.match(n)}


def caller_api_keys(
    cwd: Path | None = None,
    user_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The calling shell's values of the key variables its config names (set ones only),
    to send with a request that spawns agents (as tmux's ``update-environment``)."""
    env = os.environ if environ is None else environ
    names = key_env_names(path for _, path in config_paths(cwd, user_file))
    return {n: env[n] for n in sorted(names) if env.get(n)}
