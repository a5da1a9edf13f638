"""The ``pi`` runtime: each agent is one ``pi --mode rpc`` process (the pi coding agent).

pi (npm ``@mariozechner/pi-coding-agent``, pinned in ``tools/pi/package.json`` and
installed by ``make setup``) runs its own agent loop and tools (bash, read, edit, write)
in the agent's workspace; Godel drives it over JSONL on stdin/stdout and points it at
exactly one model (see :mod:`.config` for the isolation). Readiness is a ``get_state``
answer naming the model Godel asked for, so a misconfiguration fails the spawn instead of
running with another model.

One prompt runs at a time. :meth:`PiRuntime.exec` is a thin async driver: it feeds what
pi writes and what happens to the process to the exec's :class:`.run_loop.RunLoop`, sends
the commands it asks for and yields the events it returns.

Runtime options (``ctx.options``): ``pi_bin`` (path of the pi executable),
``allow_workspace_extensions`` (bool), ``pi_args`` (extra CLI arguments, list of
str), ``pi_settings`` (dict merged into ``settings.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import psutil

from core.errors import AgentUnavailable, InvalidInput, RuntimeFailure
from core.llm.catalog_types import ResolvedModel
from core.models import Agent, AgentSpec, RuntimeEvent
from core.runtimes.base import (
    AgentHandle,
    Capability,
    HealthReport,
    HealthState,
    RuntimeContext,
)
from core.runtimes.pi.agent import (
    REQUEST_TIMEOUT_S,
    PiAgent,
    Run,
    Wake,
    end_processes,
)
from core.runtimes.pi.config import (
    PROVIDER,
    bundled_pi_bin,
    pi_command,
    retry_enabled,
    settings_json,
    write_config,
)
from core.runtimes.pi.protocol import Response
from core.runtimes.pi.run_loop import (
    AbortRequested,
    BudgetRefused,
    PromptAnswered,
    RunLoop,
    Tick,
    not_stopped,
)
from core.runtimes.process import (
    descendants,
    is_same_process,
    process_started_at,
    recover_process,
    terminate_group,
)

log = logging.getLogger(__name__)

_STATE_KEY = "pi"
_READY_TIMEOUT_S = 30.0  # cold start is ~1 s, but many spawns at once share 2 cores
_ABORT_WAIT_S = 10.0  # how long abort() waits for pi's answer
_KILL_ABORT_S = 2.0
_KILL_EOF_S = 2.0
_KILL_GRACE_S = 2.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _why_stuck(pid: int) -> str:
    """Why pi did not stop a run when asked (a stopped pi reads nothing, answers nothing)."""
    with contextlib.suppress(psutil.Error):
        if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
            return "the pi process is stopped (frozen)"
    return not_stopped()


def _state(handle: AgentHandle) -> PiAgent:
    st = handle.state.get(_STATE_KEY)
    if not isinstance(st, PiAgent):
        raise AgentUnavailable(
            f"agent {handle.agent_id} was not started by the pi runtime",
            agent_id=handle.agent_id,
        )
    return st


class PiRuntime:
    """Runs each agent as a ``pi --mode rpc`` process pointed at one model."""

    name: ClassVar[str] = "pi"
    description: ClassVar[str] = (
        "The pi coding agent (npm @mariozechner/pi-coding-agent, pinned) in RPC mode: "
        "its own agent loop and tools in the agent's workspace, against the agent's model"
    )
    # A pi start is ~1.3 CPU-seconds of Node module loading; more starts at once than
    # cores only adds contention (measured: 50 agents in 41 s at 8, 38 s at 3 on 2 cores).
    max_parallel_spawns: ClassVar[int] = (os.cpu_count() or 2) + 1
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.EXEC,
            Capability.STREAM,
            Capability.ABORT,
            Capability.KILL,
            Capability.HEALTH,
            Capability.TIMEOUT,
            Capability.PERSISTENT_PROCESS,
            Capability.STEER,
            Capability.COST,
            Capability.TOOLS,
            Capability.MODEL,
        }
    )

    def __init__(self, ctx: RuntimeContext) -> None:
        self._ctx = ctx
        extra = ctx.options.get("pi_args", [])
        self._extra_args = [str(a) for a in extra] if isinstance(extra, list | tuple) else []
        overrides = ctx.options.get("pi_settings")
        self._settings = settings_json(overrides if isinstance(overrides, dict) else None)

    def find_pi(self) -> str:
        """The pi executable: option ``pi_bin``, env ``GODEL_PI_BIN``, the bundled one, PATH."""
        configured = self._ctx.options.get("pi_bin") or os.environ.get("GODEL_PI_BIN")
        if configured:
            path = Path(str(configured)).expanduser()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
            raise RuntimeFailure(
                f"the pi executable {path} does not exist or is not executable; "
                "run `make setup` to install pi, or fix the pi_bin option / GODEL_PI_BIN",
                runtime=self.name,
                pi_bin=str(path),
            )
        bundled = bundled_pi_bin()
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
        on_path = shutil.which("pi")
        if on_path:
            return on_path
        raise RuntimeFailure(
            f"pi is not installed (looked for {bundled} and `pi` on PATH); run `make setup`",
            runtime=self.name,
        )

    async def spawn(
        self,
        agent_id: str,
        spec: AgentSpec,
        workspace: Path,
        *,
        model: ResolvedModel | None = None,
    ) -> AgentHandle:
        if model is None:
            raise InvalidInput(
                "the pi runtime needs --model (a model from `godel model list`, "
                "or defaults.model in the config)",
                runtime=self.name,
            )
        if not _ENV_NAME.fullmatch(model.api_key_env):
            # pi runs an apiKey starting with "!" as a shell command, and uses any other
            # value that is not a variable name as the key itself.
            raise InvalidInput(
                f"model {model.name}: api_key_env {model.api_key_env!r} is not an "
                "environment variable name",
                model=model.name,
            )
        if not await asyncio.to_thread(workspace.is_dir):
            raise RuntimeFailure(f"workspace {workspace} is not a directory", agent_id=agent_id)
        pi_bin = await asyncio.to_thread(self.find_pi)
        agent_dir = self._ctx.home / "agents" / agent_id / "pi"
        try:
            await asyncio.to_thread(write_config, agent_dir, model, self._settings)
        except OSError as e:
            raise RuntimeFailure(
                f"cannot write pi's config in {agent_dir}: {e}", agent_id=agent_id
            ) from e

        env, args = pi_command(
            pi_bin,
            agent_dir,
            model,
            agent_id,
            spec.env,
            passthrough=self._ctx.env_passthrough,
            allow_workspace_extensions=bool(
                self._ctx.options.get("allow_workspace_extensions", False)
            ),
            extra_args=self._extra_args,
        )
        args, env = self._ctx.containment.wrap(agent_id, args, env)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workspace,
                env=env,
                start_new_session=True,  # its own session and group: pgid == pid
            )
        except OSError as e:
            raise RuntimeFailure(
                f"cannot start pi ({pi_bin}): {e.strerror or e}; run `make setup`",
                agent_id=agent_id,
                pi_bin=pi_bin,
            ) from e
        st = PiAgent(proc, process_started_at(proc.pid), model, retry_enabled(self._settings))
        handle = AgentHandle(
            agent_id=agent_id,
            workspace=workspace,
            pid=proc.pid,
            pid_started_at=st.started_at,
            state={_STATE_KEY: st},
        )
        st.start()
        try:
            await self._wait_ready(st, agent_id)
        except BaseException:
            await self.kill(handle)
            raise
        return handle

    async def _wait_ready(self, st: PiAgent, agent_id: str) -> None:
        """pi prints nothing when it starts: its answer to ``get_state`` is readiness."""
        resp = await st.ask({"type": "get_state"}, _READY_TIMEOUT_S)
        want = f"{PROVIDER}/{st.model.upstream_id}"
        if resp is None:
            if st.exit_code is None:
                with contextlib.suppress(TimeoutError):
                    # The exit watcher may be about to report an exit.
                    await asyncio.wait_for(st.exited.wait(), 0.2)
            tail = st.stderr_tail()
            if st.exit_code is not None:
                problem = f"pi exited with code {st.exit_code} before it was ready"
            else:
                problem = f"pi did not answer get_state within {_READY_TIMEOUT_S:g}s"
            raise RuntimeFailure(
                problem + (f": {tail}" if tail else ""), agent_id=agent_id, model=want
            )
        if not resp.success:
            raise RuntimeFailure(
                f"pi refused get_state: {resp.error}", agent_id=agent_id, model=want
            )
        data = resp.data if isinstance(resp.data, dict) else {}
        got = data.get("model")
        got_provider = got.get("provider") if isinstance(got, dict) else None
        got_id = got.get("id") if isinstance(got, dict) else None
        if got_provider != PROVIDER or got_id != st.model.upstream_id:
            tail = st.stderr_tail()
            raise RuntimeFailure(
                f"pi selected model {got_provider}/{got_id} instead of {want}"
                + (f": {tail}" if tail else ""),
                agent_id=agent_id,
                model=want,
            )

    async def exec(
        self,
        handle: AgentHandle,
        input: str,
        *,
        exec_id: str,
        timeout: float | None,
    ) -> AsyncIterator[RuntimeEvent]:
        st = _state(handle)
        if st.exit_code is not None or st.killing:
            raise AgentUnavailable(
                f"agent {handle.agent_id} is not running", agent_id=handle.agent_id
            )
        if st.run is not None:
            raise AgentUnavailable(
                f"agent {handle.agent_id} is busy with exec {st.run.exec_id}",
                agent_id=handle.agent_id,
                exec_id=st.run.exec_id,
            )
        loop = asyncio.get_running_loop()
        machine = RunLoop(
            exec_id,
            model=st.model.name,
            prices=st.model.prices,
            retry=st.retry,
            started=loop.time(),
            timeout=timeout,
        )
        run = Run(machine)
        st.run = run
        released = False

        def on_prompt_answer(fut: asyncio.Future[Response | None]) -> None:
            resp = None if fut.cancelled() else fut.result()
            if resp is not None:
                run.accepted.set()
            run.queue.put_nowait(PromptAnswered(resp))

        try:
            prompt = await st.request({"type": "prompt", "message": input})
            prompt.add_done_callback(on_prompt_answer)
            while True:
                run.sync_abort(loop.time())
                if machine.finished:
                    break
                deadline = machine.next_deadline()
                try:
                    item = await run.next(None if deadline is None else deadline - loop.time())
                except TimeoutError:
                    item = Tick()
                if isinstance(item, Wake):
                    continue
                run.sync_abort(loop.time())
                step = machine.feed(item, loop.time())
                for command in step.commands:
                    if command["type"] == "abort":
                        await st.send_abort(run, fresh=True)
                    else:
                        await st.send(command)
                for event in step.events:
                    yield event
                if step.gate:
                    # pi will call the model again once this turn's tools ran: a budget
                    # exhausted meanwhile stops it at that turn's end (RunLoop).
                    refusal = await self._ctx.turn_gate(
                        handle.agent_id, exec_id, machine.usage, machine.cost
                    )
                    if refusal is not None:
                        machine.feed(BudgetRefused(refusal), loop.time())

            killing = st.killing
            late = await st.settle() if machine.should_settle(killing) else 0
            if machine.stuck:
                st.stuck = await asyncio.to_thread(_why_stuck, st.pid)
            result = machine.result(
                loop.time(),
                killing=killing,
                late_steers=late,
                stderr_tail=st.stderr_tail(),
                stuck_why=st.stuck,
            )
            if machine.stuck:
                st.spawn_task(st.reap(run))
            else:
                st.run = None
            released = True
            # Released before the last yield: a consumer may never resume us after it.
            yield result
        finally:
            if not released and st.run is run:
                if run.over:
                    st.run = None
                else:
                    # Abandoned mid-way (consumer gone or cancelled): stop pi's run so the
                    # agent is free again, in the background since we cannot wait here.
                    st.spawn_task(st.reap(run))

    async def steer(self, handle: AgentHandle, message: str) -> bool:
        st = _state(handle)
        run = st.run
        if run is None or run.over or st.exit_code is not None:
            return False
        resp = await st.ask({"type": "steer", "message": message}, REQUEST_TIMEOUT_S)
        if resp is None or not resp.success:
            log.warning("pi agent %s refused a steer: %s", st.pid, resp)
            return False
        return True

    async def abort(self, handle: AgentHandle) -> bool:
        st = _state(handle)
        run = st.run
        if run is None or run.over or st.exit_code is not None:
            return False
        # Fed at once: a prompt answer or a timeout read after this sees the user's abort.
        run.machine.feed(AbortRequested(), asyncio.get_running_loop().time())
        if run.abort_future is None:
            # An abort read before pi took the prompt would stop nothing.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.accepted.wait(), _ABORT_WAIT_S)
            if run.over:
                return True
            await st.send_abort(run)
        fut = run.abort_future
        if fut is not None:
            # pi answers once the run has stopped (after its agent_end).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), _ABORT_WAIT_S)
        return True

    async def kill(self, handle: AgentHandle) -> None:
        st = handle.state.get(_STATE_KEY)
        if not isinstance(st, PiAgent):
            return
        if st.kill_task is None:
            st.killing = True
            st.kill_task = asyncio.create_task(self._kill(st))
        # Shielded: a cancelled caller must not leave the agent half-killed.
        await asyncio.shield(st.kill_task)

    async def _kill(self, st: PiAgent) -> None:
        # Tool processes are found through pi's tree only while pi lives.
        tools = await st.record_tools() if st.exit_code is None else list(st.tools_seen.values())
        run = st.run
        if st.exit_code is None:
            if run is not None and not run.over and run.accepted.is_set():
                # abort stops the running tool (pi kills its process tree) and the model call.
                await st.send_abort(run)
                fut = run.abort_future
                if fut is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(fut), _KILL_ABORT_S)
                if st.exit_code is None:
                    tools = await st.record_tools()
            # An idle pi exits by itself at EOF on stdin.
            if st.proc.stdin is not None:
                st.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.exited.wait(), _KILL_EOF_S)
            # SIGTERM makes pi end the tool processes it tracks; SIGKILL follows.
            with contextlib.suppress(ValueError):
                await terminate_group(st.pid, _KILL_GRACE_S, started_at=st.started_at)
        await end_processes(tools)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.exited.wait(), 5.0)
        if st.proc.stdin is not None:
            st.proc.stdin.close()
        await st.tasks.settle(2.0)

    async def health(self, handle: AgentHandle) -> HealthReport:
        st = handle.state.get(_STATE_KEY)
        if not isinstance(st, PiAgent):
            return HealthReport(state=HealthState.DEAD, detail="no process")
        if st.exit_code is not None or st.proc.returncode is not None:
            code = st.exit_code if st.exit_code is not None else st.proc.returncode
            return HealthReport(state=HealthState.DEAD, detail=f"pi exited with code {code}")
        try:
            status = psutil.Process(st.pid).status()
        except psutil.NoSuchProcess:
            return HealthReport(state=HealthState.DEAD, detail="pi process is gone")
        if status == psutil.STATUS_ZOMBIE:
            return HealthReport(state=HealthState.DEAD, detail="pi process has exited")
        if st.stuck is not None:
            # The same reason the stuck exec gave: the engine marks the agent with it.
            return HealthReport(state=HealthState.UNHEALTHY, detail=st.stuck)
        if status == psutil.STATUS_STOPPED:
            return HealthReport(state=HealthState.UNHEALTHY, detail="pi process is stopped")
        # pi answers commands while a prompt runs, and the answer carries our id, so the
        # probe cannot be mistaken for (or disturb) the exec's events.
        resp = await st.ask({"type": "get_state"}, REQUEST_TIMEOUT_S)
        if resp is None:
            if st.exit_code is not None:
                return HealthReport(
                    state=HealthState.DEAD, detail=f"pi exited with code {st.exit_code}"
                )
            return HealthReport(
                state=HealthState.UNHEALTHY,
                detail=f"pi did not answer get_state within {REQUEST_TIMEOUT_S:g}s",
            )
        if not resp.success:
            return HealthReport(
                state=HealthState.UNHEALTHY, detail=f"get_state failed: {resp.error}"
            )
        run = st.run
        if run is not None:
            return HealthReport(state=HealthState.HEALTHY, detail=f"running exec {run.exec_id}")
        return HealthReport(state=HealthState.HEALTHY, detail="idle")

    async def wait_exit(self, handle: AgentHandle) -> int:
        st = _state(handle)
        await st.exited.wait()
        assert st.exit_code is not None
        return st.exit_code

    async def recover(self, agent: Agent) -> str:
        tools: list[psutil.Process] = []
        if agent.pid is not None and is_same_process(agent.pid, agent.pid_started_at):
            # pi's tool shells run in their own process groups: find them before pi dies.
            tools = await asyncio.to_thread(descendants, agent.pid)
        reason = await recover_process(agent)
        await end_processes(tools)
        return reason
