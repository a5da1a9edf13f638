"""What spawn needs from the machine, checked when a config is validated or a daemon starts.

The schema checks values; these check the filesystem: the configured shell runs and the
configured ``workspace_root`` can hold workspaces. Both fail with the config's one-line
``<file>: <key>: <problem>`` error, instead of failing each spawn later.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from core.config.messages import config_error
from core.config.schema import LoadedConfig

__all__ = ["check_usable", "shell_problem", "workspace_root_problem"]


def _source_of(loaded: LoadedConfig, keys: tuple[str, ...]) -> str:
    """The file whose value is in force for ``keys`` (the last one that sets it)."""
    for path in reversed(loaded.sources):
        try:
            table: Any = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for k in keys:
            table = table.get(k) if isinstance(table, dict) else None
        if table is not None:
            return str(path)
    return " + ".join(str(s) for s in loaded.sources) or "(defaults)"


def shell_problem(shell: str) -> str | None:
    """Why ``shell`` cannot be started as an agent's shell, or None."""
    if "/" not in shell:
        return None if shutil.which(shell) else f"{shell!r} is not found on PATH"
    path = Path(shell).expanduser()
    if not path.exists():
        return f"{shell} does not exist"
    if not path.is_file():
        return f"{shell} is not a file"
    if not os.access(path, os.X_OK):
        return f"{shell} is not executable"
    return None


def workspace_root_problem(root: Path) -> str | None:
    """Why workspaces cannot be made under ``root``, or None. Really creates it and a file
    in it (root passes permission checks), and removes what it created."""
    root = root.expanduser().absolute()
    created: list[Path] = []
    probe = root
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    try:
        for d in reversed(created):
            d.mkdir()
        fd, name = tempfile.mkstemp(dir=root, prefix=".godel-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        return f"cannot create workspaces in {root}: {e.strerror or e}"
    finally:
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
    return None


def check_usable(loaded: LoadedConfig) -> None:
    """Raise ``ConfigError`` when a spawn would fail because of the configured shell or
    workspace root; settings left at their defaults are not checked here."""
    config = loaded.config
    shell = config.runtimes.get("shell", {}).get("shell")
    if shell is not None:
        problem = (
            f"expected a path or command name, got {shell!r}"
            if not isinstance(shell, str) or not shell.strip()
            else shell_problem(shell)
        )
        if problem is not None:
            file = _source_of(loaded, ("runtimes", "shell", "shell"))
            raise config_error(file, [{"key": "runtimes.shell.shell", "problem": problem}])
    root = config.defaults.workspace_root
    if root is not None:
        problem = workspace_root_problem(root)
        if problem is not None:
            file = _source_of(loaded, ("defaults", "workspace_root"))
            raise config_error(file, [{"key": "defaults.workspace_root", "problem": problem}])
