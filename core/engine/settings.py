"""The config service: reload the config files and apply what changed while running.

Every setting the schema accepts does something. On ``config reload`` each changed key
is either applied at once (listed as ``applied``) or needs a daemon restart (listed as
``needs_restart``, with nothing changed for it until then):

- applied: ``defaults.*`` (except ``env_passthrough``), ``daemon.*`` (except
  ``containment``), ``queue.*``,
  ``health.*`` (except ``max_concurrent_probes``), ``autoscaler.*``, ``policy.*`` (the
  next command checked, running agents included), ``providers``/``models`` (for agents
  spawned from now on), ``[[agents]]`` (missing agents are spawned; extra ones keep
  running until stopped, as kubectl apply without prune);
- restart: ``runtimes.*`` and ``defaults.env_passthrough`` (runtime plug-ins are built
  with their options and agents' environment at start), ``daemon.containment`` (chosen
  once, at start) and
  ``health.max_concurrent_probes`` (the probe scheduler's bound).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from core.audit import AuditDraft
from core.config import AgentGroup, GodelConfig, LoadedConfig, load_config
from core.config.checks import check_usable
from core.engine.context import EngineContext
from core.events import ConfigChanged
from core.llm.catalog import ModelCatalog
from core.models import AgentSpec

log = logging.getLogger("godel.engine")

RESTART_KEYS = (
    "runtimes",
    "health.max_concurrent_probes",
    "defaults.env_passthrough",
    "daemon.containment",
)


class ConfigReload(BaseModel):
    """What a reload found: the config now in force and what changed, applied or not."""

    digest: str
    sources: list[str]
    changed: list[str]
    applied: list[str]
    needs_restart: list[str]


def flatten(config: GodelConfig) -> dict[str, Any]:
    """Dotted keys of the settings, one per leaf; tables of entries (providers, models,
    runtimes) one key per entry, and ``agents`` as one key."""
    out: dict[str, Any] = {}
    for section, value in config.model_dump(mode="json").items():
        if isinstance(value, dict):
            for k, v in value.items():
                out[f"{section}.{k}"] = v
        else:
            out[section] = value
    return out


def changed_keys(old: GodelConfig, new: GodelConfig) -> list[str]:
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def needs_restart(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RESTART_KEYS)


def group_names(index: int, group: AgentGroup) -> list[str]:
    """The agent names of ``[[agents]]`` entry ``index``: stable, so a reload or a restart
    knows which agents of the group are already running."""
    base = group.name or f"{group.runtime}-group{index + 1}"
    if group.count == 1 and group.name:
        return [base]
    return [f"{base}-{k}" for k in range(1, group.count + 1)]


class Spawn(Protocol):
    def __call__(
        self, spec: AgentSpec, actor: str, *, keys: Mapping[str, str] | None = None
    ) -> Awaitable[Any]: ...


Apply = Callable[[GodelConfig], Awaitable[None] | None]


class ConfigService:
    def __init__(self, ctx: EngineContext, spawn: Spawn) -> None:
        self.ctx = ctx
        self.spawn = spawn
        # Set by build: each applies one part of a new config to a running engine.
        self.appliers: list[Apply] = []

    async def reload(
        self,
        actor: str,
        cwd: Path | None = None,
        user_file: Path | None = None,
        api_keys: Mapping[str, str] | None = None,
    ) -> ConfigReload:
        """Load the files that apply in ``cwd`` (the caller's directory; with the caller's
        ``user_file``) and apply what changed. ``api_keys`` (the caller's, never kept)
        serve the ``[[agents]]`` this starts."""
        new = load_config(self.ctx.registry.names(), cwd=cwd, user_file=user_file)
        await asyncio.to_thread(check_usable, new)
        old = self.ctx.loaded
        keys = changed_keys(old.config, new.config)
        restart = [k for k in keys if needs_restart(k)]
        applied = [k for k in keys if not needs_restart(k)]
        if new.digest != old.digest:
            await self._apply(old, new, api_keys)
            await self.ctx.journal.audit(
                AuditDraft(
                    actor=actor,
                    action="config.change",
                    subject="config",
                    payload={
                        "old_digest": old.digest,
                        "new_digest": new.digest,
                        "sources": [str(s) for s in new.sources],
                        "applied": applied,
                        "needs_restart": restart,
                    },
                ),
                events=[ConfigChanged(digest=new.digest, sources=[str(s) for s in new.sources])],
            )
        elif new.files != old.files:
            # The same settings from other files (or reformatted ones): nothing to apply,
            # but clients compare files, so the daemon must know which it now serves.
            self.ctx.loaded = old.model_copy(
                update={"sources": new.sources, "files": new.files, "loaded_at": new.loaded_at}
            )
        return ConfigReload(
            digest=self.ctx.loaded.digest,
            sources=[str(s) for s in self.ctx.loaded.sources],
            changed=keys,
            applied=applied,
            needs_restart=restart,
        )

    async def _apply(
        self, old: LoadedConfig, new: LoadedConfig, api_keys: Mapping[str, str] | None
    ) -> None:
        # Keys that need a restart keep their old values until then, so what
        # ``config show`` prints is what is in force.
        merged = new.config.model_copy(
            update={"runtimes": old.config.runtimes},
        )
        merged.health = merged.health.model_copy(
            update={"max_concurrent_probes": old.config.health.max_concurrent_probes}
        )
        merged.defaults = merged.defaults.model_copy(
            update={"env_passthrough": old.config.defaults.env_passthrough}
        )
        merged.daemon = merged.daemon.model_copy(
            update={"containment": old.config.daemon.containment}
        )
        self.ctx.loaded = new.model_copy(update={"config": merged})
        self.ctx.models = ModelCatalog(merged, scripted_url=self.ctx.scripted_url)
        apply_log_level(merged)
        self.ctx.bus.default_maxsize = merged.daemon.event_queue_size
        for fn in self.appliers:
            ret = fn(merged)
            if ret is not None:
                await ret
        if [g.model_dump() for g in merged.agents] != [g.model_dump() for g in old.config.agents]:
            await self.start_agent_groups("config", api_keys)

    async def start_agent_groups(
        self, actor: str, api_keys: Mapping[str, str] | None = None
    ) -> list[str]:
        """Spawn the ``[[agents]]`` that are not running; returns problems, one line each
        (a group that fails to start is reported and audited, never fatal)."""
        running = {
            lv.agent.name for lv in self.ctx.live if lv.agent.name is not None and lv.working
        }
        problems = []
        for i, group in enumerate(self.ctx.config.agents):
            for name in group_names(i, group):
                if name in running:
                    continue
                spec = AgentSpec(
                    runtime=group.runtime, name=name, model=group.model, skills=group.skills
                )
                try:
                    await self.spawn(spec, actor, keys=api_keys)
                except Exception as e:
                    problems.append(f"[[agents]] {name}: {e}")
                    log.warning("could not start [[agents]] %s: %s", name, e)
        return problems


def apply_log_level(config: GodelConfig) -> None:
    """``[daemon] log_level`` for Godel's loggers (``GODEL_LOG_LEVEL`` wins, for debugging
    one run without editing the config)."""
    level = os.environ.get("GODEL_LOG_LEVEL") or config.daemon.log_level
    logging.getLogger("godel").setLevel(level.upper())
    logging.getLogger("core").setLevel(level.upper())
