"""Keeping every process an agent starts within reach, so a kill or a daemon stop ends them.

A process group and a walk of the process tree (``core.runtimes.process``) miss what
left both: ``setsid`` plus a double fork re-parents a process to init, out of the tree and
the group. So each agent's processes are also put in a *box* when they start, and the
box is emptied when the agent ends (killed, exited on its own, stopped with the daemon,
or found lost at the next start). Three kinds, the first the machine allows:

- **cgroup v2**: a cgroup per agent under the daemon's own cgroup; ``cgroup.kill`` (or a
  freeze, then SIGKILL) ends every member at once, so a fork race cannot win.
- **cgroup v1 freezer**: the same with the v1 freezer hierarchy: freeze, SIGKILL, thaw.
- **environment scan**: without a writable cgroup, every process of ours whose
  environment carries the agent's ``GODEL_BOX`` tag. It cannot see a process that
  cleared or rewrote its environment (``env -i``, ``sudo``), and a process may fork
  while the scan runs (the scan is repeated until it finds nothing, a few times).

No kind catches work handed to another service (``systemd-run``, ``at``, a container
engine, ssh): those run outside the agent's process tree by design.

A process joins its box with a tiny ``sh`` wrapper that writes its own pid to the box's
``cgroup.procs`` and then ``exec``s the real program: the pid, and so the runtime's view
of the process, is unchanged, and nothing can fork before it is in the box.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import psutil

from core.errors import ConfigError
from core.runtimes.proc_tree import Held, hold
from core.runtimes.process import end_processes

log = logging.getLogger(__name__)

ContainmentMode = Literal["auto", "cgroup", "scan"]

# The variable that tags an agent's processes (every kind sets it; the scan reads it).
BOX_VAR = "GODEL_BOX"

# The box is made again if it is gone (another home's daemon prunes empty boxes it
# finds no process in: see _prune_empty), then the process joins it and becomes argv.
# Joining is retried (the box made again each time) until it holds: once a process is
# in a cgroup, the cgroup can no longer be removed under it.
_WRAPPER = (
    'i=0; until echo $$ > "$1" 2>/dev/null; do'
    ' i=$((i+1)); if [ $i -gt 50 ]; then echo "cannot join $1" >&2; exit 126; fi;'
    ' mkdir -p "${1%/*}" 2>/dev/null; done; shift; exec "$@"'
)
# A box younger than this is never pruned: it may be about to get its first process.
_PRUNE_AFTER_S = 60.0
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_BACKOFF_START_S = 0.005
_BACKOFF_MAX_S = 0.1
_KILL_WAIT_S = 2.0
_SCAN_ROUNDS = 5


class ContainmentError(ConfigError):
    """``[daemon] containment = "cgroup"`` on a machine where no cgroup can be used."""


class Containment(Protocol):
    """Where an agent's processes are kept, and how they are all ended."""

    @property
    def kind(self) -> str:
        """ "cgroup v2", "cgroup v1 freezer" or "environment scan"."""
        ...

    @property
    def where(self) -> str:
        """The cgroup directory holding the boxes; "" for the scan."""
        ...

    def wrap(
        self, agent_id: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that start ``argv`` inside the agent's box."""
        ...

    async def end(self, agent_id: str, grace: float = 1.0) -> int:
        """End every process still in the agent's box (SIGTERM, SIGKILL after ``grace``
        seconds) and remove the box; return how many processes were found."""
        ...

    async def sweep(self) -> int:
        """End what a previous daemon of this home left in any box; return the count."""
        ...

    async def close(self) -> None:
        """Remove what this daemon created (boxes must already be ended)."""
        ...


def home_tag(home: Path) -> str:
    """A short stable name for one ``GODEL_HOME``: two daemons never share boxes."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10]


def _box_name(agent_id: str) -> str:
    if _SAFE_ID.match(agent_id) and agent_id not in (".", ".."):
        return agent_id
    return "x" + hashlib.sha256(agent_id.encode()).hexdigest()[:16]


def _tagged_env(tag: str, agent_id: str, env: Mapping[str, str]) -> dict[str, str]:
    out = dict(env)
    out[BOX_VAR] = f"{tag}.{agent_id}"
    return out


# cgroups ----------------------------------------------------------------------------------


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path in the v2 hierarchy (None) or v1 ``controller``'s."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controller is None and parts[0] == "0" and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return None


def _mount_point(fstype: str, option: str | None) -> Path | None:
    """Where a cgroup hierarchy is mounted, from ``/proc/self/mountinfo``."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if len(fields) < 5 or len(post_fields) < 3 or post_fields[0] != fstype:
            continue
        if option is None or option in post_fields[2].split(","):
            # Mount points escape spaces as \040.
            return Path(fields[4].replace("\\040", " "))
    return None


@dataclass
class _CgroupBase:
    root: Path  # <hierarchy>/<our own cgroup>/godel-<uid>-<home tag>
    tag: str

    kind = "cgroup"

    @property
    def where(self) -> str:
        return str(self.root)

    def _box(self, agent_id: str) -> Path:
        return self.root / _box_name(agent_id)

    def wrap(
        self, agent_id: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        box = self._box(agent_id)
        # parents: a box dir that vanished (another tool removed it) is made again.
        box.mkdir(parents=True, exist_ok=True)
        cmd = ["/bin/sh", "-c", _WRAPPER, "godel-box", str(box / "cgroup.procs"), *argv]
        return cmd, _tagged_env(self.tag, agent_id, env)

    # What differs between v1 and v2: how a box is emptied at once.
    def _kill_all(self, box: Path) -> None:
        raise NotImplementedError

    def _empty(self, box: Path) -> bool:
        return not _read_pids(box / "cgroup.procs")

    async def _wait_empty(self, box: Path, limit_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        delay = _BACKOFF_START_S
        while not self._empty(box):
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, _BACKOFF_MAX_S)
        return True

    async def _end_box(self, box: Path, grace: float) -> int:
        pids = _read_pids(box / "cgroup.procs")
        if pids:
            for pid in pids:
                held = _hold_member(pid, box)
                if held is not None:
                    held.signal(signal.SIGTERM)
                    held.close()
            if not await self._wait_empty(box, grace):
                await asyncio.to_thread(self._kill_all, box)
                if not await self._wait_empty(box, _KILL_WAIT_S):
                    log.warning("processes %s in %s did not end", _read_pids(box), box)
        await asyncio.to_thread(_remove, box)
        return len(pids)

    async def end(self, agent_id: str, grace: float = 1.0) -> int:
        return await self._end_box(self._box(agent_id), grace)

    async def sweep(self) -> int:
        boxes = await asyncio.to_thread(_boxes, self.root)
        counts = await asyncio.gather(*(self._end_box(b, 0.5) for b in boxes))
        # Homes that are gone (a test's, a deleted one) leave their daemons' empty
        # cgroups behind when those daemons were killed: remove the empty ones.
        await asyncio.to_thread(_prune_empty, self.root)
        return sum(counts)

    async def close(self) -> None:
        await self.sweep()
        await asyncio.to_thread(_remove, self.root)


def _prune_empty(root: Path) -> int:
    """Remove the other ``godel-UID-*`` roots' boxes that hold no process, and the roots
    left empty; return how many directories went. A cgroup with a process in it, or
    with children, cannot be removed (EBUSY), so a live daemon's busy boxes stay; an
    idle box removed here is made again by the wrapper when it next starts a process."""
    removed = 0
    prefix = root.name.rsplit("-", 1)[0] + "-"  # godel-UID-
    try:
        siblings = [p for p in root.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return 0
    now = time.time()
    for other in siblings:
        if other == root or not other.is_dir():
            continue
        for box in _boxes(other):
            try:
                if now - box.stat().st_mtime < _PRUNE_AFTER_S:
                    continue
                box.rmdir()
                removed += 1
            except OSError:
                pass
        try:
            if now - other.stat().st_mtime >= _PRUNE_AFTER_S:
                other.rmdir()
                removed += 1
        except OSError:
            pass
    return removed


def _boxes(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []


def _remove(box: Path) -> None:
    try:
        box.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:  # still populated: left for the next sweep
        log.warning("cannot remove %s: %s", box, e)


def _hold_member(pid: int, box: Path) -> Held | None:
    """Hold ``pid`` if it still is in ``box`` (a pid read from the box may have been reused).

    Checked after the pidfd is open: from then on the pidfd means this one process."""
    held = hold(pid)
    if held is None:
        return None
    if pid in _read_pids(box / "cgroup.procs"):
        return held
    held.close()
    return None


class CgroupV2(_CgroupBase):
    kind = "cgroup v2"

    def _kill_all(self, box: Path) -> None:
        kill = box / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
            return
        # Before Linux 5.14: freeze (no member can fork), kill each, thaw (SIGKILL is
        # delivered to a frozen task once it thaws).
        (box / "cgroup.freeze").write_text("1")
        try:
            for pid in _read_pids(box / "cgroup.procs"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            (box / "cgroup.freeze").write_text("0")

    def _empty(self, box: Path) -> bool:
        try:
            return "populated 0" in (box / "cgroup.events").read_text()
        except OSError:
            return True


class CgroupV1Freezer(_CgroupBase):
    kind = "cgroup v1 freezer"

    def _kill_all(self, box: Path) -> None:
        state = box / "freezer.state"
        state.write_text("FROZEN")
        try:
            for _ in range(200):  # FREEZING until every member stopped
                if state.read_text().strip() == "FROZEN":
                    break
            for pid in _read_pids(box / "cgroup.procs"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            state.write_text("THAWED")


# the environment scan -------------------------------------------------------------------------


def _scan_tagged(prefix: bytes) -> dict[str, list[tuple[int, float]]]:
    """Every process of ours tagged ``GODEL_BOX=<prefix>...``: box name -> (pid, start)."""
    uid, me = os.getuid(), os.getpid()
    found: dict[str, list[tuple[int, float]]] = {}
    needle = BOX_VAR.encode() + b"=" + prefix
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            if os.stat(f"/proc/{name}").st_uid != uid and uid != 0:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        for var in environ.split(b"\0"):
            if var.startswith(needle):
                box = var[len(BOX_VAR) + 1 :].decode(errors="replace")
                try:
                    start = psutil.Process(pid).create_time()
                except psutil.Error:
                    break
                found.setdefault(box, []).append((pid, start))
                break
    return found


class EnvironmentScan:
    """Finds an agent's processes by the ``GODEL_BOX`` tag in their environment."""

    kind = "environment scan"
    where = ""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._scan: asyncio.Task[dict[str, list[tuple[int, float]]]] | None = None
        self._waiting = 0

    def wrap(
        self, agent_id: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        return list(argv), _tagged_env(self.tag, agent_id, env)

    async def _table(self) -> dict[str, list[tuple[int, float]]]:
        # One walk of /proc serves every caller that asked before it started (a daemon
        # stop ends hundreds of agents at once).
        if self._scan is None or self._scan.done():
            self._scan = asyncio.ensure_future(
                asyncio.to_thread(_scan_tagged, f"{self.tag}.".encode())
            )
        return await asyncio.shield(self._scan)

    async def _end_boxes(self, boxes: set[str] | None, grace: float) -> int:
        total = 0
        for _ in range(_SCAN_ROUNDS):
            table = await self._table()
            procs = [
                p for box, found in table.items() if boxes is None or box in boxes for p in found
            ]
            held: list[Held] = []
            for pid, start in procs:
                try:
                    ps = psutil.Process(pid)
                except psutil.Error:
                    continue
                if abs(ps.create_time() - start) < 0.01:
                    h = hold(pid, same_as=ps)
                    if h is not None:
                        held.append(h)
            if not held:
                break
            total += len(held)
            await end_processes(held, grace)
        return total

    async def end(self, agent_id: str, grace: float = 1.0) -> int:
        return await self._end_boxes({f"{self.tag}.{agent_id}"}, grace)

    async def sweep(self) -> int:
        return 0  # the next start's recovery ends each lost agent's processes by its tag

    async def close(self) -> None:
        return None


# choosing -----------------------------------------------------------------------------------


async def _works(root: Path) -> str | None:
    """None if a process can join a box under ``root``; else why not."""
    probe = root / f"probe-{os.getpid()}"
    try:
        probe.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create {probe}: {e.strerror or e}"
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            _WRAPPER,
            "godel-box",
            str(probe / "cgroup.procs"),
            "true",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            return err.decode(errors="replace").strip() or f"exit {proc.returncode}"
        return None
    except OSError as e:
        return f"cannot run /bin/sh: {e.strerror or e}"
    finally:
        for _ in range(50):  # the probe's process leaves the cgroup as it exits
            try:
                probe.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                await asyncio.sleep(0.01)


def _candidates(tag: str) -> list[_CgroupBase]:
    name = f"godel-{os.getuid()}-{tag}"
    out: list[_CgroupBase] = []
    v2 = _mount_point("cgroup2", None)
    own = _own_cgroup(None)
    if v2 is not None and own is not None:
        out.append(CgroupV2(v2 / own.lstrip("/") / name, tag))
    v1 = _mount_point("cgroup", "freezer")
    own1 = _own_cgroup("freezer")
    if v1 is not None and own1 is not None:
        out.append(CgroupV1Freezer(v1 / own1.lstrip("/") / name, tag))
    return out


async def choose_containment(home: Path, mode: ContainmentMode) -> Containment:
    """The containment ``mode`` asks for: ``auto`` takes the first cgroup kind that works
    here, else the scan; ``cgroup`` raises ``ContainmentError`` naming why none works."""
    tag = home_tag(home)
    if mode == "scan":
        return EnvironmentScan(tag)
    why: list[str] = []
    for cand in _candidates(tag):
        problem = await _works(cand.root)
        if problem is None:
            return cand
        why.append(f"{cand.kind}: {problem}")
    if mode == "cgroup":
        detail = "; ".join(why) or "no cgroup hierarchy is mounted"
        raise ContainmentError(
            f'[daemon] containment = "cgroup" but no cgroup can be used here ({detail}); '
            'set containment = "auto" to fall back to the environment scan'
        )
    if why:
        log.info("no cgroup containment (%s); using the environment scan", "; ".join(why))
    return EnvironmentScan(tag)


class Unchosen:
    """Before the engine starts: tags processes, ends nothing (only tests build runtimes
    without an engine)."""

    kind = "none"
    where = ""

    def wrap(
        self, agent_id: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        return list(argv), dict(env)

    async def end(self, agent_id: str, grace: float = 1.0) -> int:
        return 0

    async def sweep(self) -> int:
        return 0

    async def close(self) -> None:
        return None


class ContainmentSlot:
    """The containment runtimes use, set once the engine has chosen it at start.

    Runtimes are built before the engine starts (and the choice needs a probe process),
    so they hold this slot and read ``current`` when they spawn.
    """

    def __init__(self, current: Containment | None = None) -> None:
        self.current: Containment = current or Unchosen()

    def wrap(
        self, agent_id: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        return self.current.wrap(agent_id, argv, env)


__all__ = [
    "BOX_VAR",
    "CgroupV1Freezer",
    "CgroupV2",
    "Containment",
    "ContainmentError",
    "ContainmentMode",
    "ContainmentSlot",
    "EnvironmentScan",
    "choose_containment",
    "home_tag",
]
