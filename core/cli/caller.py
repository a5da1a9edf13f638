"""What the CLI brings from the calling shell to the daemon: which config applies here (to
warn when the daemon runs with another), and the API keys for requests that spawn agents.

Standard library (and ``core.config.files``) only: this runs on every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from core.api import blocking
from core.config.files import ConfigFile, caller_api_keys, config_files, drift
from core.errors import GodelError
from core.paths import GodelPaths

if TYPE_CHECKING:
    from core.api.client import DaemonClient

__all__ = [
    "SPAWNING_METHODS",
    "drift_line",
    "warn_config_drift",
    "warn_config_drift_async",
    "with_caller_keys",
]

# Requests that may spawn agents: they carry the calling shell's keys (as tmux's
# update-environment), so a key exported after the daemon started is used.
SPAWNING_METHODS = frozenset(
    {
        "agent.spawn",
        "agent.restart",
        "swarm.create",
        "swarm.scale",
        "config.reload",
        "do.run",
        "do.plan",
    }
)
# Calls that show or change the daemon's config, or stop it: a warning would only repeat
# what they print or fix.
NOT_CHECKED = frozenset({"config.reload", "config.show", "config.sources", "daemon.stop"})


def with_caller_keys(method: str, params: dict[str, Any] | None) -> dict[str, Any] | None:
    """``params`` plus ``api_keys`` for a spawning method when this shell has any (for
    ``model.list``, their names only: whether a model's key is set here)."""
    if method not in SPAWNING_METHODS and method != "model.list":
        return params
    keys = caller_api_keys()
    if not keys:
        return params
    if method == "model.list":
        return {**(params or {}), "keys_set": sorted(keys)}
    return {**(params or {}), "api_keys": keys}


def drift_line(identity: Any) -> str | None:
    """The warning for a daemon's ``config.sources`` (or ``daemon.status``'s ``config``),
    or None if it agrees with the config here."""
    try:
        daemon = [ConfigFile.from_json(f) for f in identity["files"]]
        digest, loaded_at = str(identity["digest"]), identity.get("loaded_at")
    except (KeyError, TypeError, ValueError):
        return None  # not a daemon of this version: nothing to compare
    return drift(daemon, config_files(), digest=digest, loaded_at=str(loaded_at or "its start"))


def _warn(message: str | None) -> None:
    if message:
        click.echo(f"godel: {message}", err=True)


def warn_config_drift(paths: GodelPaths, method: str) -> None:
    """Before ``method``: one line on stderr if the daemon runs with another config than
    the one that applies here. Silent when they agree or no daemon answers (the call
    itself then says what is wrong)."""
    if method in NOT_CHECKED:
        return
    try:
        identity = blocking.call(paths, "config.sources")
    except GodelError:
        return
    _warn(drift_line(identity))


async def warn_config_drift_async(client: DaemonClient, method: str) -> None:
    """``warn_config_drift`` on a connection already open (no second connect)."""
    if method in NOT_CHECKED:
        return
    try:
        identity = await client.call("config.sources")
    except GodelError:
        return
    _warn(drift_line(identity))
