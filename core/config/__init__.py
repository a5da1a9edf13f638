"""Godel's configuration: loading, merging and validating ``config.toml`` files.

The models are in ``schema`` (plus ``health``, ``autoscaler`` and ``policy`` for those
sections), the built-in providers and models in ``builtin``, the error messages in
``messages``, which files apply and their fingerprints in ``files`` (standard library
only, for the thin client), reading and merging in ``loading``; import them from here.

Two files are read, both optional:

* the user file, ``platformdirs.user_config_dir("godel")/config.toml`` or the file
  named by ``GODEL_CONFIG``;
* the project file, the first ``.godel/config.toml`` found walking up from the
  current directory.

Project values override user values: tables are merged key by key, lists and
scalars are replaced whole. Each file is validated on its own first, so an error
names the file that holds the mistake, then the merged result is validated.

Every problem is reported as a ``ConfigError`` whose one-line message reads
``<file>: <key.path>: <what is wrong>``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config.autoscaler import AutoscalerSettings
    from core.config.do import DoSettings
    from core.config.files import ConfigFile
    from core.config.health import HealthSettings
    from core.config.loading import (
        CONFIG_ENV_VAR,
        PROJECT_CONFIG_PATH,
        find_project_config,
        load_config,
        load_tui_settings,
        parse_config_file,
        user_config_path,
    )
    from core.config.policy import PolicySettings
    from core.config.schema import (
        BUILTIN_CONFIG,
        AgentGroup,
        DaemonSettings,
        Defaults,
        GodelConfig,
        LoadedConfig,
        ModelSettings,
        ProviderSettings,
        QueueSettings,
    )
    from core.config.tui import TuiSettings

# Imported on first use: the thin client imports ``core.config.files`` (standard library
# only) on every call, and must not pay for pydantic and the schema through this package.
_WHERE = {
    "AutoscalerSettings": "autoscaler",
    "ConfigFile": "files",
    "DoSettings": "do",
    "CONFIG_ENV_VAR": "files",
    "PROJECT_CONFIG_PATH": "files",
    "find_project_config": "files",
    "user_config_path": "files",
    "load_config": "loading",
    "load_tui_settings": "loading",
    "parse_config_file": "loading",
    "BUILTIN_CONFIG": "builtin",
    "AgentGroup": "schema",
    "DaemonSettings": "schema",
    "Defaults": "schema",
    "GodelConfig": "schema",
    "HealthSettings": "health",
    "LoadedConfig": "schema",
    "PolicySettings": "policy",
    "ModelSettings": "schema",
    "ProviderSettings": "schema",
    "QueueSettings": "schema",
    "TuiSettings": "tui",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'core.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"core.config.{where}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "BUILTIN_CONFIG",
    "CONFIG_ENV_VAR",
    "PROJECT_CONFIG_PATH",
    "AgentGroup",
    "AutoscalerSettings",
    "ConfigFile",
    "DaemonSettings",
    "Defaults",
    "DoSettings",
    "GodelConfig",
    "HealthSettings",
    "LoadedConfig",
    "ModelSettings",
    "PolicySettings",
    "ProviderSettings",
    "QueueSettings",
    "TuiSettings",
    "find_project_config",
    "load_config",
    "load_tui_settings",
    "parse_config_file",
    "user_config_path",
]
