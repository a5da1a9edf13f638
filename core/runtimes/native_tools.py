"""The native runtime's tools (``bash``, ``read``, ``write``, ``edit``): what the model is told
and how they run, every path confined to the agent's workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.llm.types import ToolCall, ToolSpec

DEFAULT_BASH_TIMEOUT = 120.0
# What a command's output may give the model (and keep in the daemon's memory): its
# start and its end, where errors usually are; the middle is counted and left out.
OUTPUT_HEAD_BYTES = 64 * 1024
OUTPUT_TAIL_BYTES = 64 * 1024
_READ_BYTES = 64 * 1024

SYSTEM_PROMPT = """You are a coding agent. You work in the directory {workspace}, and every \
file path you use must stay inside it. Use the tools to inspect and change files and to run \
commands; when the task is done, reply with a short final answer and no tool call."""

TOOLS = [
    ToolSpec(
        name="bash",
        description="Run a shell command in the workspace; returns its output and exit code.",
        parameters={
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "the command to run"},
                "timeout": {"type": "number", "description": "seconds (default 120)"},
            },
            "required": ["command"],
        },
    ),
    ToolSpec(
        name="read",
        description="Read a text file in the workspace.",
        parameters={
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "offset": {"type": "integer", "description": "first line (1-based)"},
                "limit": {"type": "integer", "description": "number of lines"},
            },
            "required": ["path"],
        },
    ),
    ToolSpec(
        name="write",
        description="Create or overwrite a file in the workspace.",
        parameters={
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    ),
    ToolSpec(
        name="edit",
        description="Replace old_text (which must occur exactly once) with new_text in a file.",
        parameters={
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_text": {"type": "string"},
                "new_text": {"type": "string"},
            },
            "required": ["path", "old_text", "new_text"],
        },
    ),
]


class PathRefused(Exception):
    """A tool path resolves outside the workspace."""


class ToolError(Exception):
    """A tool failed in a way the model should hear about (not a crash of the loop)."""


def confine(workspace: Path, path: str) -> Path:
    """The real path of ``path`` (relative to the workspace), if it stays inside it.

    Symlinks are resolved first, so a link that points out of the workspace is refused
    just like ``../x`` or ``/etc/passwd``.
    """
    if not path or "\x00" in path:
        raise PathRefused(f"invalid path {path!r}")
    root = Path(os.path.realpath(workspace))
    target = Path(os.path.realpath(root / path))
    if target != root and root not in target.parents:
        raise PathRefused(f"path {path!r} resolves to {target}, outside the workspace {root}")
    return target


async def run_tool(
    call: ToolCall,
    workspace: Path,
    env: dict[str, str],
    procs: set[asyncio.subprocess.Process],
    *,
    launch: Sequence[str] = (),
) -> str:
    """Run one tool call; ``env`` is the agent's scrubbed environment for ``bash``
    (:mod:`core.runtimes.environment`), ``procs`` holds the bash commands running meanwhile,
    ``launch`` is the command prefix that puts them in the agent's box
    (:mod:`core.runtimes.containment`).

    Raises ``PathRefused`` for a path outside the workspace and ``ToolError`` (or
    ``OSError``/``ValueError``) for a failure the model should hear about.
    """
    args = call.arguments
    if call.name == "bash":
        command = _str_arg(args, "command")
        t = args.get("timeout", DEFAULT_BASH_TIMEOUT)
        timeout = float(t) if isinstance(t, int | float) and t > 0 else DEFAULT_BASH_TIMEOUT
        return await _bash(command, timeout, workspace, env, procs, launch)
    if call.name == "read":
        path = confine(workspace, _str_arg(args, "path"))
        offset, limit = args.get("offset"), args.get("limit")
        return await asyncio.to_thread(_read, path, offset, limit)
    if call.name == "write":
        path = confine(workspace, _str_arg(args, "path"))
        content = _str_arg(args, "content", allow_empty=True)
        await asyncio.to_thread(_write, path, content)
        return f"wrote {len(content.encode())} bytes to {path.relative_to(_real(workspace))}"
    if call.name == "edit":
        path = confine(workspace, _str_arg(args, "path"))
        old = _str_arg(args, "old_text")
        new = _str_arg(args, "new_text", allow_empty=True)
        await asyncio.to_thread(_edit, path, old, new)
        return f"edited {path.relative_to(_real(workspace))}"
    raise ToolError(f"unknown tool {call.name!r} (tools: bash, read, write, edit)")


async def _bash(
    command: str,
    timeout: float,
    workspace: Path,
    env: dict[str, str],
    procs: set[asyncio.subprocess.Process],
    launch: Sequence[str] = (),
) -> str:
    proc = await asyncio.create_subprocess_exec(
        *launch,
        "bash",
        "-c",
        command,
        cwd=workspace,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own group, so the whole tree can be killed
        env=env,
    )
    procs.add(proc)
    try:
        assert proc.stdout is not None
        try:
            out = await asyncio.wait_for(read_capped(proc.stdout), timeout)
            code = await proc.wait()
        except TimeoutError:
            _killpg(proc)
            await proc.wait()
            return f"[command timed out after {timeout:g}s and was killed]"
        except asyncio.CancelledError:
            # Abort, timeout of the exec or kill: the command's whole group goes too.
            _killpg(proc)
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(proc.wait(), 5))
            raise
    finally:
        procs.discard(proc)
    return out if code == 0 else f"{out}[exit code {code}]"


async def read_capped(
    stream: asyncio.StreamReader,
    head: int = OUTPUT_HEAD_BYTES,
    tail: int = OUTPUT_TAIL_BYTES,
) -> str:
    """Read ``stream`` to its end, keeping its first ``head`` and last ``tail`` bytes."""
    first = bytearray()
    last = bytearray()
    skipped = 0
    while chunk := await stream.read(_READ_BYTES):
        take = chunk[: head - len(first)]
        first += take
        rest = chunk[len(take) :]
        if rest:
            last += rest
            if len(last) > tail:
                skipped += len(last) - tail
                del last[: len(last) - tail]
    text = first.decode("utf-8", errors="replace")
    if skipped:
        text += f"\n[... {skipped} bytes of output left out ...]\n"
    return text + last.decode("utf-8", errors="replace")


async def kill_tools(procs: set[asyncio.subprocess.Process]) -> None:
    """Kill the process group of every bash command in ``procs``, and forget them."""
    for proc in list(procs):
        _killpg(proc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
    procs.clear()


def _str_arg(args: dict[str, Any], name: str, *, allow_empty: bool = False) -> str:
    value = args.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ToolError(f"argument {name!r} must be a non-empty string")
    return value


def _real(workspace: Path) -> Path:
    return Path(os.path.realpath(workspace))


def _read(path: Path, offset: object, limit: object) -> str:
    if not path.is_file():
        raise ToolError(f"no such file: {path.name}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    start = offset - 1 if isinstance(offset, int) and offset > 0 else 0
    end = start + limit if isinstance(limit, int) and limit > 0 else len(lines)
    return "".join(lines[start:end])


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def _edit(path: Path, old: str, new: str) -> None:
    if not path.is_file():
        raise ToolError(f"no such file: {path.name}")
    text = path.read_text(encoding="utf-8")
    count = text.count(old)
    if count != 1:
        raise ToolError(f"old_text occurs {count} times in {path.name}; it must occur once")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _killpg(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
