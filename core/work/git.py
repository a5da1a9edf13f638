"""Run git asynchronously and turn its failures into one clear line."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import RuntimeFailure

# A stable, non-interactive git: English messages we can parse, never a prompt or pager.
_GIT_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_EDITOR": "true"}


@dataclass(frozen=True)
class GitOutput:
    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def first_problem(stderr: str) -> str:
    """The line of git's stderr that says what went wrong (``fatal:``/``error:`` first)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[0] if lines else "no message"


async def git(cwd: Path, *args: str, check: bool = True) -> GitOutput:
    """``git -C cwd args...``; with ``check``, a non-zero exit raises ``RuntimeFailure``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            str(cwd),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **_GIT_ENV},
        )
    except FileNotFoundError:
        raise RuntimeFailure("git is not installed or not on PATH: install git") from None
    out, err = await proc.communicate()
    assert proc.returncode is not None
    result = GitOutput(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
    if check and not result.ok:
        raise RuntimeFailure(
            f"git {' '.join(args)} failed in {cwd}: {first_problem(result.stderr)}",
            command=["git", *args],
            cwd=str(cwd),
            exit_code=result.code,
        )
    return result


async def rev_parse(cwd: Path, rev: str) -> str | None:
    """The commit ``rev`` names, or None when it names none."""
    out = await git(cwd, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    return out.stdout.strip() if out.ok else None
