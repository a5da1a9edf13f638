"""Overlap detection and the merge strategies: ``careful`` (one at a time, gated) and ``fast``.

Merges are tried in a detached worktree at the base's tip, and the gate runs there; the
base branch only moves to a result that passed. Branches that overlap are reported before
anything is merged; a real conflict is never resolved, only reported.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from core.errors import RuntimeFailure
from core.work.gates import Gate, GateResult, run_gate
from core.work.git import first_problem, git, rev_parse
from core.work.report import MergeReport, Overlap, Strategy, TaskMerge
from core.work.worktrees import BranchChange, TaskWorktrees, Worktree, base_commit


async def conflicts(repo: Path, ours: str, theirs: str) -> list[str]:
    """The files git cannot merge between two commits ([] when they merge cleanly).

    ``git merge-tree --write-tree`` (git 2.38+) merges without touching any worktree.
    """
    out = await git(
        repo,
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        ours,
        theirs,
        check=False,
    )
    if out.code == 0:
        return []
    if out.code == 1:
        # The tree id, then one conflicted path per line until a blank line.
        files: list[str] = []
        for line in out.stdout.splitlines()[1:]:
            if not line:
                break
            files.append(line)
        return sorted(set(files))
    raise RuntimeFailure(
        f"git merge-tree failed in {repo} (git 2.38 or newer is needed): "
        f"{first_problem(out.stderr)}",
        repo=str(repo),
    )


async def find_overlaps(repo: Path, changes: list[BranchChange]) -> list[Overlap]:
    """Every pair of branches that touched a common file, and whether the pair conflicts."""
    found: list[Overlap] = []
    live = [c for c in changes if c.head is not None]
    for a, b in combinations(live, 2):
        common = sorted(set(a.files) & set(b.files))
        if not common:
            continue
        bad = await conflicts(repo, a.branch, b.branch)
        found.append(
            Overlap(
                branches=(a.branch, b.branch),
                tasks=(a.task, b.task),
                files=common,
                conflict=bool(bad),
                conflict_files=bad,
            )
        )
    return found


async def _checked_out_at(repo: Path, branch: str) -> Path | None:
    """The worktree that has ``branch`` checked out, if any."""
    out = await git(repo, "worktree", "list", "--porcelain")
    path: Path | None = None
    for line in out.stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}":
            return path
    return None


async def _publish(repo: Path, base: str, old: str, new: str) -> None:
    """Move ``base`` from ``old`` to ``new`` (a descendant), refusing if it moved meanwhile."""
    if old == new:
        return
    where = await _checked_out_at(repo, base)
    if where is None:
        await git(repo, "update-ref", "-m", "godel: merge", f"refs/heads/{base}", new, old)
        return
    # The base is checked out (usually the user's own tree): fast-forward it there, so its
    # files follow; git refuses if that would overwrite local edits.
    if await rev_parse(where, "HEAD") != old:
        raise RuntimeFailure(
            f"base branch {base} moved in {where} while merging: merge again from its new tip",
            base=base,
        )
    await git(where, "merge", "--ff-only", "--quiet", new)


async def _merge_one(wt: Worktree, change: BranchChange) -> str | None:
    """Merge a branch into the integration worktree; None on success, else why not."""
    before = await rev_parse(wt.path, "HEAD")
    assert before is not None
    msg = f"godel: merge task {change.task} ({change.branch})"
    out = await git(wt.path, "merge", "--no-edit", "--quiet", "-m", msg, change.branch, check=False)
    if out.ok:
        return None
    await git(wt.path, "merge", "--abort", check=False)
    await git(wt.path, "reset", "--hard", "--quiet", before)
    return f"git merge failed: {first_problem(out.stderr or out.stdout)}"


async def _head(wt: Worktree) -> str:
    head = await rev_parse(wt.path, "HEAD")
    assert head is not None
    return head


def _unchanged(change: BranchChange) -> TaskMerge:
    return TaskMerge(
        task=change.task,
        branch=change.branch,
        files=[],
        merged=False,
        reason="no changes against the base: nothing to merge",
    )


async def _careful(
    worktrees: TaskWorktrees, wt: Worktree, changes: list[BranchChange], gate: Gate | None
) -> tuple[list[TaskMerge], list[GateResult]]:
    out: list[TaskMerge] = []
    gates: list[GateResult] = []
    for change in changes:
        if change.head is None:
            out.append(_unchanged(change))
            continue
        rec = TaskMerge(
            task=change.task, branch=change.branch, files=change.files, merged=False, reason=""
        )
        out.append(rec)
        before = await _head(wt)
        bad = await conflicts(wt.path, before, change.branch)
        if bad:
            rec.reason = (
                f"conflicts with the base as merged so far in {', '.join(bad)}: not merged; "
                "resolve by hand or re-run the task on the new base"
            )
            continue
        why = await _merge_one(wt, change)
        if why:
            rec.reason = why
            continue
        if gate is not None:
            result = await run_gate(gate, wt.path)
            gates.append(result)
            rec.gate = result
            if not result.passed:
                await git(wt.path, "reset", "--hard", "--quiet", before)
                rec.reason = f"the gate {result.summary()} after merging it: reverted"
                continue
        after = await _head(wt)
        await _publish(worktrees.repo, worktrees.base, before, after)
        rec.merged = True
        rec.merge_commit = after
        rec.reason = "merged; the gate passed" if gate else "merged (no gate)"
    return out, gates


async def _fast(
    worktrees: TaskWorktrees,
    wt: Worktree,
    changes: list[BranchChange],
    overlaps: list[Overlap],
    gate: Gate | None,
) -> tuple[list[TaskMerge], list[GateResult], list[str]]:
    """Every branch that overlaps no other, merged together, gated once. Also returns
    the tasks it left for a careful pass (``balanced``): the overlapping ones, and all of
    a batch whose gate failed."""
    overlapping: dict[str, list[Overlap]] = {}
    for o in overlaps:
        for branch in o.branches:
            overlapping.setdefault(branch, []).append(o)
    out: list[TaskMerge] = []
    merged: list[TaskMerge] = []
    deferred: list[str] = []
    start = await _head(wt)
    for change in changes:
        if change.head is None:
            out.append(_unchanged(change))
            continue
        rec = TaskMerge(
            task=change.task, branch=change.branch, files=change.files, merged=False, reason=""
        )
        out.append(rec)
        if change.branch in overlapping:
            rec.reason = "overlaps " + "; ".join(o.describe() for o in overlapping[change.branch])
            rec.reason += ": not merged by the fast strategy"
            deferred.append(rec.task)
            continue
        why = await _merge_one(wt, change)
        if why:
            rec.reason = why
            continue
        merged.append(rec)
    gates: list[GateResult] = []
    if not merged:
        return out, gates, deferred
    if gate is not None:
        result = await run_gate(gate, wt.path)
        gates.append(result)
        if not result.passed:
            await git(wt.path, "reset", "--hard", "--quiet", start)
            names = ", ".join(r.task for r in merged)
            for rec in merged:
                rec.gate = result
                rec.reason = f"the gate {result.summary()} after merging {names} together: reverted"
            return out, gates, deferred + [r.task for r in merged]
    after = await _head(wt)
    await _publish(worktrees.repo, worktrees.base, start, after)
    for rec in merged:
        rec.merged = True
        rec.merge_commit = after
        rec.gate = gates[0] if gates else None
        rec.reason = "merged with the others; the gate passed" if gate else "merged (no gate)"
    return out, gates, deferred


async def _balanced(
    worktrees: TaskWorktrees,
    wt: Worktree,
    changes: list[BranchChange],
    overlaps: list[Overlap],
    gate: Gate | None,
) -> tuple[list[TaskMerge], list[GateResult]]:
    """``fast`` first; then what it left (the overlapping branches, or every branch of a
    batch whose gate failed) one at a time, each gated, as ``careful``: the branch that
    broke the batch is found and the others still merge; a real conflict is reported."""
    tasks, gates, deferred = await _fast(worktrees, wt, changes, overlaps, gate)
    if not deferred:
        return tasks, gates
    again = [c for c in changes if c.task in deferred]
    retried, more = await _careful(worktrees, wt, again, gate)
    by_task = {t.task: t for t in retried}
    for t in retried:
        if t.merged:
            t.reason += " (one at a time, after the batch)"
    return [by_task.get(t.task, t) for t in tasks], gates + more


async def merge_changes(
    worktrees: TaskWorktrees,
    changes: list[BranchChange],
    strategy: Strategy,
    gate: Gate | None,
) -> MergeReport:
    """Merge the tasks' branches into the base by ``strategy``, in the order given."""
    repo, base = worktrees.repo, worktrees.base
    before = await base_commit(repo, base)
    overlaps = await find_overlaps(repo, changes)
    wt = await worktrees.create_detached()
    try:
        if strategy == "careful":
            tasks, gates = await _careful(worktrees, wt, changes, gate)
        elif strategy == "balanced":
            tasks, gates = await _balanced(worktrees, wt, changes, overlaps, gate)
        else:
            tasks, gates, _left = await _fast(worktrees, wt, changes, overlaps, gate)
    finally:
        await worktrees.remove(wt)
    return MergeReport(
        strategy=strategy,
        base=base,
        base_before=before,
        base_after=await base_commit(repo, base),
        overlaps=overlaps,
        tasks=tasks,
        gates=gates,
    )
