"""The environment an agent's processes get: scrubbed, never the daemon's whole one.

An agent runs whatever its model or its user tells it to, so ``env`` in any agent must
not print the daemon's secrets (other providers' API keys, tokens, proxies with passwords).
An agent gets, in this order (later wins):

1. the harmless variables of the daemon's environment in :data:`SAFE_VARS` (and ``LC_*``);
2. what its runtime needs (``runtime_vars``, e.g. Node's CA bundle for pi);
3. the variables named in ``[defaults] env_passthrough``, from the daemon's environment;
4. its own provider's key, only for a runtime that runs the model client in the agent's
   process (pi): the one variable its model reads, nothing else;
5. the spec's own ``env`` and ``GODEL_AGENT_ID``.

The daemon's own environment (``os.environ``) is read, never changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

# Locale, identity, paths and terminal: what ordinary tools need to behave normally.
SAFE_VARS = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR"}
)
SAFE_PREFIXES = ("LC_",)


def agent_environment(
    agent_id: str,
    spec_env: Mapping[str, str],
    *,
    passthrough: Iterable[str] = (),
    runtime_vars: Iterable[str] = (),
    key: tuple[str, str] | None = None,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of agent ``agent_id``'s processes.

    ``passthrough``: variable names config lets through (``defaults.env_passthrough``);
    ``runtime_vars``: names the runtime itself needs; ``key``: (variable, value) of the
    agent's own provider key; ``source``: the daemon's environment (``os.environ``).
    """
    src = os.environ if source is None else source
    wanted = set(runtime_vars) | set(passthrough)
    env = {
        k: v for k, v in src.items() if k in SAFE_VARS or k.startswith(SAFE_PREFIXES) or k in wanted
    }
    if key is not None:
        env[key[0]] = key[1]
    env.update(spec_env)
    env["GODEL_AGENT_ID"] = agent_id
    return env


__all__ = ["SAFE_PREFIXES", "SAFE_VARS", "agent_environment"]
