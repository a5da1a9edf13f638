"""``godel do``'s run: each task in its own worktree, by an agent of its own, gated, merged.

Tasks run level by level of their ``depends_on`` (a task's worktree starts from the base
as merged so far, so it sees what its dependencies changed), at most N at a time. A task
gets an agent spawned with its worktree as workdir (``agent.spawn``), runs its input there
(``agent.exec``), and the agent is killed after. Its changes are committed on its branch
and the gate runs in its worktree; a model agent whose gate failed gets one retry with the
gate's output appended. Each level's passing branches are then merged into the base by
``core.work.merge`` (careful or fast); overlaps are reported, never resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.cli.batch import EXIT_BUDGET, EXIT_FAILED, EXIT_OK
from core.cli.batch_backends import Backend
from core.errors import GodelError
from core.work.gates import Gate, GateResult, run_gate
from core.work.merge import merge_changes
from core.work.plan import DoPlan, DoTask
from core.work.report import Overlap, Strategy
from core.work.worktrees import TaskWorktrees, Worktree, WorktreeSettings, base_commit

BUDGET_EXHAUSTED = "budget exhausted"
# Shell agents run their input as commands: the gate's output appended would not be one.
NO_FEEDBACK_RUNTIMES = frozenset({"shell"})

Say = Callable[[str], None]


class TaskOutcome(BaseModel):
    """One task of the run, from its worktree to the base."""

    task: str
    branch: str | None = None
    worktree: str | None = None  # kept (not removed) when the task was not merged
    agent: str | None = None
    execs: list[str] = Field(default_factory=list)  # exec ids, in order
    exec_status: str | None = None  # the last exec's
    tokens: int | None = None  # None: the runtime reported none (no model)
    cost_usd: str | None = None  # None: unknown (no price, or no model)
    files: list[str] = Field(default_factory=list)
    head: str | None = None  # the branch's tip after the task (its commit)
    gate: GateResult | None = None  # the last gate run in the task's worktree
    retried: bool = False
    merged: bool = False
    merge_commit: str | None = None
    reason: str = "not run"
    budget_exhausted: bool = False


class DoReport(BaseModel):
    run: str
    intent: str
    repo: str
    base: str
    base_before: str
    base_after: str
    strategy: Strategy
    runtime: str
    outcome: Literal["merged", "failed", "budget_exhausted"]
    exit_code: int
    elapsed_s: float
    overlaps: list[Overlap]
    tasks: list[TaskOutcome]


class DoRun:
    def __init__(
        self,
        backend: Backend,
        worktrees: TaskWorktrees,
        plan: DoPlan,
        *,
        intent: str,
        agents: int,
        strategy: Strategy,
        runtime: str,
        model: str | None,
        gate: str | None,
        say: Say,
    ) -> None:
        self.backend = backend
        self.worktrees = worktrees
        self.plan = plan
        self.intent = intent
        self.slots = asyncio.Semaphore(agents)
        self.strategy = strategy
        self.runtime = runtime
        self.model = model
        self.gate = Gate(command=gate) if gate else None
        self.say = say
        self.outcomes = {t.name: TaskOutcome(task=t.name) for t in plan.tasks}
        self.overlaps: list[Overlap] = []

    async def execute(self) -> DoReport:
        started = time.monotonic()
        repo, base = self.worktrees.repo, self.worktrees.base
        before = await base_commit(repo, base)
        for level in self.plan.levels():
            runnable = [t for t in level if self._deps_merged(t)]
            done = await asyncio.gather(*(self._task(t) for t in runnable))
            await self._merge([wt for wt in done if wt is not None])
        out = list(self.outcomes.values())
        if all(o.merged for o in out):
            code, outcome = EXIT_OK, "merged"
        elif any(o.budget_exhausted for o in out):
            code, outcome = EXIT_BUDGET, "budget_exhausted"
        else:
            code, outcome = EXIT_FAILED, "failed"
        return DoReport(
            run=self.worktrees.run,
            intent=self.intent,
            repo=str(repo),
            base=base,
            base_before=before,
            base_after=await base_commit(repo, base),
            strategy=self.strategy,
            runtime=self.runtime,
            outcome=outcome,
            exit_code=code,
            elapsed_s=round(time.monotonic() - started, 3),
            overlaps=self.overlaps,
            tasks=out,
        )

    def _deps_merged(self, t: DoTask) -> bool:
        missing = [d for d in t.depends_on if not self.outcomes[d].merged]
        if missing:
            rec = self.outcomes[t.name]
            rec.reason = f"not run: its dependency {', '.join(missing)} was not merged"
            self.say(f"{t.name}: {rec.reason}")
        return not missing

    # one task -----------------------------------------------------------------------------

    async def _task(self, t: DoTask) -> Worktree | None:
        """Run the task; its worktree when it is ready to merge, else None."""
        rec = self.outcomes[t.name]
        async with self.slots:
            try:
                wt = await self.worktrees.create(t.name)
            except GodelError as e:
                rec.reason = f"no worktree: {e.message}"
                self.say(f"{t.name}: {rec.reason}")
                return None
            rec.branch, rec.worktree = wt.branch, str(wt.path)
            ready = False
            try:
                ready = await self._in_worktree(t, wt, rec)
            finally:
                if not ready:
                    self.say(f"{t.name}: not merged: {rec.reason} (worktree kept: {wt.path})")
            return wt if ready else None

    async def _in_worktree(self, t: DoTask, wt: Worktree, rec: TaskOutcome) -> bool:
        spec: dict[str, Any] = {"runtime": self.runtime, "workdir": str(wt.path)}
        if self.model is not None:
            spec["model"] = self.model
        if t.skills:
            spec["skills"] = t.skills
        try:
            agent = await self.backend.call("agent.spawn", spec)
        except GodelError as e:
            self._refused(rec, "the agent did not start", e)
            return False
        rec.agent = str(agent["id"])
        self.say(f"{t.name}: agent {rec.agent} in {wt.path} on {wt.branch}")
        try:
            if not await self._exec(t, rec, t.input):
                return False
            await self._commit(wt, rec)
            if self.gate is None:
                return True
            if await self._gate(t, wt, rec):
                return True
            assert rec.gate is not None
            if self.runtime in NO_FEEDBACK_RUNTIMES:
                rec.reason = (
                    f"the gate {rec.gate.summary()}; not retried: a {self.runtime} agent "
                    "runs commands and cannot take the gate's output"
                )
                return False
            rec.retried = True
            self.say(f"{t.name}: retrying once with the gate's output")
            retry = f"{t.input}\n\n{rec.gate.feedback()}"
            if not await self._exec(t, rec, retry):
                return False
            await self._commit(wt, rec)
            if await self._gate(t, wt, rec):
                return True
            rec.reason = f"the gate {rec.gate.summary()} after one retry"
            return False
        finally:
            with contextlib.suppress(GodelError):
                await self.backend.call("agent.kill", {"id": rec.agent})

    async def _exec(self, t: DoTask, rec: TaskOutcome, text: str) -> bool:
        assert rec.agent is not None
        try:
            result = await self.backend.call("agent.exec", {"id": rec.agent, "input": text})
        except GodelError as e:
            self._refused(rec, "the agent's exec was refused", e)
            return False
        rec.execs.append(str(result["exec_id"]))
        rec.exec_status = str(result["status"])
        usage = result.get("usage") or {}
        tokens = sum(int(v) for v in usage.values() if isinstance(v, int))
        if tokens:
            rec.tokens = (rec.tokens or 0) + tokens
        cost = result.get("cost_usd")
        if cost is not None:
            from decimal import Decimal

            rec.cost_usd = str(Decimal(rec.cost_usd or "0") + Decimal(str(cost)))
        self.say(
            f"{t.name}: exec {result['exec_id']} {rec.exec_status} (exit {result['exit_code']})"
        )
        if rec.exec_status == "succeeded":
            return True
        why = str(result.get("reason") or "")
        rec.budget_exhausted = BUDGET_EXHAUSTED in why
        rec.reason = f"the agent's exec {rec.exec_status} (exit {result['exit_code']})"
        if why:
            rec.reason += f": {why}"
        return False

    def _refused(self, rec: TaskOutcome, what: str, e: GodelError) -> None:
        rec.budget_exhausted = (
            e.data.get("kind") == "budget_exhausted" or BUDGET_EXHAUSTED in e.message
        )
        rec.reason = f"{what}: {e.message}"

    async def _commit(self, wt: Worktree, rec: TaskOutcome) -> None:
        head = await self.worktrees.commit_changes(wt, f"godel do: task {wt.task}\n\n{self.intent}")
        if head is not None:
            rec.head = head
        change = await self.worktrees.change(wt)
        rec.files = change.files
        what = f"committed {head[:12]}" if head else "nothing new to commit"
        self.say(f"{wt.task}: {what}; files: {', '.join(rec.files) or '(none)'}")

    async def _gate(self, t: DoTask, wt: Worktree, rec: TaskOutcome) -> bool:
        assert self.gate is not None
        rec.gate = await run_gate(self.gate, wt.path)
        self.say(f"{t.name}: gate {rec.gate.summary()} in its worktree")
        if not rec.gate.passed:
            rec.reason = f"the gate {rec.gate.summary()}"
        return rec.gate.passed

    # merging a level ----------------------------------------------------------------------

    async def _merge(self, ready: list[Worktree]) -> None:
        if not ready:
            return
        changes = [await self.worktrees.change(wt) for wt in ready]
        report = await merge_changes(self.worktrees, changes, self.strategy, self.gate)
        self.overlaps.extend(report.overlaps)
        for o in report.overlaps:
            self.say(f"overlap: {o.describe()}")
        for m in report.tasks:
            rec = self.outcomes[m.task]
            rec.merged, rec.merge_commit, rec.reason = m.merged, m.merge_commit, m.reason
            rec.files = m.files or rec.files
            shown = f" at {m.merge_commit[:12]}" if m.merge_commit else ""
            self.say(f"{m.task}: {'merged' if m.merged else 'not merged'}{shown}: {m.reason}")
        for wt in ready:
            if await self.worktrees.finish(wt, self.outcomes[wt.task].merged):
                self.outcomes[wt.task].worktree = None


async def open_worktrees(repo: Path, run: str) -> TaskWorktrees:
    # Worktrees of merged tasks go; the others stay for a look (their paths are reported).
    return await TaskWorktrees.open(repo, run, WorktreeSettings(cleanup="on-success"))
