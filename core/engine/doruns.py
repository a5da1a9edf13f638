"""``godel do`` runs, in the engine: each task in its own worktree, by an agent of its own,
gated, merged — every step published as a ``do.*`` event and audited.

The run executes in the engine (the daemon, or an embedded engine), so every face sees
the same run: ``godel do`` prints the ``do.step`` lines it streams back, the console
folds the same events into its runs view. A run lives as long as the call that started
it (``do.run``): when its caller goes away the run is cancelled, its agents killed, its
worktrees and branches kept, and ``do.finished`` says "interrupted".

Tasks run level by level of their ``depends_on`` (a task's worktree starts from the base
as merged so far, so it sees what its dependencies changed), at most ``agents`` at a
time. A task gets an agent spawned with its worktree as workdir, runs its input there,
and the agent is killed after. Its changes are committed on its branch and the gate runs
in its worktree; a model agent whose gate failed gets one retry with the gate's output
appended. Each level's passing branches are then merged into the base by
``core.work.merge`` (careful or fast); overlaps are reported, never resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.audit import AuditDraft
from core.engine.agents import AgentService
from core.engine.budgets import BudgetService
from core.engine.context import EngineContext
from core.engine.execs import ExecService
from core.engine.reads import ReadService
from core.errors import (
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BudgetReserved,
    GodelError,
    InvalidInput,
    run_exit_code,
)
from core.events import DoFinished, DoPlanned, DoStarted, DoStep, DoTaskPlan, Event
from core.events.types import DoStepKind, DoTaskState
from core.models import AgentSpec, ExecResult, ExecStatus, Usage
from core.runtimes.base import Capability
from core.work.gates import Gate, GateResult, run_gate
from core.work.merge import merge_changes
from core.work.plan import DoPlan, DoTask
from core.work.planner import PlanResult, plan_intent
from core.work.report import Overlap, Strategy
from core.work.worktrees import TaskWorktrees, Worktree, WorktreeSettings, base_commit

__all__ = ["DoReport", "DoRequest", "DoRunService", "PlanEstimate", "TaskOutcome"]

BUDGET_EXHAUSTED = "budget exhausted"
# Shell agents run their input as commands: the gate's output appended would not be one.
NO_FEEDBACK_RUNTIMES = frozenset({"shell"})

OnEvent = Callable[[Event], Awaitable[None]]
Outcome = Literal["merged", "failed", "budget_exhausted", "interrupted", "error"]


class DoRequest(BaseModel):
    """What ``do.run`` is asked to do (the CLI's options, resolved)."""

    model_config = ConfigDict(extra="forbid")

    intent: str = Field(min_length=1)
    repo: Path  # absolute: the caller's working directory, in its git repository
    plan: DoPlan | None = None  # None: the planner makes one with ``planner_model``
    planner_model: str | None = None  # None: ``model``
    agents: int = Field(default=1, ge=1, le=1000)
    strategy: Strategy = "careful"
    runtime: str = "shell"
    model: str | None = None
    gate: str | None = None
    worktrees: WorktreeSettings = Field(default_factory=WorktreeSettings)


class TaskOutcome(BaseModel):
    """One task of the run, from its worktree to the base."""

    task: str
    runtime: str = ""
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
    plan_source: str = "file"
    outcome: Outcome
    exit_code: int
    elapsed_s: float
    overlaps: list[Overlap]
    tasks: list[TaskOutcome]


class TaskEstimate(BaseModel):
    task: str
    runtime: str
    model: str | None = None
    usd: str | None = None  # None: unknown (nothing measured to estimate from)
    basis: str  # where the figure comes from, in words


class PlanEstimate(BaseModel):
    """``godel do --dry-run``'s estimate of running a plan: one exec per task (a retry
    after a failed gate adds one), from this daemon's measured execs."""

    tasks: list[TaskEstimate]
    total_usd: str | None  # None: some task's cost is unknown


def new_run_id() -> str:
    return f"do-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class DoRunService:
    """Starts runs; each run is a ``_Run`` driven to its end in the caller's task."""

    def __init__(
        self,
        ctx: EngineContext,
        agents: AgentService,
        execs: ExecService,
        budgets: BudgetService,
        reads: ReadService,
    ) -> None:
        self.ctx = ctx
        self.agents = agents
        self.execs = execs
        self.budgets = budgets
        self.reads = reads

    def estimate(self, plan: DoPlan, runtime: str, model: str | None) -> PlanEstimate:
        """What running ``plan`` should cost, one exec per task, from what this daemon
        measured: the mean cost of the execs of each task's model that reported one.
        Unknown (None) when a model task's model has no such exec yet: never a guess."""
        by_model = self.reads.views.spend_by["model"]
        rows: list[TaskEstimate] = []
        for t in plan.tasks:
            rt = t.runtime or runtime
            if not self.uses_model(rt):
                rows.append(TaskEstimate(task=t.name, runtime=rt, usd="0", basis="no model"))
                continue
            m = t.model or model or self.ctx.config.defaults.model
            cell = by_model.get(m)
            priced = 0 if cell is None else cell.execs - cell.cost_unknown
            if cell is None or cell.cost is None or priced <= 0:
                rows.append(
                    TaskEstimate(
                        task=t.name, runtime=rt, model=m, basis=f"no exec of {m} measured yet"
                    )
                )
                continue
            mean = (cell.cost / priced).quantize(Decimal("0.000001"))
            rows.append(
                TaskEstimate(
                    task=t.name,
                    runtime=rt,
                    model=m,
                    usd=str(mean),
                    basis=f"the mean of {priced} measured exec{'s' if priced != 1 else ''} of {m}",
                )
            )
        known = [Decimal(r.usd) for r in rows if r.usd is not None]
        total = str(sum(known, Decimal(0))) if len(known) == len(rows) else None
        return PlanEstimate(tasks=rows, total_usd=total)

    def uses_model(self, runtime: str) -> bool:
        return Capability.MODEL in self.ctx.registry.get(runtime).capabilities

    async def plan(
        self,
        intent: str,
        repo: Path,
        model: str | None,
        actor: str,
        *,
        keys: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> PlanResult:
        """Ask ``model`` for a plan of ``intent``, charged to the budgets (project and
        ``model:MODEL``) like any model call, and audited."""
        if model is None:
            raise InvalidInput(
                "nothing to plan with: pass --plan FILE, or a model (--model, or [do] "
                "planner_model or model in .godel/config.toml)"
            )
        call_id = f"plan-{run_id or new_run_id()}"
        resolved = await self.ctx.models.resolve(model, keys)
        while True:
            try:
                await self.budgets.reserve_call(call_id, model)
                break
            except BudgetReserved:
                await self.budgets.settled()  # room once running execs settle
        opts = self.ctx.config.runtimes.get("native", {})
        usage, cost = Usage(), None
        try:
            result = await plan_intent(
                intent,
                repo,
                resolved,
                timeout=float(opts.get("request_timeout", 600)),
                max_retries=int(opts.get("max_retries", 3)),
            )
            usage, cost = result.usage, result.cost_usd
        except GodelError as e:
            # A plan refused after two tries was still paid for: its data says how much.
            spent = e.data.get("usage")
            if isinstance(spent, dict):
                usage = Usage.model_validate(spent)
            if e.data.get("cost_usd") is not None:
                cost = Decimal(str(e.data["cost_usd"]))
            await self._settle_plan(call_id, usage, cost, ok=False)
            await self.ctx.journal.audit(
                AuditDraft(
                    actor=actor,
                    action="do.plan",
                    subject=run_id or call_id,
                    result="failed",
                    payload={"model": model, "error": e.message},
                )
            )
            raise
        except BaseException:
            # Cancelled (the caller went away) mid-call: nothing was measured. Release the
            # reservation, or it would stay held until the daemon restarts.
            await asyncio.shield(self.budgets.settle(call_id, None))
            raise
        await self._settle_plan(call_id, usage, cost, ok=True)
        if run_id is None:  # a dry run (in a run, its do.planned is the audit entry)
            await self.ctx.journal.audit(
                AuditDraft(
                    actor=actor,
                    action="do.plan",
                    subject=call_id,
                    payload={
                        "model": model,
                        "tasks": [t.name for t in result.plan.tasks],
                        "tokens": usage.total_tokens,
                        "cost_usd": None if cost is None else str(cost),
                    },
                )
            )
        return result

    async def _settle_plan(
        self, call_id: str, usage: Usage, cost: Decimal | None, *, ok: bool
    ) -> None:
        status = ExecStatus.SUCCEEDED if ok else ExecStatus.FAILED
        await self.budgets.settle(
            call_id,
            ExecResult(
                exec_id=call_id, status=status, exit_code=0 if ok else 1, usage=usage, cost_usd=cost
            ),
        )

    async def run(
        self,
        req: DoRequest,
        actor: str,
        *,
        keys: Mapping[str, str] | None = None,
        on_event: OnEvent | None = None,
        run_id: str | None = None,
    ) -> DoReport:
        """Run ``req`` to its end; ``on_event`` gets each of its ``do.*`` events as
        published. Raises ``GodelError`` (after ``do.finished`` "error") when the
        repository cannot be used."""
        run = _Run(self, req, actor, keys or {}, on_event, run_id or new_run_id())
        return await run.execute()


class _Run:
    def __init__(
        self,
        svc: DoRunService,
        req: DoRequest,
        actor: str,
        keys: Mapping[str, str],
        on_event: OnEvent | None,
        run_id: str,
    ) -> None:
        self.svc, self.req, self.actor, self.keys = svc, req, actor, keys
        self.on_event = on_event
        self.id = run_id
        self.slots = asyncio.Semaphore(req.agents)
        self.gate = Gate(command=req.gate) if req.gate else None
        self.plan_source = "file"
        self.plan_tokens: int | None = None
        self.plan_cost: str | None = None
        self.outcomes: dict[str, TaskOutcome] = {}
        self.overlaps: list[Overlap] = []
        self.live: set[str] = set()  # agents of this run not killed yet
        self.started = time.monotonic()

    # events -------------------------------------------------------------------------------

    async def _publish(self, event: Event, action: str, subject: str, **payload: object) -> None:
        result = str(payload.pop("result", "ok"))
        await self.svc.ctx.journal.audit(
            AuditDraft(
                actor=self.actor, action=action, subject=subject, result=result, payload=payload
            ),
            events=[event],
        )
        if self.on_event is not None:
            await self.on_event(event)

    async def _step(
        self,
        step: DoStepKind,
        line: str,
        task: str | None = None,
        state: DoTaskState | None = None,
        *,
        agent_id: str | None = None,
        exec_id: str | None = None,
    ) -> None:
        event = DoStep(
            run=self.id,
            step=step,
            line=line,
            task=task,
            state=state,
            agent_id=agent_id,
            exec_id=exec_id,
        )
        subject = f"{self.id}/{task}" if task else self.id
        await self._publish(event, f"do.{step}", subject, line=line, result=state or "ok")

    # the run ------------------------------------------------------------------------------

    async def execute(self) -> DoReport:
        req = self.req
        try:
            worktrees = await TaskWorktrees.open(req.repo, self.id, req.worktrees)
        except GodelError as e:
            await self._finish("error", 2, message=e.message)
            raise
        self.worktrees = worktrees
        await self._publish(
            DoStarted(
                run=self.id,
                intent=req.intent,
                repo=str(worktrees.repo),
                base=worktrees.base,
                strategy=req.strategy,
                runtime=req.runtime,
                agents=req.agents,
                gate=req.gate,
            ),
            "do.start",
            self.id,
            intent=req.intent,
            repo=str(worktrees.repo),
            base=worktrees.base,
            strategy=req.strategy,
            gate=req.gate,
        )
        try:
            plan = req.plan or await self._plan()
        except GodelError as e:
            await self._finish("error", run_exit_code(e), message=e.message)
            raise
        except asyncio.CancelledError:
            await asyncio.shield(self._interrupted())
            raise
        self.outcomes = {
            t.name: TaskOutcome(task=t.name, runtime=t.runtime or req.runtime) for t in plan.tasks
        }
        levels = plan.levels()
        tasks = [
            DoTaskPlan(
                name=t.name,
                level=i,
                input=t.input,
                runtime=t.runtime or req.runtime,
                depends_on=t.depends_on,
                files=t.files,
            )
            for i, level in enumerate(levels)
            for t in level
        ]
        await self._publish(
            DoPlanned(
                run=self.id,
                source=self.plan_source,
                tasks=tasks,
                tokens=self.plan_tokens,
                cost_usd=self.plan_cost,
            ),
            "do.plan",
            self.id,
            source=self.plan_source,
            tasks=[t.name for t in tasks],
        )
        before = await base_commit(worktrees.repo, worktrees.base)
        try:
            for level in levels:
                runnable = [t for t in level if await self._deps_merged(t)]
                done = await asyncio.gather(*(self._task(t) for t in runnable))
                await self._merge([wt for wt in done if wt is not None])
        except asyncio.CancelledError:
            await asyncio.shield(self._interrupted())
            raise
        out = list(self.outcomes.values())
        code: int
        outcome: Outcome
        if all(o.merged for o in out):
            code, outcome = EXIT_OK, "merged"
        elif any(o.budget_exhausted for o in out):
            code, outcome = EXIT_BUDGET, "budget_exhausted"
        else:
            code, outcome = EXIT_FAILED, "failed"
        report = DoReport(
            run=self.id,
            intent=req.intent,
            repo=str(worktrees.repo),
            base=worktrees.base,
            base_before=before,
            base_after=await base_commit(worktrees.repo, worktrees.base),
            strategy=req.strategy,
            runtime=req.runtime,
            plan_source=self.plan_source,
            outcome=outcome,
            exit_code=code,
            elapsed_s=self._elapsed(),
            overlaps=self.overlaps,
            tasks=out,
        )
        await self._finish(outcome, code, report=report)
        return report

    async def _plan(self) -> DoPlan:
        model = self.req.planner_model or self.req.model
        result = await self.svc.plan(
            self.req.intent, self.req.repo, model, self.actor, keys=self.keys, run_id=self.id
        )
        self.plan_source = f"model {result.model}" + (
            f", after {result.attempts} tries" if result.attempts > 1 else ""
        )
        self.plan_tokens = result.usage.total_tokens
        self.plan_cost = None if result.cost_usd is None else str(result.cost_usd)
        return result.plan

    def _elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    async def _finish(
        self, outcome: Outcome, code: int, *, message: str = "", report: DoReport | None = None
    ) -> None:
        await self._publish(
            DoFinished(
                run=self.id,
                outcome=outcome,
                exit_code=code,
                elapsed_s=self._elapsed(),
                message=message,
                report=report.model_dump(mode="json") if report is not None else None,
            ),
            "do.finish",
            self.id,
            result=outcome,
            exit_code=code,
            message=message,
        )

    async def _interrupted(self) -> None:
        """The caller went away: kill what runs, keep worktrees and branches, say so."""
        for agent_id in list(self.live):
            with contextlib.suppress(GodelError):
                await self.svc.agents.kill(agent_id, self.actor)
        kept = [o.worktree for o in self.outcomes.values() if o.worktree and not o.merged]
        message = "interrupted: its agents were killed; unmerged worktrees and branches are kept"
        if kept:
            message += f" ({len(kept)} worktree{'s' if len(kept) != 1 else ''})"
        self.on_event = None  # nobody to stream to any more
        await self._finish("interrupted", EXIT_INTERRUPTED, message=message)

    async def _deps_merged(self, t: DoTask) -> bool:
        missing = [d for d in t.depends_on if not self.outcomes[d].merged]
        if missing:
            rec = self.outcomes[t.name]
            rec.reason = f"not run: its dependency {', '.join(missing)} was not merged"
            await self._step("skipped", f"{t.name}: {rec.reason}", t.name, "skipped")
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
                await self._step("kept", f"{t.name}: {rec.reason}", t.name, "failed")
                return None
            rec.branch, rec.worktree = wt.branch, str(wt.path)
            await self._step(
                "worktree", f"{t.name}: worktree {wt.path} on {wt.branch}", t.name, "running"
            )
            ready = False
            try:
                ready = await self._in_worktree(t, wt, rec)
            finally:
                if not ready and not _cancelling():
                    await self._step(
                        "kept",
                        f"{t.name}: not merged: {rec.reason} (worktree kept: {wt.path})",
                        t.name,
                        "failed",
                    )
            return wt if ready else None

    async def _in_worktree(self, t: DoTask, wt: Worktree, rec: TaskOutcome) -> bool:
        runtime = t.runtime or self.req.runtime
        try:
            # The run's model goes to the tasks whose runtime uses one (a shell task of a
            # run on a model takes none); a task's own model is passed as it is.
            model = t.model or (self.req.model if self.svc.uses_model(runtime) else None)
            spec = AgentSpec(runtime=runtime, model=model, skills=t.skills, workdir=wt.path)
            agent = await self.svc.agents.spawn(spec, self.actor, keys=self.keys)
        except GodelError as e:
            self._refused(rec, "the agent did not start", e)
            return False
        rec.agent = agent.id
        self.live.add(agent.id)
        await self._step(
            "agent",
            f"{t.name}: agent {agent.id} ({spec.runtime}) started in its worktree",
            t.name,
            "running",
            agent_id=agent.id,
        )
        try:
            if not await self._exec(t, rec, t.input):
                return False
            await self._commit(wt, rec)
            if self.gate is None:
                return True
            if await self._gate(t, wt, rec):
                return True
            assert rec.gate is not None
            if rec.runtime in NO_FEEDBACK_RUNTIMES:
                rec.reason = (
                    f"the gate {rec.gate.summary()}; not retried: a {rec.runtime} agent "
                    "runs commands and cannot take the gate's output"
                )
                return False
            rec.retried = True
            await self._step(
                "retry", f"{t.name}: retrying once with the gate's output", t.name, "running"
            )
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
                await self.svc.agents.kill(agent.id, self.actor)
            self.live.discard(agent.id)

    async def _exec(self, t: DoTask, rec: TaskOutcome, text: str) -> bool:
        assert rec.agent is not None
        result: ExecResult | None = None
        while result is None:
            try:
                async for ev in self.svc.execs.exec(rec.agent, text, actor=self.actor):
                    if isinstance(ev, ExecResult):
                        result = ev
            except BudgetReserved as e:
                # The budget has room once running execs settle: wait for one, then retry.
                await self._step("exec", f"{t.name}: {e.message}", t.name, "running")
                await self.svc.budgets.settled()
                continue
            except GodelError as e:
                self._refused(rec, "the agent's exec was refused", e)
                return False
            if result is None:  # an exec stream always ends with its result
                rec.reason = "the agent's exec ended without a result"
                return False
        rec.execs.append(result.exec_id)
        rec.exec_status = result.status.value
        tokens = result.usage.total_tokens
        if tokens:
            rec.tokens = (rec.tokens or 0) + tokens
        if result.cost_usd is not None:
            rec.cost_usd = str(Decimal(rec.cost_usd or "0") + result.cost_usd)
        spent = f"; {tokens} tokens" if tokens else ""
        if result.cost_usd is not None:
            spent += f", ${result.cost_usd}"
        ok = rec.exec_status == "succeeded"
        await self._step(
            "exec",
            f"{t.name}: exec {result.exec_id} {rec.exec_status} (exit {result.exit_code}){spent}",
            t.name,
            "running",
            agent_id=rec.agent,
            exec_id=result.exec_id,
        )
        if ok:
            return True
        rec.budget_exhausted = BUDGET_EXHAUSTED in result.reason
        rec.reason = f"the agent's exec {rec.exec_status} (exit {result.exit_code})"
        if result.reason:
            rec.reason += f": {result.reason}"
        return False

    def _refused(self, rec: TaskOutcome, what: str, e: GodelError) -> None:
        rec.budget_exhausted = (
            e.data.get("kind") == "budget_exhausted" or BUDGET_EXHAUSTED in e.message
        )
        rec.reason = f"{what}: {e.message}"

    async def _commit(self, wt: Worktree, rec: TaskOutcome) -> None:
        head = await self.worktrees.commit_changes(
            wt, f"godel do: task {wt.task}\n\n{self.req.intent}"
        )
        if head is not None:
            rec.head = head
        change = await self.worktrees.change(wt)
        rec.files = change.files
        what = f"committed {head[:12]}" if head else "nothing new to commit"
        await self._step(
            "commit",
            f"{wt.task}: {what}; files: {', '.join(rec.files) or '(none)'}",
            wt.task,
            "gating" if self.gate is not None else "ready",
        )

    async def _gate(self, t: DoTask, wt: Worktree, rec: TaskOutcome) -> bool:
        assert self.gate is not None
        rec.gate = await run_gate(self.gate, wt.path)
        passed = rec.gate.passed
        await self._step(
            "gate",
            f"{t.name}: gate {rec.gate.summary()} in its worktree",
            t.name,
            "ready" if passed else "gating",
        )
        if not passed:
            rec.reason = f"the gate {rec.gate.summary()}"
        return passed

    # merging a level ----------------------------------------------------------------------

    async def _merge(self, ready: list[Worktree]) -> None:
        if not ready:
            return
        changes = [await self.worktrees.change(wt) for wt in ready]
        report = await merge_changes(self.worktrees, changes, self.req.strategy, self.gate)
        self.overlaps.extend(report.overlaps)
        for o in report.overlaps:
            await self._step("overlap", f"overlap: {o.describe()}")
        for m in report.tasks:
            rec = self.outcomes[m.task]
            rec.merged, rec.merge_commit, rec.reason = m.merged, m.merge_commit, m.reason
            rec.files = m.files or rec.files
            shown = f" at {m.merge_commit[:12]}" if m.merge_commit else ""
            await self._step(
                "merge",
                f"{m.task}: {'merged' if m.merged else 'not merged'}{shown}: {m.reason}",
                m.task,
                "merged" if m.merged else "failed",
            )
        for wt in ready:
            if await self.worktrees.finish(wt, self.outcomes[wt.task].merged):
                self.outcomes[wt.task].worktree = None


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
