"""The ``pi`` runtime: each agent is one ``pi --mode rpc`` process (the pi coding agent).

pi (npm ``@mariozechner/pi-coding-agent``, pinned in ``tools/pi/package.json`` and
installed by ``make setup``) runs its own agent loop and tools (bash, read, edit, write)
in the agent's workspace; Godel drives it over JSONL on stdin/stdout
(:mod:`core.runtimes.pi_protocol`) and points it at exactly one model:

* every agent has its own pi config dir, ``<home>/agents/<id>/pi``
  (``PI_CODING_AGENT_DIR``), holding a generated ``models.json`` with one provider,
  ``godel``, and a ``settings.json`` (no compaction, 2 quick retries). The API key is
  passed in the environment variable the model names, never written to disk;
* ``HOME`` is a scratch dir inside it, ``PI_OFFLINE=1``, no session files, and pi's
  skills, prompt templates, themes and (unless the ``allow_workspace_extensions``
  option is set) extensions are off, since a workspace may be untrusted: extensions
  are code pi would run. Context files (``AGENTS.md``) stay on;
* readiness is a ``get_state`` answer naming the model Godel asked for, so a
  misconfiguration fails the spawn instead of running with another model.

One prompt runs at a time. An exec ends when pi's run is over, which is not simply
``agent_end``: after a retryable error pi emits ``agent_end`` and then
``auto_retry_start``, and runs again. Bash tool output is also streamed as
``OutputChunk(stdout)`` so ``godel agent logs`` shows what commands printed.

Runtime options (``ctx.options``): ``pi_bin`` (path of the pi executable),
``allow_workspace_extensions`` (bool), ``pi_args`` (extra CLI arguments, list of
str), ``pi_settings`` (dict merged into ``settings.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

import psutil

import core
from core.errors import AgentUnavailable, InvalidInput, RuntimeFailure
from core.llm.catalog_types import ModelPrices, ResolvedModel
from core.llm.prices import cost
from core.models import (
    Agent,
    AgentSpec,
    AssistantText,
    ExecResult,
    ExecStatus,
    OutputChunk,
    RuntimeEvent,
    RuntimeNotice,
    ToolCallFinished,
    ToolCallStarted,
    TurnUsage,
    Usage,
)
from core.runtimes.base import (
    AgentHandle,
    Capability,
    HealthReport,
    HealthState,
    RuntimeContext,
)
from core.runtimes.pi_protocol import (
    DIALOG_METHODS,
    PROVIDER,
    AgentEnd,
    AgentStart,
    AssistantMessageEnd,
    ExtensionError,
    ExtensionUIRequest,
    LineSplitter,
    Malformed,
    OutputDiff,
    PiMessage,
    Response,
    RetryEnd,
    RetryStart,
    TextDelta,
    ToolEnd,
    ToolStart,
    ToolUpdate,
    UserMessage,
    encode_command,
    looks_retryable,
    models_json,
    parse_line,
    retry_enabled,
    settings_json,
)
from core.runtimes.process import (
    descendants,
    is_same_process,
    process_started_at,
    recover_process,
    terminate_group,
    terminate_processes,
    wait_process_exit,
)

log = logging.getLogger(__name__)

_STATE_KEY = "pi"
_READ_CHUNK = 256 * 1024
_STDERR_LINES = 40  # kept for error messages
_STDERR_LINE_CAP = 2000
_READY_TIMEOUT_S = 30.0  # cold start is ~1 s, but many spawns at once share 2 cores
_REQUEST_TIMEOUT_S = 5.0  # steer, health probe, settle probe
# After an agent_end with an error, how long to wait for auto_retry_start. pi writes it
# right after agent_end (same tick), so the wait only covers scheduling delays; errors
# pi retries get a longer allowance, since ending early would leave pi running.
_RETRY_GRACE_S = 3.0
_ERROR_GRACE_S = 0.5
_STOP_WAIT_S = 10.0  # how long an aborted or timed-out exec waits for pi to stop
_ABORT_WAIT_S = 10.0  # how long abort() waits for pi's answer
_SETTLE_S = 2.0  # how long pi may still report the finished run as streaming
_KILL_ABORT_S = 2.0
_KILL_EOF_S = 2.0
_KILL_GRACE_S = 2.0
_EXIT_DRAIN_S = 1.0  # reading what pi wrote before it exited
_TOOL_SCAN_S = 0.5  # how often tool processes are recorded while a tool runs
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class _Answer:
    """The response to the exec's prompt or abort command (None: pi is gone)."""

    what: Literal["prompt", "abort"]
    response: Response | None


@dataclass(frozen=True)
class _Exited:
    code: int


_Item = PiMessage | _Answer | _Exited


class _Run:
    """One prompt being run by pi."""

    def __init__(self, exec_id: str) -> None:
        self.exec_id = exec_id
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.accepted = asyncio.Event()  # pi answered the prompt command
        self.over = False  # pi's run is over (or the process exited): nothing to stop
        self.aborted = False
        self.timed_out = False
        self.abort_future: asyncio.Future[Response | None] | None = None

    async def next(self, wait_s: float | None) -> _Item:
        if not self.queue.empty():
            return self.queue.get_nowait()
        if wait_s is None:
            return await self.queue.get()
        return await asyncio.wait_for(self.queue.get(), max(0.0, wait_s))


class _PiAgent:
    """Live state of one agent: the pi process, its readers and the current run."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        started_at: float | None,
        model: ResolvedModel,
        retry: bool,
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.started_at = started_at
        self.model = model
        self.retry = retry
        self.run: _Run | None = None
        self.waiters: dict[str, tuple[str, asyncio.Future[Response | None]]] = {}
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self.exited = asyncio.Event()
        self.exit_code: int | None = None
        self.killing = False
        self.kill_task: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.pumps: list[asyncio.Task[None]] = []
        # Tool processes seen while tools ran: pi starts tool shells in their own process
        # groups, and they outlive pi if it dies, so they are found here, not in a tree.
        self.tools_seen: dict[int, psutil.Process] = {}
        self.tools_running = 0
        self.scan_task: asyncio.Task[None] | None = None
        self._seq = 0

    def start(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.pumps = [
            self.spawn_task(self._read_stdout(self.proc.stdout)),
            self.spawn_task(self._read_stderr(self.proc.stderr)),
        ]
        self.spawn_task(self._watch())

    def spawn_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)  # a reference, so the task is not garbage-collected
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pi agent %s: background task failed", self.pid, exc_info=task.exception())

    def stderr_tail(self, lines: int = 8) -> str:
        return "\n".join(list(self.stderr)[-lines:]).strip()

    # --- commands ---------------------------------------------------------------

    async def send(self, command: dict[str, Any]) -> bool:
        """Write one command; False if pi's stdin is gone (its exit is reported apart)."""
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing() or self.exit_code is not None:
            return False
        try:
            stdin.write(encode_command(command))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def register(self, command: dict[str, Any]) -> tuple[str, asyncio.Future[Response | None]]:
        """A fresh id for ``command`` and the future its response will resolve."""
        self._seq += 1
        rid = f"godel-{self._seq}"
        fut: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        self.waiters[rid] = (str(command["type"]), fut)
        return rid, fut

    async def send_registered(
        self, rid: str, fut: asyncio.Future[Response | None], command: dict[str, Any]
    ) -> None:
        if not await self.send({"id": rid, **command}):
            self.waiters.pop(rid, None)
            if not fut.done():
                fut.set_result(None)

    async def request(self, command: dict[str, Any]) -> asyncio.Future[Response | None]:
        """Send ``command`` with a fresh id; the future resolves with its response."""
        rid, fut = self.register(command)
        await self.send_registered(rid, fut, command)
        return fut

    async def ask(self, command: dict[str, Any], timeout: float) -> Response | None:
        """Send ``command`` and wait for its response; None on timeout or if pi is gone."""
        fut = await self.request(command)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None

    # --- readers ----------------------------------------------------------------

    async def _read_stdout(self, reader: asyncio.StreamReader) -> None:
        splitter = LineSplitter()
        try:
            while data := await reader.read(_READ_CHUNK):
                for line in splitter.feed(data):
                    self._on_line(line)
        except OSError:
            pass
        rest = splitter.flush()
        if rest is not None:
            self._on_line(rest)

    def _on_line(self, line: bytes) -> None:
        msg = parse_line(line)
        if msg is None:
            return
        if isinstance(msg, Response):
            self._on_response(msg)
        elif isinstance(msg, Malformed):
            log.warning(
                "pi agent %s wrote a malformed line (%s): %s", self.pid, msg.error, msg.text
            )
        elif isinstance(msg, ExtensionUIRequest):
            if msg.method in DIALOG_METHODS:
                # Nobody can answer a dialog; pi would wait for the answer (or its timeout).
                self.spawn_task(
                    self.send({"type": "extension_ui_response", "id": msg.id, "cancelled": True})
                )
        else:
            if isinstance(msg, ToolStart):
                self._tool_started()
            elif isinstance(msg, ToolEnd):
                self.tools_running = max(0, self.tools_running - 1)
            run = self.run
            if run is not None:
                run.queue.put_nowait(msg)

    def _on_response(self, resp: Response) -> None:
        key = resp.id if resp.id in self.waiters else None
        if key is None and resp.id is None:
            # pi drops the id when it could not read the command: match by command.
            key = next((k for k, (cmd, _) in self.waiters.items() if cmd == resp.command), None)
        if key is None:
            log.debug("pi agent %s: unexpected response %s", self.pid, resp)
            return
        _, fut = self.waiters.pop(key)
        if not fut.done():
            fut.set_result(resp)

    async def _read_stderr(self, reader: asyncio.StreamReader) -> None:
        splitter = LineSplitter()
        try:
            while data := await reader.read(_READ_CHUNK):
                for line in splitter.feed(data):
                    self._on_stderr(line)
        except OSError:
            pass
        rest = splitter.flush()
        if rest is not None:
            self._on_stderr(rest)

    def _on_stderr(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").rstrip()
        if text:
            log.debug("pi agent %s stderr: %s", self.pid, text)
            self.stderr.append(text[:_STDERR_LINE_CAP])

    async def _watch(self) -> None:
        code = await wait_process_exit(self.proc)
        # What pi wrote before it exited comes first (its last events, its error text).
        await asyncio.wait(self.pumps, timeout=_EXIT_DRAIN_S)
        self.exit_code = code
        self.exited.set()
        for _, fut in self.waiters.values():
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()
        if self.run is not None:
            self.run.queue.put_nowait(_Exited(code))
        if not self.killing:
            # pi died on its own: end the tool processes it left, nobody can reach them.
            await end_processes(list(self.tools_seen.values()))

    # --- tool processes ---------------------------------------------------------

    def _tool_started(self) -> None:
        self.tools_running += 1
        if self.scan_task is None or self.scan_task.done():
            self.scan_task = self.spawn_task(self._scan_tools())

    async def _scan_tools(self) -> None:
        while self.tools_running > 0 and self.exit_code is None:
            await self.record_tools()
            await asyncio.sleep(_TOOL_SCAN_S)

    async def record_tools(self) -> list[psutil.Process]:
        """Record pi's live descendants (its tool processes); return every one known."""
        found = await asyncio.to_thread(descendants, self.pid)
        for proc in found:
            self.tools_seen.setdefault(proc.pid, proc)
        for pid, proc in list(self.tools_seen.items()):
            if not _alive(proc):
                del self.tools_seen[pid]
        return list(self.tools_seen.values())


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def end_processes(procs: Iterable[psutil.Process], grace: float = _KILL_GRACE_S) -> None:
    """End ``procs`` and, for those leading a process group, the rest of their group.

    pi starts each tool shell detached (its own group); a command's children stay in
    that group even after their parents are gone.
    """
    alive = [p for p in procs if _alive(p)]
    if not alive:
        return
    leaders: list[tuple[int, float]] = []
    for p in alive:
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) == p.pid:
                leaders.append((p.pid, p.create_time()))
    results = await asyncio.gather(
        terminate_processes(alive, grace),
        *(terminate_group(pid, grace, started_at=t) for pid, t in leaders),
        return_exceptions=True,
    )
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, ValueError | OSError):
            log.warning("ending pi tool processes failed: %r", r)


def _state(handle: AgentHandle) -> _PiAgent:
    st = handle.state.get(_STATE_KEY)
    if not isinstance(st, _PiAgent):
        raise AgentUnavailable(
            f"agent {handle.agent_id} was not started by the pi runtime",
            agent_id=handle.agent_id,
        )
    return st


def bundled_pi_bin() -> Path:
    """Where ``make setup`` installs pi: ``<repo>/tools/pi/node_modules/.bin/pi``."""
    return (
        Path(core.__file__).resolve().parents[1] / "tools" / "pi" / "node_modules" / ".bin" / "pi"
    )


def pi_command(
    pi_bin: str,
    agent_dir: Path,
    model: ResolvedModel,
    extra_env: dict[str, str],
    *,
    allow_workspace_extensions: bool = False,
    extra_args: Sequence[str] = (),
) -> tuple[dict[str, str], list[str]]:
    """The environment and argv of one ``pi --mode rpc`` agent (also used by the bench)."""
    env = dict(os.environ)
    env.update(extra_env)
    env.update(
        {
            "PI_CODING_AGENT_DIR": str(agent_dir),
            "PI_OFFLINE": "1",
            "HOME": str(agent_dir / "home"),
            # Never empty: pi would then send the variable's name as the key.
            model.api_key_env: model.api_key or "no-key",
        }
    )
    args = [
        pi_bin,
        "--mode",
        "rpc",
        "--no-session",
        "--provider",
        PROVIDER,
        "--model",
        model.upstream_id,
        "--no-skills",
        "--no-prompt-templates",
        "--no-themes",
    ]
    if not allow_workspace_extensions:
        args.append("--no-extensions")
    args.extend(extra_args)
    return env, args


def write_config(agent_dir: Path, model: ResolvedModel, settings: dict[str, Any]) -> None:
    """Write the agent's pi config dir: ``models.json``, ``settings.json``, scratch HOME."""
    agent_dir.mkdir(parents=True, exist_ok=True)
    (agent_dir / "home").mkdir(exist_ok=True)
    for name, data in (("models.json", models_json(model)), ("settings.json", settings)):
        path = agent_dir / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


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
            {**spec.env, "GODEL_AGENT_ID": agent_id},
            allow_workspace_extensions=bool(
                self._ctx.options.get("allow_workspace_extensions", False)
            ),
            extra_args=self._extra_args,
        )
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
        st = _PiAgent(proc, process_started_at(proc.pid), model, retry_enabled(self._settings))
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

    async def _wait_ready(self, st: _PiAgent, agent_id: str) -> None:
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
        run = _Run(exec_id)
        st.run = run
        model = st.model
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = None if timeout is None else started + timeout
        usage = Usage()
        total_cost: Decimal | None = Decimal(0) if model.prices is not None else None
        final_text = ""
        stop_reason: str | None = None
        error: str | None = None
        retries = 0
        prompt_error: str | None = None
        exit_code: int | None = None
        end_grace: float | None = None  # an erroring agent_end: wait this long for a retry
        stop_deadline: float | None = None
        stuck = False
        released = False
        user_messages = 0
        diffs: dict[str, OutputDiff] = {}

        def on_prompt_answer(fut: asyncio.Future[Response | None]) -> None:
            resp = None if fut.cancelled() else fut.result()
            if resp is not None:
                run.accepted.set()
            run.queue.put_nowait(_Answer("prompt", resp))

        try:
            prompt = await st.request({"type": "prompt", "message": input})
            prompt.add_done_callback(on_prompt_answer)
            while not (run.over and (run.abort_future is None or run.abort_future.done())):
                now = loop.time()
                if run.abort_future is not None and stop_deadline is None:
                    stop_deadline = now + _STOP_WAIT_S  # abort() asked pi to stop
                limits = [t for t in (deadline, end_grace, stop_deadline) if t is not None]
                wait = min(limits) - now if limits else None
                try:
                    item = await run.next(wait)
                except TimeoutError:
                    now = loop.time()
                    if end_grace is not None and now >= end_grace:
                        run.over = True  # pi did not retry: the error is final
                        end_grace = None
                    elif stop_deadline is not None and now >= stop_deadline:
                        stuck = True
                        break
                    elif deadline is not None and now >= deadline:
                        deadline = None
                        if not run.aborted:
                            run.timed_out = True
                        stop_deadline = now + _STOP_WAIT_S
                        if run.accepted.is_set():
                            await self._send_abort(st, run)
                    continue

                if isinstance(item, _Answer):
                    if item.what == "prompt" and item.response is not None:
                        if not item.response.success:
                            prompt_error = item.response.error or "pi refused the prompt"
                            run.over = True
                        elif (run.timed_out or run.aborted) and run.abort_future is None:
                            # The stop was asked for before pi had taken the prompt.
                            await self._send_abort(st, run)
                    # A None answer means pi is gone: _Exited follows.
                elif isinstance(item, _Exited):
                    exit_code = item.code
                    break
                elif isinstance(item, TextDelta):
                    if item.text:
                        yield AssistantText(exec_id=exec_id, text=item.text)
                elif isinstance(item, UserMessage):
                    user_messages += 1
                    if user_messages > 1:  # the first one is the prompt itself
                        yield RuntimeNotice(
                            exec_id=exec_id, message=f"steer delivered: {item.text}"
                        )
                elif isinstance(item, AssistantMessageEnd):
                    final_text = item.text
                    stop_reason, error = item.stop_reason, item.error_message
                    usage = _add(usage, item.usage)
                    turn_cost = _reported_cost(item.cost_total, item.usage, model.prices)
                    if total_cost is not None and turn_cost is not None:
                        total_cost += turn_cost
                    if item.usage.total_tokens:
                        yield TurnUsage(
                            exec_id=exec_id, model=model.name, usage=item.usage, cost_usd=turn_cost
                        )
                elif isinstance(item, ToolStart):
                    if item.name == "bash":
                        diffs[item.call_id] = OutputDiff()
                    yield ToolCallStarted(
                        exec_id=exec_id, call_id=item.call_id, name=item.name, arguments=item.args
                    )
                elif isinstance(item, ToolUpdate):
                    diff = diffs.get(item.call_id)
                    piece = diff.update(item.text) if diff is not None else ""
                    if piece:
                        yield OutputChunk(exec_id=exec_id, stream="stdout", data=piece)
                elif isinstance(item, ToolEnd):
                    diff = diffs.pop(item.call_id, None)
                    piece = diff.final(item.output) if diff is not None else ""
                    if piece:
                        yield OutputChunk(exec_id=exec_id, stream="stdout", data=piece)
                    yield ToolCallFinished(
                        exec_id=exec_id,
                        call_id=item.call_id,
                        name=item.name,
                        output=item.output,
                        is_error=item.is_error,
                    )
                elif isinstance(item, AgentStart):
                    end_grace = None  # a retry (or a continuation) started
                    if run.abort_future is not None and run.abort_future.done():
                        # pi answered the abort before this run began: stop it too.
                        run.abort_future = None
                        await self._send_abort(st, run)
                elif isinstance(item, AgentEnd):
                    if item.stop_reason is not None:
                        stop_reason, error = item.stop_reason, item.error_message
                    if item.stop_reason != "error":
                        run.over = True
                    else:
                        retryable = st.retry and looks_retryable(item.error_message)
                        grace = _RETRY_GRACE_S if retryable else _ERROR_GRACE_S
                        end_grace = loop.time() + grace
                elif isinstance(item, RetryStart):
                    end_grace = None
                    retries = item.attempt
                    yield RuntimeNotice(
                        exec_id=exec_id,
                        message=(
                            f"model call failed ({item.error}); retry {item.attempt}"
                            f"/{item.max_attempts} in {item.delay_ms} ms"
                        ),
                    )
                elif isinstance(item, RetryEnd):
                    if item.success:
                        yield RuntimeNotice(
                            exec_id=exec_id, message=f"retry {item.attempt} succeeded"
                        )
                    else:
                        end_grace = None
                        stop_reason = "error"
                        error = item.final_error or error
                        retries = item.attempt
                        run.over = True
                elif isinstance(item, ExtensionError):
                    yield RuntimeNotice(
                        exec_id=exec_id, message=f"pi extension error: {item.message}"
                    )

            reasons: list[str] = []
            # kill() aborts a busy pi before ending it: that abort is not the user's.
            killed = st.killing and stop_reason == "aborted" and not (run.aborted or run.timed_out)
            if exit_code is None and not stuck and not st.killing:
                late = await self._settle(st)
                if late:
                    reasons.append(
                        f"{late} steer message(s) came after the last turn; "
                        "pi will deliver them with the next prompt"
                    )
            status: ExecStatus
            code: int | None
            if exit_code is not None or killed:
                status, code = ExecStatus.INTERRUPTED, None
                tail = st.stderr_tail()
                if st.killing:
                    reasons.insert(0, "agent was killed")
                else:
                    reasons.insert(
                        0,
                        f"pi exited with code {exit_code} during the exec"
                        + (f": {tail}" if tail else ""),
                    )
            elif run.timed_out:
                status, code = ExecStatus.TIMED_OUT, 124
                reasons.insert(0, f"timed out after {timeout:g}s")
            elif run.aborted or stop_reason == "aborted":
                status, code = ExecStatus.ABORTED, 130
                reasons.insert(0, "aborted")
            elif prompt_error is not None:
                status, code = ExecStatus.FAILED, 1
                reasons.insert(0, prompt_error)
            elif stop_reason == "error":
                status, code = ExecStatus.FAILED, 1
                why = error or "the model call failed"
                if retries:
                    why += f" (after {retries} retries)"
                reasons.insert(0, why)
            else:
                status, code = ExecStatus.SUCCEEDED, 0
                if stop_reason == "length":
                    reasons.insert(0, "the model stopped at its output token limit")
            if stuck:
                reasons.append("pi did not stop when asked; the agent stays busy until it does")
                st.spawn_task(self._reap(st, run))
            else:
                st.run = None
            released = True
            result = ExecResult(
                exec_id=exec_id,
                status=status,
                exit_code=code,
                output=final_text,
                usage=usage,
                cost_usd=total_cost,
                reason="; ".join(reasons),
                duration_s=loop.time() - started,
            )
            # Released before the last yield: a consumer may never resume us after it.
            yield result
        finally:
            if not released and st.run is run:
                if run.over:
                    st.run = None
                else:
                    # Abandoned mid-way (consumer gone or cancelled): stop pi's run so the
                    # agent is free again, in the background since we cannot wait here.
                    st.spawn_task(self._reap(st, run))

    async def _send_abort(self, st: _PiAgent, run: _Run) -> None:
        if run.abort_future is not None:
            return
        command = {"type": "abort"}
        # Registered before the write (which may wait): a concurrent caller sees it.
        rid, fut = st.register(command)
        run.abort_future = fut

        def answered(f: asyncio.Future[Response | None]) -> None:
            run.queue.put_nowait(_Answer("abort", None if f.cancelled() else f.result()))

        fut.add_done_callback(answered)
        await st.send_registered(rid, fut, command)

    async def _settle(self, st: _PiAgent) -> int:
        """Wait until pi reports the run over; return how many steers are still queued.

        pi clears its busy flag just after ``agent_end``; a prompt sent before that would
        be refused as "already processing".
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE_S
        while True:
            resp = await st.ask({"type": "get_state"}, _REQUEST_TIMEOUT_S)
            data = resp.data if resp is not None and isinstance(resp.data, dict) else None
            if data is None:
                return 0
            if not data.get("isStreaming") or loop.time() >= deadline:
                pending = data.get("pendingMessageCount")
                return pending if isinstance(pending, int) else 0
            await asyncio.sleep(0.02)

    async def _reap(self, st: _PiAgent, run: _Run) -> None:
        """Free the agent from an abandoned or stuck run once pi has stopped it."""
        try:
            if st.exit_code is None:
                if run.abort_future is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(run.accepted.wait(), _STOP_WAIT_S)
                    await self._send_abort(st, run)
                fut = run.abort_future
                if fut is not None:
                    # The abort's answer comes once pi is idle again; it may never come.
                    waits: list[asyncio.Future[Any]] = [
                        fut,
                        asyncio.ensure_future(st.exited.wait()),
                    ]
                    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for p in pending:
                        if p is not fut:
                            p.cancel()
                    if st.exit_code is None:
                        await self._settle(st)
        finally:
            if st.run is run:
                st.run = None

    async def steer(self, handle: AgentHandle, message: str) -> bool:
        st = _state(handle)
        run = st.run
        if run is None or run.over or st.exit_code is not None:
            return False
        resp = await st.ask({"type": "steer", "message": message}, _REQUEST_TIMEOUT_S)
        if resp is None or not resp.success:
            log.warning("pi agent %s refused a steer: %s", st.pid, resp)
            return False
        return True

    async def abort(self, handle: AgentHandle) -> bool:
        st = _state(handle)
        run = st.run
        if run is None or run.over or st.exit_code is not None:
            return False
        if not run.timed_out:
            run.aborted = True
        if run.abort_future is None:
            # An abort read before pi took the prompt would stop nothing.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.accepted.wait(), _ABORT_WAIT_S)
            if run.over:
                return True
            await self._send_abort(st, run)
        fut = run.abort_future
        if fut is not None:
            # pi answers once the run has stopped (after its agent_end).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), _ABORT_WAIT_S)
        return True

    async def kill(self, handle: AgentHandle) -> None:
        st = handle.state.get(_STATE_KEY)
        if not isinstance(st, _PiAgent):
            return
        if st.kill_task is None:
            st.killing = True
            st.kill_task = asyncio.create_task(self._kill(st))
        # Shielded: a cancelled caller must not leave the agent half-killed.
        await asyncio.shield(st.kill_task)

    async def _kill(self, st: _PiAgent) -> None:
        # Tool processes are found through pi's tree only while pi lives.
        tools = await st.record_tools() if st.exit_code is None else list(st.tools_seen.values())
        run = st.run
        if st.exit_code is None:
            if run is not None and not run.over and run.accepted.is_set():
                # abort stops the running tool (pi kills its process tree) and the model call.
                await self._send_abort(st, run)
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
        tasks = list(st.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()

    async def health(self, handle: AgentHandle) -> HealthReport:
        st = handle.state.get(_STATE_KEY)
        if not isinstance(st, _PiAgent):
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
        if status == psutil.STATUS_STOPPED:
            return HealthReport(state=HealthState.UNHEALTHY, detail="pi process is stopped")
        # pi answers commands while a prompt runs, and the answer carries our id, so the
        # probe cannot be mistaken for (or disturb) the exec's events.
        resp = await st.ask({"type": "get_state"}, _REQUEST_TIMEOUT_S)
        if resp is None:
            if st.exit_code is not None:
                return HealthReport(
                    state=HealthState.DEAD, detail=f"pi exited with code {st.exit_code}"
                )
            return HealthReport(
                state=HealthState.UNHEALTHY,
                detail=f"pi did not answer get_state within {_REQUEST_TIMEOUT_S:g}s",
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


def _reported_cost(
    reported: float | None, usage: Usage, prices: ModelPrices | None
) -> Decimal | None:
    """pi's own cost report, preferred; tokens x price only if pi reported none.

    pi computes cost in binary floats (0.00011999999999999999 for 0.00012); rounding to
    1e-12 dollars restores the decimal figure. Without prices pi reports 0, which would
    be a lie: the cost is unknown.
    """
    if prices is None:
        return None
    if reported is None:
        return cost(usage, prices)
    return Decimal(repr(reported)).quantize(Decimal("1e-12")).normalize()


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_read_tokens=a.cache_read_tokens + b.cache_read_tokens,
        cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
    )
