"""Scratch git repositories for the tests of ``godel do`` and its machinery: one identity,
no user or system git config, a first commit of the files given."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Collection, Mapping
from pathlib import Path

# Who commits: the tests and the daemons they start (which take the test's environment).
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Godel Test",
    "GIT_AUTHOR_EMAIL": "test@godel.invalid",
    "GIT_COMMITTER_NAME": "Godel Test",
    "GIT_COMMITTER_EMAIL": "test@godel.invalid",
}
# Plus no ~/.gitconfig or /etc/gitconfig: a test sees the same git on every machine.
GIT_ENV = {**GIT_IDENTITY, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    """``git ARGS`` in ``repo``; its stdout, stripped (a failure raises)."""
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def init_repo(
    path: Path,
    files: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    untracked: Mapping[str, str] | None = None,
    executable: Collection[str] = (),
) -> Path:
    """``path`` as a repository on ``main`` whose first commit holds ``files`` (an empty
    commit if none), those named in ``executable`` with mode 755; ``untracked`` files are
    written but not added."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in {**files, **(untracked or {})}.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
        if name in executable:
            (path / name).chmod(0o755)
    run_env = {**os.environ, **GIT_ENV, **(env or {})}
    steps = [["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "init"]]
    if files:
        steps.insert(1, ["add", "--", *files])
    for args in steps:
        subprocess.run(["git", *args], cwd=path, env=run_env, check=True, capture_output=True)
    return path
