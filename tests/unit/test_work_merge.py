"""Task worktrees, overlap detection and the merge strategies, on real git repositories."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.errors import InvalidInput, RuntimeFailure
from core.work.gates import Gate
from core.work.git import git, rev_parse
from core.work.merge import find_overlaps, merge_changes
from core.work.worktrees import BranchChange, TaskWorktrees, Worktree, WorktreeSettings
from tests.gitrepo import GIT_ENV, init_repo

LINES = "".join(f"line {i}\n" for i in range(1, 11))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository on ``main`` with one commit; git's identity from the environment only."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    return init_repo(tmp_path / "repo", {"shared.txt": LINES, ".gitignore": "*.log\n"})


async def open_run(repo: Path, **settings: object) -> TaskWorktrees:
    return await TaskWorktrees.open(repo, "r1", WorktreeSettings.model_validate(settings))


async def task_edit(wts: TaskWorktrees, task: str, files: dict[str, str]) -> BranchChange:
    """A task that writes ``files`` in its worktree and commits them."""
    wt = await wts.create(task)
    for name, text in files.items():
        (wt.path / name).write_text(text)
    await wts.commit_changes(wt, f"godel: task {task}")
    return await wts.change(wt)


def edit_line(n: int, text: str) -> str:
    return LINES.replace(f"line {n}\n", f"{text}\n")


async def test_each_task_gets_a_worktree_on_its_own_branch(repo: Path) -> None:
    wts = await open_run(repo)
    base = await rev_parse(repo, "main")
    a, b = await asyncio.gather(wts.create("t1"), wts.create("t2"))
    assert (a.branch, b.branch) == ("godel/r1/t1", "godel/r1/t2")
    for wt in (a, b):
        assert (wt.path / "shared.txt").read_text() == LINES
        assert await rev_parse(wt.path, "HEAD") == base == wt.base_commit
        out = await git(wt.path, "symbolic-ref", "--short", "HEAD")
        assert out.stdout.strip() == wt.branch
    # Kept inside the git dir: the user's tree shows nothing new.
    assert (await git(repo, "status", "--porcelain")).stdout == ""


async def test_setup_copies_files_runs_a_command_and_copies_are_never_committed(
    repo: Path,
) -> None:
    (repo / ".env").write_text("SECRET=1\n")
    wts = await open_run(
        repo, copy_files=[".env", "absent.cfg"], setup_command="echo set up > setup.log"
    )
    wt = await wts.create("t1")
    assert (wt.path / ".env").read_text() == "SECRET=1\n"
    assert (wt.path / "setup.log").read_text() == "set up\n"
    assert wt.copied == [".env"] and wt.missing == ["absent.cfg"]
    (wt.path / "new.txt").write_text("work\n")
    head = await wts.commit_changes(wt, "godel: task t1")
    assert head is not None
    change = await wts.change(wt)
    assert change.files == ["new.txt"] and change.head == head
    message = await git(repo, "log", "-1", "--format=%s", wt.branch)
    assert message.stdout.strip() == "godel: task t1"
    # Nothing more to commit: no new commit.
    assert await wts.commit_changes(wt, "again") is None


async def test_a_failing_setup_command_removes_the_worktree(repo: Path) -> None:
    wts = await open_run(repo, setup_command="echo no network; exit 3")
    with pytest.raises(RuntimeFailure) as e:
        await wts.create("t1")
    assert "exit 3" in e.value.message and "no network" in e.value.message
    assert "\n" not in e.value.message
    assert not (wts.root / "t1").exists()


@pytest.mark.parametrize(
    ("policy", "succeeded", "removed"),
    [
        ("on-success", True, True),
        ("on-success", False, False),
        ("always", False, True),
        ("never", True, False),
    ],
)
async def test_cleanup_policy(repo: Path, policy: str, succeeded: bool, removed: bool) -> None:
    wts = await open_run(repo, cleanup=policy)
    wt = await wts.create("t1")
    assert await wts.finish(wt, succeeded) is removed
    assert wt.path.exists() is not removed
    # The branch outlives its worktree: merging needs it.
    assert await rev_parse(repo, "refs/heads/godel/r1/t1") is not None


async def test_clear_errors_for_a_non_repo_a_missing_base_and_an_existing_dir(
    repo: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InvalidInput, match=r"is not a git repository: run `git init`"):
        await open_run(plain)
    with pytest.raises(InvalidInput, match=r"is not a directory"):
        await open_run(tmp_path / "nowhere")
    with pytest.raises(InvalidInput, match=r"base branch 'develop' does not exist"):
        await open_run(repo, base="develop")
    wts = await open_run(repo)
    with pytest.raises(InvalidInput, match=r"not usable in a branch name"):
        await wts.create("../escape")
    (wts.root / "t1").mkdir(parents=True)
    with pytest.raises(InvalidInput, match=r"worktree directory .* already exists"):
        await wts.create("t1")


async def test_overlaps_tell_a_clean_overlap_from_a_conflict(repo: Path) -> None:
    wts = await open_run(repo)
    top = await task_edit(wts, "top", {"shared.txt": edit_line(1, "TOP")})
    bottom = await task_edit(wts, "bottom", {"shared.txt": edit_line(10, "BOTTOM")})
    clash = await task_edit(wts, "clash", {"shared.txt": edit_line(1, "CLASH")})
    alone = await task_edit(wts, "alone", {"other.txt": "x\n"})
    found = await find_overlaps(repo, [top, bottom, clash, alone])
    by_pair = {o.tasks: o for o in found}
    assert set(by_pair) == {("top", "bottom"), ("top", "clash"), ("bottom", "clash")}
    assert not by_pair["top", "bottom"].conflict
    assert by_pair["top", "clash"].conflict
    assert by_pair["top", "clash"].conflict_files == ["shared.txt"]
    assert by_pair["top", "clash"].branches == ("godel/r1/top", "godel/r1/clash")
    assert not by_pair["bottom", "clash"].conflict


async def test_careful_reverts_a_merge_whose_gate_fails(repo: Path) -> None:
    wts = await open_run(repo)
    changes = [
        await task_edit(wts, "t1", {"a.txt": "good\n"}),
        await task_edit(wts, "t2", {"b.txt": "bad\n"}),
        await task_edit(wts, "t3", {"c.txt": "good\n"}),
    ]
    before = await rev_parse(repo, "main")
    gate = Gate(command="! grep -l bad *.txt")
    report = await merge_changes(wts, changes, "careful", gate)
    assert [(t.task, t.merged) for t in report.tasks] == [("t1", True), ("t2", False), ("t3", True)]
    assert "reverted" in report.tasks[1].reason and "failed (exit 1)" in report.tasks[1].reason
    assert report.tasks[1].gate is not None and "b.txt" in report.tasks[1].gate.output
    assert len(report.gates) == 3 and [g.passed for g in report.gates] == [True, False, True]
    assert report.base_before == before and report.base_after == await rev_parse(repo, "main")
    # The base is checked out in the repository itself: its files followed the merges.
    assert (repo / "a.txt").exists() and (repo / "c.txt").exists()
    assert not (repo / "b.txt").exists()
    log = await git(repo, "log", "--format=%s", "main")
    assert "godel: task t2" not in log.stdout
    assert not (wts.root / ".merge").exists()


async def test_careful_merges_a_clean_overlap_and_reports_a_conflict(repo: Path) -> None:
    wts = await open_run(repo)
    changes = [
        await task_edit(wts, "top", {"shared.txt": edit_line(1, "TOP")}),
        await task_edit(wts, "bottom", {"shared.txt": edit_line(10, "BOTTOM")}),
        await task_edit(wts, "clash", {"shared.txt": edit_line(1, "CLASH")}),
    ]
    report = await merge_changes(wts, changes, "careful", Gate(command="true"))
    assert [t.merged for t in report.tasks] == [True, True, False]
    assert "conflicts with the base as merged so far in shared.txt" in report.tasks[2].reason
    text = (repo / "shared.txt").read_text()
    assert "TOP" in text and "BOTTOM" in text and "CLASH" not in text
    assert any(o.conflict for o in report.overlaps)


async def test_fast_merges_every_non_overlapping_branch_and_gates_once(repo: Path) -> None:
    await git(repo, "branch", "release")  # a base that is not checked out anywhere
    wts = await open_run(repo, base="release")
    changes = [
        await task_edit(wts, "t1", {"shared.txt": edit_line(1, "TOP")}),
        await task_edit(wts, "t2", {"b.txt": "b\n"}),
        await task_edit(wts, "t3", {"shared.txt": edit_line(10, "BOTTOM")}),
        await task_edit(wts, "t4", {"d.txt": "d\n"}),
    ]
    report = await merge_changes(wts, changes, "fast", Gate(command="test -f b.txt"))
    assert [t.merged for t in report.tasks] == [False, True, False, True]
    assert "not merged by the fast strategy" in report.tasks[0].reason
    assert "godel/r1/t3" in report.tasks[0].reason
    assert len(report.gates) == 1 and report.gates[0].passed
    tree = await git(repo, "ls-tree", "--name-only", "release")
    assert set(tree.stdout.split()) == {".gitignore", "shared.txt", "b.txt", "d.txt"}
    # main did not move; the user's tree is untouched.
    assert not (repo / "b.txt").exists()


async def test_fast_reverts_everything_when_the_combined_gate_fails(repo: Path) -> None:
    wts = await open_run(repo)
    changes = [
        await task_edit(wts, "t1", {"a.txt": "a\n"}),
        await task_edit(wts, "t2", {"b.txt": "b\n"}),
    ]
    before = await rev_parse(repo, "main")
    report = await merge_changes(wts, changes, "fast", Gate(command="test ! -f b.txt"))
    assert not any(t.merged for t in report.tasks)
    assert all("after merging t1, t2 together: reverted" in t.reason for t in report.tasks)
    assert report.base_after == before == await rev_parse(repo, "main")


async def test_balanced_finds_the_branch_that_broke_the_batch_and_merges_the_rest(
    repo: Path,
) -> None:
    """fast's batch fails its gate (b.txt breaks it); balanced then merges the batch one
    branch at a time, each gated: a and c merge, b is reverted. The two branches that
    overlap cleanly merge one at a time too; the conflicting one is reported."""
    wts = await open_run(repo)
    changes = [
        await task_edit(wts, "a", {"a.txt": "a\n"}),
        await task_edit(wts, "b", {"b.txt": "b\n"}),
        await task_edit(wts, "c", {"c.txt": "c\n"}),
        await task_edit(wts, "top", {"shared.txt": edit_line(1, "TOP")}),
        await task_edit(wts, "bottom", {"shared.txt": edit_line(10, "BOTTOM")}),
        await task_edit(wts, "clash", {"shared.txt": edit_line(1, "CLASH")}),
    ]
    report = await merge_changes(wts, changes, "balanced", Gate(command="test ! -f b.txt"))
    merged = {t.task: t.merged for t in report.tasks}
    assert merged == {
        "a": True, "b": False, "c": True, "top": True, "bottom": True, "clash": False
    }  # fmt: skip
    by_task = {t.task: t for t in report.tasks}
    assert by_task["b"].reason.startswith("the gate `test ! -f b.txt` failed")
    assert "reverted" in by_task["b"].reason
    assert by_task["a"].reason.endswith("(one at a time, after the batch)")
    assert by_task["clash"].reason.startswith("conflicts with the base as merged so far")
    # One gate for the batch, then one per branch merged one at a time (b's failed).
    assert [g.passed for g in report.gates] == [False, True, False, True, True, True]
    tree = await git(repo, "ls-tree", "--name-only", "main")
    assert set(tree.stdout.split()) == {".gitignore", "shared.txt", "a.txt", "c.txt"}


async def test_a_task_without_changes_is_reported_not_merged(repo: Path) -> None:
    wts = await open_run(repo)
    wt: Worktree = await wts.create("idle")
    assert await wts.commit_changes(wt, "nothing") is None
    change = await wts.change(wt)
    report = await merge_changes(wts, [change], "careful", None)
    assert report.tasks[0].reason == "no changes against the base: nothing to merge"
    assert report.base_after == report.base_before


async def test_local_edits_in_the_checked_out_base_are_never_overwritten(repo: Path) -> None:
    wts = await open_run(repo)
    change = await task_edit(wts, "t1", {"shared.txt": edit_line(1, "TOP")})
    (repo / "shared.txt").write_text(edit_line(5, "MINE"))  # uncommitted, in the user's tree
    before = await rev_parse(repo, "main")
    with pytest.raises(RuntimeFailure) as e:
        await merge_changes(wts, [change], "careful", Gate(command="true"))
    assert "local changes" in e.value.message and "\n" not in e.value.message
    assert await rev_parse(repo, "main") == before
    assert (repo / "shared.txt").read_text() == edit_line(5, "MINE")
    assert not (wts.root / ".merge").exists()


async def test_a_detached_head_needs_an_explicit_base(repo: Path) -> None:
    await git(repo, "checkout", "-q", "--detach")
    with pytest.raises(InvalidInput, match=r"detached HEAD: check out a branch or set the base"):
        await open_run(repo)
    assert (await open_run(repo, base="main")).base == "main"
