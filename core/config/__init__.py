"""Godel's configuration: loading, merging and validating ``config.toml`` files.

The models are in ``schema`` (plus ``health`` and ``autoscaler`` for those sections), the
error messages in ``messages``, files and merging in ``loading``; import them from here.

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

from core.config.autoscaler import AutoscalerSettings
from core.config.health import HealthSettings
from core.config.loading import (
    CONFIG_ENV_VAR,
    PROJECT_CONFIG_PATH,
    find_project_config,
    load_config,
    parse_config_file,
    user_config_path,
)
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

__all__ = [
    "BUILTIN_CONFIG",
    "CONFIG_ENV_VAR",
    "PROJECT_CONFIG_PATH",
    "AgentGroup",
    "AutoscalerSettings",
    "DaemonSettings",
    "Defaults",
    "GodelConfig",
    "HealthSettings",
    "LoadedConfig",
    "ModelSettings",
    "ProviderSettings",
    "QueueSettings",
    "find_project_config",
    "load_config",
    "parse_config_file",
    "user_config_path",
]
