"""pi's configuration: the agent's config dir (``models.json``, ``settings.json``) and argv/env.

Every agent has its own pi config dir, ``<home>/agents/<id>/pi`` (``PI_CODING_AGENT_DIR``),
holding a generated ``models.json`` with one provider, ``godel``, and a ``settings.json``.
The API key is passed in the environment variable the model names, never written to disk.
``HOME`` is a scratch dir inside it and pi runs offline, without session files, skills,
prompt templates, themes or (unless asked) workspace extensions.

Pure except :func:`write_config`; :func:`pi_command` is shared with the bench's bare driver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import core
from core.llm.catalog_types import ResolvedModel
from core.runtimes.environment import agent_environment

PROVIDER = "godel"  # the one provider Godel writes into the agent's models.json
# Node's own settings pi may need (a corporate CA bundle, heap size); no secrets.
PI_VARS = ("NODE_EXTRA_CA_CERTS", "NODE_OPTIONS", "SSL_CERT_FILE", "SSL_CERT_DIR")


def _price(v: Decimal) -> float:
    return float(v)


def models_json(model: ResolvedModel) -> dict[str, Any]:
    """``models.json`` with one provider, ``godel``, serving exactly ``model``.

    ``apiKey`` is the NAME of an env var, which pi resolves from its environment; the
    runtime always sets that variable (pi would otherwise send the name as the key).
    """
    if model.api == "openai":
        api, base_url = "openai-completions", model.base_url.rstrip("/")
    else:
        # pi's Anthropic client appends /v1/messages itself.
        api, base_url = "anthropic-messages", model.base_url.rstrip("/").removesuffix("/v1")
    prices = model.prices
    cost = (
        {
            "input": _price(prices.input_mtok),
            "output": _price(prices.output_mtok),
            "cacheRead": _price(prices.cache_read_mtok),
            "cacheWrite": _price(prices.cache_write_mtok),
        }
        if prices is not None
        else {"input": 0.0, "output": 0.0, "cacheRead": 0.0, "cacheWrite": 0.0}
    )
    return {
        "providers": {
            PROVIDER: {
                "baseUrl": base_url,
                "api": api,
                "apiKey": model.api_key_env,
                "models": [
                    {
                        "id": model.upstream_id,
                        "name": model.name,
                        "contextWindow": model.context_window,
                        "maxTokens": model.max_tokens,
                        "cost": cost,
                    }
                ],
            }
        }
    }


DEFAULT_SETTINGS: dict[str, Any] = {
    # Godel owns the conversation's lifetime; a silent summary would change what the
    # model sees without any event Godel reports.
    "compaction": {"enabled": False},
    # Retries at pi's agent level only: each one is an auto_retry_* event Godel shows.
    # The SDK's own retries under it (provider.maxRetries) are invisible, so they are off.
    "retry": {"enabled": True, "maxRetries": 2, "baseDelayMs": 200, "provider": {"maxRetries": 0}},
}


def settings_json(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``settings.json``: :data:`DEFAULT_SETTINGS` with ``overrides`` merged in (deeply)."""
    return _merge(DEFAULT_SETTINGS, overrides or {})


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def retry_enabled(settings: dict[str, Any]) -> bool:
    retry = settings.get("retry")
    return not isinstance(retry, dict) or bool(retry.get("enabled", True))


def bundled_pi_bin() -> Path:
    """Where ``make setup`` installs pi: ``<repo>/tools/pi/node_modules/.bin/pi``."""
    return (
        Path(core.__file__).resolve().parents[1] / "tools" / "pi" / "node_modules" / ".bin" / "pi"
    )


def pi_command(
    pi_bin: str,
    agent_dir: Path,
    model: ResolvedModel,
    agent_id: str,
    spec_env: Mapping[str, str],
    *,
    passthrough: Sequence[str] = (),
    allow_workspace_extensions: bool = False,
    extra_args: Sequence[str] = (),
) -> tuple[dict[str, str], list[str]]:
    """The environment and argv of one ``pi --mode rpc`` agent (also used by the bench).

    The environment is scrubbed (:mod:`core.runtimes.environment`): of the provider keys
    only the model's own, which pi reads itself.
    """
    env = agent_environment(agent_id, spec_env, passthrough=passthrough, runtime_vars=PI_VARS)
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
