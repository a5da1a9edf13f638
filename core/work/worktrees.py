"""One git worktree per task, on its own branch ``godel/<run>/<task>``, from a base branch."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import InvalidInput, RuntimeFailure
from core.work.gates import Gate, run_gate
from core.work.git import git, rev_parse

Cleanup = Literal["always", "on-success", "never"]

# Run and task ids become path and ref components: keep them to what both accept.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class WorktreeSettings(BaseModel):
    """How task worktrees are made and removed (``godel do`` will read these from config)."""

    model_config = ConfigDict(extra="forbid")

    base: str | None = None  # the branch tasks start from and merge into; None: the current one
    root: Path | None = None  # where worktrees go; None: <git common dir>/godel-worktrees
    copy_files: list[str] = Field(default_factory=list)  # e.g. [".env"]: copied, never committed
    setup_command: str | None = None  # run in each new worktree, e.g. "npm ci"
    setup_timeout_s: float = Field(default=600.0, gt=0)
    cleanup: Cleanup = "on-success"

    @field_validator("copy_files")
    @classmethod
    def _relative(cls, v: list[str]) -> list[str]:
        for name in v:
            p = PurePosixPath(name)
            if p.is_absolute() or ".." in p.parts or not name.strip():
                raise ValueError(f"copy_files entry {name!r} must be a path inside the repository")
        return v


class Worktree(BaseModel):
    """A task's worktree: the agent's workspace (``AgentSpec.workdir``) is ``path``."""

    task: str
    branch: str  # "" for the detached worktree merges are tried in
    path: Path
    base: str
    base_commit: str  # the base's tip when the worktree was made
    copied: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)  # copy_files absent from the repository


class BranchChange(BaseModel):
    """What a task's branch changed against the base: the input to overlap checks and merges."""

    task: str
    branch: str
    head: str | None  # the branch's tip; None when it has no commit of its own
    files: list[str]


def check_id(what: str, value: str) -> str:
    if not _ID.match(value) or value.endswith(".lock") or ".." in value:
        raise InvalidInput(
            f"{what} {value!r} is not usable in a branch name: use letters, digits, '.', '_', '-'",
            **{what.replace(" ", "_"): value},
        )
    return value


def branch_name(run: str, task: str) -> str:
    return f"godel/{check_id('run id', run)}/{check_id('task id', task)}"


def _directory(repo: Path) -> Path:
    repo = repo.expanduser().absolute()
    if not repo.is_dir():
        raise InvalidInput(f"{repo} is not a directory: pass a git repository", repo=str(repo))
    return repo


async def open_repo(repo: Path) -> tuple[Path, Path]:
    """The repository's top level and its common git dir, or one line saying it is none."""
    repo = await asyncio.to_thread(_directory, repo)
    out = await git(repo, "rev-parse", "--show-toplevel", "--git-common-dir", check=False)
    lines = out.stdout.splitlines()
    if not out.ok or len(lines) != 2:
        raise InvalidInput(
            f"{repo} is not a git repository: run `git init` there, or pass a repository "
            "with a working tree (not a bare one)",
            repo=str(repo),
        )
    top = Path(lines[0])
    common = Path(lines[1])
    return top, common if common.is_absolute() else (repo / common).resolve()


async def current_branch(repo: Path) -> str:
    out = await git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if not out.ok:
        raise InvalidInput(
            f"{repo} has a detached HEAD: check out a branch or set the base branch explicitly",
            repo=str(repo),
        )
    return out.stdout.strip()


async def base_commit(repo: Path, base: str) -> str:
    commit = await rev_parse(repo, f"refs/heads/{base}")
    if commit is None:
        raise InvalidInput(
            f"base branch {base!r} does not exist in {repo}: create it or name an existing "
            "branch (git branch --list)",
            repo=str(repo),
            base=base,
        )
    return commit


class TaskWorktrees:
    """The worktrees of one run in one repository. Use ``await TaskWorktrees.open(...)``."""

    def __init__(self, repo: Path, common_dir: Path, run: str, base: str, s: WorktreeSettings):
        self.repo = repo
        self.run = check_id("run id", run)
        self.base = base
        self.settings = s
        self.root = (
            s.root.expanduser().absolute() if s.root else common_dir / "godel-worktrees"
        ) / run
        # `git worktree add/remove` of one repository edit shared admin files: one at a time.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, repo: Path, run: str, settings: WorktreeSettings) -> TaskWorktrees:
        check_id("run id", run)
        top, common = await open_repo(repo)
        base = settings.base or await current_branch(top)
        await base_commit(top, base)
        return cls(top, common, run, base, settings)

    async def create(self, task: str) -> Worktree:
        """A new worktree on ``godel/<run>/<task>`` from the base's tip, set up."""
        branch = branch_name(self.run, task)
        path = self.root / task
        if path.exists():
            raise InvalidInput(
                f"worktree directory {path} already exists: remove it (git worktree remove) "
                "or use another run id",
                path=str(path),
            )
        if await rev_parse(self.repo, f"refs/heads/{branch}") is not None:
            raise InvalidInput(
                f"branch {branch} already exists: delete it (git branch -D {branch}) "
                "or use another run id",
                branch=branch,
            )
        start = await base_commit(self.repo, self.base)
        async with self._lock:
            await git(self.repo, "worktree", "add", "--quiet", "-b", branch, str(path), start)
        wt = Worktree(task=task, branch=branch, path=path, base=self.base, base_commit=start)
        try:
            await self._set_up(wt)
        except BaseException:
            await self.remove(wt)
            raise
        return wt

    async def create_detached(self) -> Worktree:
        """A worktree at the base's tip on no branch: where merges are tried and gated."""
        # Task ids never start with a dot, so this name is never a task's.
        path = self.root / ".merge"
        if path.exists():
            raise InvalidInput(
                f"worktree directory {path} already exists: remove it (git worktree remove) "
                "or use another run id",
                path=str(path),
            )
        start = await base_commit(self.repo, self.base)
        async with self._lock:
            await git(self.repo, "worktree", "add", "--quiet", "--detach", str(path), start)
        wt = Worktree(task=".merge", branch="", path=path, base=self.base, base_commit=start)
        try:
            await self._set_up(wt)
        except BaseException:
            await self.remove(wt)
            raise
        return wt

    async def _set_up(self, wt: Worktree) -> None:
        for name in self.settings.copy_files:
            src = self.repo / name
            if not src.exists():
                wt.missing.append(name)
                continue
            dst = wt.path / name
            await asyncio.to_thread(_copy, src, dst)
            wt.copied.append(name)
        command = self.settings.setup_command
        if command:
            result = await run_gate(
                Gate(command=command, timeout_s=self.settings.setup_timeout_s), wt.path
            )
            if not result.passed:
                last = next((ln for ln in reversed(result.output.splitlines()) if ln.strip()), "")
                raise RuntimeFailure(
                    f"setup command {result.summary()} in {wt.path}: {last.strip() or 'no output'}",
                    path=str(wt.path),
                    exit_code=result.exit_code,
                )

    async def commit_changes(self, wt: Worktree, message: str) -> str | None:
        """Commit everything the task changed (not the copied files); the new tip, or None."""
        excludes = [f":(exclude,literal){name}" for name in wt.copied]
        await git(wt.path, "add", "--all", "--", ".", *excludes)
        staged = await git(wt.path, "diff", "--cached", "--quiet", check=False)
        if staged.ok:
            return None  # nothing to commit
        await git(wt.path, "commit", "--quiet", "-m", message)
        return await rev_parse(wt.path, "HEAD")

    async def change(self, wt: Worktree) -> BranchChange:
        return await branch_change(self.repo, self.base, wt.task, wt.branch)

    async def remove(self, wt: Worktree) -> None:
        """Remove the worktree directory; its branch stays (merges need it)."""
        async with self._lock:
            if wt.path.exists():
                await git(self.repo, "worktree", "remove", "--force", str(wt.path))
            await git(self.repo, "worktree", "prune")

    async def finish(self, wt: Worktree, succeeded: bool) -> bool:
        """Apply the cleanup policy; True when the worktree was removed."""
        policy = self.settings.cleanup
        if policy == "always" or (policy == "on-success" and succeeded):
            await self.remove(wt)
            return True
        return False


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=True)
    else:
        shutil.copy2(src, dst)


async def branch_change(repo: Path, base: str, task: str, branch: str) -> BranchChange:
    """The files ``branch`` touched since it left ``base`` (``git diff base...branch``)."""
    head = await rev_parse(repo, f"refs/heads/{branch}")
    if head is None:
        raise InvalidInput(f"branch {branch} does not exist in {repo}", branch=branch)
    # No rename detection: a rename touches both paths, and both matter for overlaps.
    out = await git(repo, "diff", "--name-only", "--no-renames", "-z", f"{base}...{branch}")
    files = sorted(f for f in out.stdout.split("\0") if f)
    return BranchChange(task=task, branch=branch, head=head if files else None, files=files)
