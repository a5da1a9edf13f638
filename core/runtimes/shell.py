"""The built-in ``shell`` runtime: each agent is one persistent bash process.

At spawn, bash (``--noprofile --norc -s``, its own session and process group) gets a
small function, ``__godel_run NONCE B64``, on its stdin. Each exec sends one such call:
the command travels base64-encoded (no quoting problems), runs in a subshell in the
workspace with stdin from /dev/null (it must never read our control pipe), and when
bash's ``wait`` returns the function prints ``\\x1eGODEL:<nonce>:end:<rc>`` on stdout
and on stderr. The nonce is fresh per exec, so output cannot fake the end of an exec,
and seeing the marker on both streams means both streams are complete.

Because every exec runs in a subshell, nothing (``cd``, variables) carries over from one
exec to the next; the bash process is the agent's stable process group, which ``kill``
ends as a whole.

The protocol's bytes are in ``shell_protocol``, the live bash process and its pipe
readers in ``shell_agent``; this module is the runtime that drives them.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import psutil

from core.errors import AgentUnavailable, InvalidInput, RuntimeFailure
from core.llm.catalog_types import ResolvedModel
from core.models import (
    Agent,
    AgentSpec,
    ExecResult,
    ExecStatus,
    OutputChunk,
    RuntimeEvent,
)
from core.runtimes.base import (
    AgentHandle,
    Capability,
    HealthReport,
    HealthState,
    RuntimeContext,
)
from core.runtimes.environment import agent_environment
from core.runtimes.process import (
    process_started_at,
    recover_process,
    terminate_descendants,
    terminate_group,
)
from core.runtimes.shell_agent import STOP_GRACE_S, STREAMS, Run, ShellAgent, Stream
from core.runtimes.shell_protocol import command_line, setup_script

_STATE_KEY = "shell"
_OUTPUT_CAP = 1024 * 1024  # characters of stdout kept in ExecResult.output
_READY_TIMEOUT_S = 10.0
_STOP_WAIT_S = 10.0  # how long the end markers may take once the command was killed
_KILL_GRACE_S = 3.0


class _TextTail:
    """Keeps the last ``cap`` characters of a growing text."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        self.total += len(text)
        if self._size > 2 * self.cap:
            kept = "".join(self._parts)[-self.cap :]
            self._parts, self._size = [kept], len(kept)

    def text(self) -> str:
        return "".join(self._parts)[-self.cap :]


def _why_stuck(pid: int) -> str:
    """Why a killed command's end markers did not come from bash ``pid``."""
    with contextlib.suppress(psutil.Error):
        if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
            # A stopped bash cannot report the end of its command (nor run anything).
            return "the shell process is stopped (frozen)"
    return "it did not end after being killed"


def _state(handle: AgentHandle) -> ShellAgent:
    st = handle.state.get(_STATE_KEY)
    if not isinstance(st, ShellAgent):
        raise AgentUnavailable(
            f"agent {handle.agent_id} was not started by the shell runtime",
            agent_id=handle.agent_id,
        )
    return st


class ShellRuntime:
    """Runs each agent as a persistent bash; every exec is a bash script."""

    name: ClassVar[str] = "shell"
    description: ClassVar[str] = (
        "A persistent bash process per agent; each exec runs as a bash script "
        "in a subshell in the agent's workspace"
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.EXEC,
            Capability.STREAM,
            Capability.ABORT,
            Capability.KILL,
            Capability.HEALTH,
            Capability.TIMEOUT,
            Capability.PERSISTENT_PROCESS,
        }
    )

    def __init__(self, ctx: RuntimeContext) -> None:
        self._ctx = ctx
        self._shell = str(ctx.options.get("shell", "/bin/bash"))

    async def spawn(
        self,
        agent_id: str,
        spec: AgentSpec,
        workspace: Path,
        *,
        model: ResolvedModel | None = None,
    ) -> AgentHandle:
        if not await asyncio.to_thread(workspace.is_dir):
            raise RuntimeFailure(f"workspace {workspace} is not a directory", agent_id=agent_id)
        # Scrubbed: no API key or other secret of the daemon's (BASH_ENV, which bash
        # would source despite --norc, is not on the allow-list either).
        env = agent_environment(agent_id, spec.env, passthrough=self._ctx.env_passthrough)
        argv, env = self._ctx.containment.wrap(
            agent_id, [self._shell, "--noprofile", "--norc", "-s"], env
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workspace,
                env=env,
                start_new_session=True,  # its own session and group: pgid == pid
            )
        except OSError as e:
            raise RuntimeFailure(
                f"cannot start {self._shell}: {e.strerror or e}",
                agent_id=agent_id,
                shell=self._shell,
            ) from e
        st = ShellAgent(proc, process_started_at(proc.pid))
        handle = AgentHandle(
            agent_id=agent_id,
            workspace=workspace,
            pid=proc.pid,
            pid_started_at=st.started_at,
            state={_STATE_KEY: st},
        )
        st.start()
        try:
            await self._handshake(st, workspace, agent_id)
        except BaseException:
            await self.kill(handle)
            raise
        return handle

    async def _handshake(self, st: ShellAgent, workspace: Path, agent_id: str) -> None:
        """Install ``__godel_run`` and run a probe through it, proving the whole path works."""
        run = st.begin("spawn")
        out = bytearray()
        err = bytearray()
        script = setup_script(workspace)
        script += command_line(run.nonce, "printf ready")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READY_TIMEOUT_S
        try:
            await st.send(script)
            while len(run.ended) < len(STREAMS) or not run.queue.empty():
                try:
                    ev = await run.next_event(deadline - loop.time())
                except TimeoutError:
                    raise RuntimeFailure(
                        f"{self._shell} did not answer within {_READY_TIMEOUT_S:g}s",
                        agent_id=agent_id,
                    ) from None
                if ev.kind == "data":
                    buf = out if ev.stream == "stdout" else err
                    buf += ev.data[: 4096 - len(buf)]
                elif ev.kind == "exit":
                    detail = err.decode(errors="replace").strip()
                    raise RuntimeFailure(
                        f"{self._shell} exited with code {ev.code} before it was ready"
                        + (f": {detail}" if detail else ""),
                        agent_id=agent_id,
                    )
            rc = run.ended["stdout"]
            if rc != 0 or bytes(out) != b"ready":
                detail = err.decode(errors="replace").strip() or out.decode(errors="replace")
                raise RuntimeFailure(
                    f"{self._shell} failed its readiness probe (exit code {rc}): {detail}",
                    agent_id=agent_id,
                )
        finally:
            st.run = None

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
        run = st.begin(exec_id)
        loop = asyncio.get_running_loop()
        started = loop.time()
        decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in STREAMS}
        kept = _TextTail(_OUTPUT_CAP)
        consumed_ends: set[Stream] = set()
        agent_exit: int | None = None
        stuck = False
        released = False

        def chunk(stream: Stream, text: str) -> OutputChunk:
            if stream == "stdout":
                kept.add(text)
            return OutputChunk(exec_id=exec_id, stream=stream, data=text)

        try:
            # A failed write means bash is gone; its exit event ends the loop below.
            await st.send(command_line(run.nonce, input))
            deadline = None if timeout is None else started + timeout
            while len(consumed_ends) < len(STREAMS):
                stop_first = run.stop_deadline is not None and (
                    deadline is None or run.stop_deadline <= deadline
                )
                limit = run.stop_deadline if stop_first else deadline
                try:
                    ev = await run.next_event(None if limit is None else limit - loop.time())
                except TimeoutError:
                    if stop_first:
                        stuck = True
                        break
                    deadline = None
                    if not run.aborted:
                        run.timed_out = True
                    self._begin_stop(st, run)
                    continue
                if ev.kind == "data" and ev.stream is not None:
                    text = decoders[ev.stream].decode(ev.data)
                    if text:
                        yield chunk(ev.stream, text)
                elif ev.kind == "end" and ev.stream is not None:
                    consumed_ends.add(ev.stream)
                    text = decoders[ev.stream].decode(b"", final=True)
                    if text:
                        yield chunk(ev.stream, text)
                elif ev.kind == "exit":
                    agent_exit = ev.code
                    break
                # "eof" needs nothing: bash's exit event follows.
            while agent_exit is not None and not run.queue.empty():
                ev = run.queue.get_nowait()  # output that was already read
                if ev.kind == "data" and ev.stream is not None:
                    text = decoders[ev.stream].decode(ev.data)
                    if text:
                        yield chunk(ev.stream, text)
            for stream in STREAMS:
                if stream not in consumed_ends:
                    text = decoders[stream].decode(b"", final=True)
                    if text:
                        yield chunk(stream, text)

            reasons: list[str] = []
            status: ExecStatus
            exit_code: int | None
            if agent_exit is not None:
                status, exit_code = ExecStatus.INTERRUPTED, None
                if st.killing:
                    reasons.append(f"agent was killed (its process exited with code {agent_exit})")
                else:
                    reasons.append(f"agent process exited with code {agent_exit} during the exec")
            elif run.timed_out:
                status, exit_code = ExecStatus.TIMED_OUT, 124
                reasons.append(f"timed out after {timeout:g}s")
            elif run.aborted:
                status, exit_code = ExecStatus.ABORTED, 130
                reasons.append("aborted")
            else:
                exit_code = run.ended["stdout"]
                status = ExecStatus.SUCCEEDED if exit_code == 0 else ExecStatus.FAILED
            if stuck:
                st.stuck = _why_stuck(st.pid)
                reasons.append(f"its command could not be ended: {st.stuck}")
                st.spawn_task(self._reap(st, run))
            else:
                st.run = None
            released = True
            if kept.total > kept.cap:
                reasons.append(f"output keeps the last {kept.cap} of {kept.total} characters")
            result = ExecResult(
                exec_id=exec_id,
                status=status,
                exit_code=exit_code,
                output=kept.text(),
                reason="; ".join(reasons),
                duration_s=loop.time() - started,
            )
            # Released before the last yield: a consumer may never resume us after it.
            yield result
        finally:
            if not released and st.run is run:
                if run.finished.is_set():
                    st.run = None
                else:
                    # Abandoned mid-way (consumer gone or cancelled): stop the command so
                    # the agent is free again, in the background since we cannot wait here.
                    st.spawn_task(self._reap(st, run))

    def _begin_stop(self, st: ShellAgent, run: Run) -> None:
        if run.stop_deadline is None:
            loop = asyncio.get_running_loop()
            run.stop_deadline = loop.time() + STOP_GRACE_S + _STOP_WAIT_S
            st.spawn_task(self._stop_command(st, run))

    async def _stop_command(self, st: ShellAgent, run: Run) -> None:
        """Kill the running command's process tree (bash's descendants) until it ends.

        Repeated, because right after the command was sent bash may not have forked yet.
        """
        for _ in range(40):
            if run.finished.is_set() or st.proc.returncode is not None:
                return
            await terminate_descendants(st.pid, STOP_GRACE_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.finished.wait(), 0.25)
                return

    async def _reap(self, st: ShellAgent, run: Run) -> None:
        run.abandon()  # nobody reads its output now: its readers must not wait for room
        await self._stop_command(st, run)
        await run.finished.wait()
        if st.run is run:
            st.run = None
            st.stuck = None

    async def steer(self, handle: AgentHandle, message: str) -> bool:
        raise InvalidInput(
            "the shell runtime cannot steer a running command (it has no model to tell)",
            runtime=self.name,
        )

    async def abort(self, handle: AgentHandle) -> bool:
        st = _state(handle)
        run = st.run
        if run is None or run.finished.is_set():
            return False
        if not run.timed_out:
            run.aborted = True
        self._begin_stop(st, run)
        await self._stop_command(st, run)
        return True

    async def kill(self, handle: AgentHandle) -> None:
        st = handle.state.get(_STATE_KEY)
        if not isinstance(st, ShellAgent):
            return
        if st.kill_task is None:
            st.killing = True
            st.kill_task = asyncio.create_task(self._kill(st))
        # Shielded: a cancelled caller must not leave the agent half-killed.
        await asyncio.shield(st.kill_task)

    async def _kill(self, st: ShellAgent) -> None:
        # An idle bash has no children (each exec's subshell ends with the exec, what it
        # left behind was re-parented away and is in the group), so only a running exec
        # needs its tree looked up.
        with contextlib.suppress(ValueError):
            await terminate_group(
                st.pid, _KILL_GRACE_S, started_at=st.started_at, tree=st.run is not None
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.exited.wait(), 5.0)
        if st.proc.stdin is not None:
            st.proc.stdin.close()
        # The pipes reach EOF once every holder is dead; a process that left the group
        # (setsid) could hold them open, so do not wait for ever.
        await st.tasks.settle(2.0)

    async def health(self, handle: AgentHandle) -> HealthReport:
        st = handle.state.get(_STATE_KEY)
        if not isinstance(st, ShellAgent):
            return HealthReport(state=HealthState.DEAD, detail="no process")
        code = st.proc.returncode
        if code is not None:
            return HealthReport(state=HealthState.DEAD, detail=f"shell exited with code {code}")
        # Liveness only: writing to the shell could interfere with a running exec.
        try:
            status = psutil.Process(st.pid).status()
        except psutil.NoSuchProcess:
            return HealthReport(state=HealthState.DEAD, detail="shell process is gone")
        if status == psutil.STATUS_ZOMBIE:
            return HealthReport(state=HealthState.DEAD, detail="shell process has exited")
        if st.stuck is not None:
            return HealthReport(state=HealthState.UNHEALTHY, detail=st.stuck)
        if status == psutil.STATUS_STOPPED:
            return HealthReport(state=HealthState.UNHEALTHY, detail="shell process is stopped")
        if st.run is not None:
            return HealthReport(state=HealthState.HEALTHY, detail=f"running exec {st.run.exec_id}")
        return HealthReport(state=HealthState.HEALTHY, detail="idle")

    async def wait_exit(self, handle: AgentHandle) -> int:
        st = _state(handle)
        await st.exited.wait()
        assert st.exit_code is not None
        return st.exit_code

    async def recover(self, agent: Agent) -> str:
        return await recover_process(agent)
