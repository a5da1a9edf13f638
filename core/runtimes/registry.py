"""Which runtimes exist: the built-ins, plus plug-ins found through entry points.

A plug-in is a class implementing ``AgentRuntime``, published under the entry point
group ``godel.runtimes``; its runtime name is the entry point's name. A plug-in that
fails to import, is not a runtime or fails to construct never breaks the registry: it
is listed with its error and ``get`` explains why it cannot be used.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from core.errors import RuntimeFailure, UnknownRuntime
from core.models import RuntimeInfo
from core.runtimes.base import AgentRuntime, Capability, RuntimeContext
from core.runtimes.native import NativeRuntime
from core.runtimes.noop import NoopRuntime
from core.runtimes.pi import PiRuntime
from core.runtimes.shell import ShellRuntime

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "godel.runtimes"

RuntimeFactory = Callable[[RuntimeContext], AgentRuntime]

# name -> (factory, the entry point value that may also advertise it)
_BUILTINS: dict[str, tuple[RuntimeFactory, str]] = {
    "shell": (ShellRuntime, "core.runtimes.shell:ShellRuntime"),
    "native": (NativeRuntime, "core.runtimes.native:NativeRuntime"),
    "pi": (PiRuntime, "core.runtimes.pi:PiRuntime"),
    "noop": (NoopRuntime, "core.runtimes.noop:NoopRuntime"),
}

_ASYNC_METHODS = ("spawn", "steer", "abort", "kill", "health", "wait_exit", "recover")


def _runtime_entry_points() -> list[EntryPoint]:
    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken installed distribution must not break Godel
        log.exception("cannot read the %s entry points", ENTRY_POINT_GROUP)
        return []


def known_runtime_names() -> list[str]:
    """Names of every runtime, built-in or plug-in, without importing or creating any.

    Plug-ins that will fail to load are included: a config naming one is valid, and
    using it reports the plug-in's own error.
    """
    names = set(_BUILTINS)
    names.update(ep.name for ep in _runtime_entry_points())
    return sorted(names)


def _capability_names(cls: Any) -> list[str]:
    """The class's capabilities as sorted strings; ValueError names an unknown one."""
    caps = getattr(cls, "capabilities", None)
    if isinstance(caps, str | bytes) or not isinstance(caps, Iterable):
        raise ValueError("capabilities must be a set of Capability values")
    out = set()
    for cap in caps:
        try:
            out.add(Capability(cap).value)
        except ValueError:
            raise ValueError(f"unknown capability {cap!r}") from None
    return sorted(out)


def _protocol_problem(cls: Any) -> str | None:
    """Why ``cls`` does not implement ``AgentRuntime``, or None if it does."""
    if not inspect.isclass(cls):
        return f"{cls!r} is not a class"
    for attr in ("name", "description"):
        if not isinstance(getattr(cls, attr, None), str):
            return f"{cls.__name__}.{attr} must be a string"
    try:
        _capability_names(cls)
    except ValueError as e:
        return f"{cls.__name__}: {e}"
    missing = [m for m in ("exec", *_ASYNC_METHODS) if not callable(getattr(cls, m, None))]
    if missing:
        return f"{cls.__name__} lacks {', '.join(missing)}"
    not_async = [m for m in _ASYNC_METHODS if not inspect.iscoroutinefunction(getattr(cls, m))]
    if not_async:
        return f"{cls.__name__}: {', '.join(not_async)} must be async"
    return None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass
class _Entry:
    name: str
    source: str
    runtime: AgentRuntime | None = None
    error: str | None = None


class RuntimeRegistry:
    """The runtimes this daemon can use, each created once with its own context."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @classmethod
    def load(
        cls, ctx_factory: Callable[[str], RuntimeContext], *, plugins: bool = True
    ) -> RuntimeRegistry:
        """Create the built-ins and, unless ``plugins`` is False, every plug-in."""
        reg = cls()
        for name, (factory, _) in _BUILTINS.items():
            reg._create(name, "builtin", factory, ctx_factory)
        if plugins:
            for ep in _runtime_entry_points():
                reg._load_entry_point(ep, ctx_factory)
        return reg

    def add(self, name: str, runtime: AgentRuntime, *, source: str = "builtin") -> None:
        """Register an already created runtime (embedding, tests)."""
        if name in self._entries:
            raise ValueError(f"runtime {name!r} is already registered")
        self._entries[name] = _Entry(name, source, runtime=runtime)

    def _create(
        self,
        name: str,
        source: str,
        factory: Callable[[RuntimeContext], Any],
        ctx_factory: Callable[[str], RuntimeContext],
    ) -> None:
        entry = _Entry(name, source)
        self._entries[name] = entry
        try:
            runtime = factory(ctx_factory(name))
        except Exception as e:
            entry.error = f"cannot create the runtime: {_describe(e)}"
            log.warning("runtime %s (%s): %s", name, source, entry.error)
            return
        if not isinstance(runtime, AgentRuntime):
            entry.error = f"{type(runtime).__name__} does not implement AgentRuntime"
            return
        entry.runtime = runtime

    def _load_entry_point(
        self, ep: EntryPoint, ctx_factory: Callable[[str], RuntimeContext]
    ) -> None:
        name = ep.name
        if name in self._entries:
            builtin = _BUILTINS.get(name)
            # Godel's own package advertises its built-ins too; only a different target is news.
            if builtin is None or builtin[1] != ep.value:
                log.warning("runtime %s from %s ignored: the name is taken", name, ep.value)
            return
        dist = getattr(ep, "dist", None)
        source = f"{dist.name} {dist.version} ({ep.value})" if dist is not None else ep.value
        try:
            cls = ep.load()
        except Exception as e:
            self._entries[name] = _Entry(name, source, error=f"cannot import: {_describe(e)}")
            log.warning("runtime plug-in %s (%s) cannot be imported: %s", name, source, e)
            return
        problem = _protocol_problem(cls)
        if problem is not None:
            self._entries[name] = _Entry(name, source, error=f"not a runtime: {problem}")
            log.warning("runtime plug-in %s (%s) is not a runtime: %s", name, source, problem)
            return
        self._create(name, source, cls, ctx_factory)

    def names(self) -> list[str]:
        """Names of the runtimes that can be used (loaded without error)."""
        return sorted(n for n, e in self._entries.items() if e.runtime is not None)

    def get(self, name: str) -> AgentRuntime:
        entry = self._entries.get(name)
        if entry is None:
            known = self.names()
            raise UnknownRuntime(
                f"unknown runtime {name!r} (known: {', '.join(known) or 'none'})",
                runtime=name,
                known=known,
            )
        if entry.runtime is None:
            raise RuntimeFailure(
                f"runtime {name!r} failed to load: {entry.error}",
                runtime=name,
                source=entry.source,
            )
        return entry.runtime

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def info(self) -> list[RuntimeInfo]:
        """Every registered runtime, broken plug-ins included, sorted by name."""
        out = []
        for name in sorted(self._entries):
            entry = self._entries[name]
            rt = entry.runtime
            error = entry.error
            capabilities: list[str] = []
            if rt is not None:
                try:
                    capabilities = _capability_names(rt)
                except ValueError as e:  # only reachable through add()
                    error = str(e)
            out.append(
                RuntimeInfo(
                    name=name,
                    description=rt.description if rt is not None else "",
                    capabilities=capabilities,
                    source=entry.source,
                    error=error,
                )
            )
        return out
