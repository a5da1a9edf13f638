"""Resolve ``--model NAME`` to everything a runtime needs: endpoint, key, prices.

A model that cannot be used fails here, before any process is spawned: an unknown name,
or a provider whose API key variable is not set (pi would otherwise send the variable's
*name* as the key).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path

from pydantic import BaseModel

from core.config import GodelConfig, ModelSettings
from core.config.files import default_key_env
from core.errors import LLMUnavailable
from core.llm.catalog_types import ApiKind, ModelPrices, ResolvedModel
from core.llm.prices import snapshot_price

SCRIPTED_DEFAULT_KEY = "scripted-key"  # the scripted server accepts any key

# The root URL of a scripted model server answering from a script (None: the bundled
# one), started on first use; each distinct script has a server of its own.
ScriptedUrl = Callable[[Path | None], Awaitable[str]]


class ModelInfo(BaseModel):
    """A configured model as ``godel model list`` shows it."""

    name: str
    provider: str
    api: ApiKind
    upstream_id: str
    scripted: bool
    api_key_env: str | None
    api_key_set: bool
    prices: ModelPrices | None


def config_prices(m: ModelSettings) -> ModelPrices | None:
    if m.input_per_mtok is None or m.output_per_mtok is None:
        return None
    return ModelPrices(
        input_mtok=m.input_per_mtok,
        output_mtok=m.output_per_mtok,
        cache_read_mtok=m.cache_read_per_mtok or 0,
        cache_write_mtok=m.cache_write_per_mtok or 0,
        source="config",
    )


class ModelCatalog:
    def __init__(
        self,
        config: GodelConfig,
        *,
        scripted_url: ScriptedUrl | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._scripted_url = scripted_url
        self._environ = environ if environ is not None else os.environ

    def names(self) -> list[str]:
        return sorted(self.config.models)

    def _settings(self, name: str) -> ModelSettings:
        m = self.config.models.get(name)
        if m is None:
            raise LLMUnavailable(
                f"unknown model {name!r} (known: {', '.join(self.names())}); "
                "define it under [models.NAME] in .godel/config.toml",
                model=name,
                known=self.names(),
            )
        return m

    def key_env(self, name: str) -> str | None:
        """The variable model ``name``'s key is read from; None for an unknown model."""
        m = self.config.models.get(name)
        p = self.config.providers.get(m.provider) if m is not None else None
        if m is None or p is None:
            return None
        return p.api_key_env or default_key_env(m.provider)

    def prices(self, name: str) -> ModelPrices | None:
        m = self._settings(name)
        p = self.config.providers[m.provider]
        return config_prices(m) or snapshot_price(p.kind, m.id or name)

    def info(self, keys_set: Collection[str] = ()) -> list[ModelInfo]:
        """``keys_set``: key variables set in the caller's shell, which a spawn from there
        sends (``resolve``'s ``keys``), so their models' keys count as set."""
        out = []
        for name in self.names():
            m = self.config.models[name]
            p = self.config.providers[m.provider]
            out.append(
                ModelInfo(
                    name=name,
                    provider=m.provider,
                    api=p.kind,
                    upstream_id=m.id or name,
                    scripted=p.scripted,
                    api_key_env=p.api_key_env,
                    api_key_set=p.scripted or self._key_set(m.provider, keys_set),
                    prices=self.prices(name),
                )
            )
        return out

    def _key_set(self, provider: str, keys_set: Collection[str]) -> bool:
        env = self.config.providers[provider].api_key_env or default_key_env(provider)
        return env in keys_set or bool(self._environ.get(env))

    async def resolve(self, name: str, keys: Mapping[str, str] | None = None) -> ResolvedModel:
        """``keys``: the calling shell's values of key variables; they win over the
        daemon's environment (as tmux's ``update-environment``)."""
        m = self._settings(name)
        p = self.config.providers[m.provider]
        key_env = p.api_key_env or default_key_env(m.provider)
        key = (keys or {}).get(key_env) or self._environ.get(key_env, "")
        if p.scripted:
            if self._scripted_url is None:
                raise LLMUnavailable(
                    f"model {name!r} is served by the scripted model server, which this "
                    "engine cannot start",
                    model=name,
                )
            root = await self._scripted_url(p.script)
            base_url = root + "/v1" if p.kind == "openai" else root
            key = key or SCRIPTED_DEFAULT_KEY
        else:
            assert p.base_url is not None  # checked by ProviderSettings
            base_url = p.base_url.rstrip("/")
            if not key:
                raise LLMUnavailable(
                    f"model {name!r} needs the {key_env} environment variable (provider "
                    f"{m.provider!r}), and it is set neither in the calling shell nor where "
                    "the daemon runs; export it and run the command again",
                    model=name,
                    provider=m.provider,
                    env_var=key_env,
                )
        return ResolvedModel(
            name=name,
            provider=m.provider,
            api=p.kind,
            base_url=base_url,
            upstream_id=m.id or name,
            api_key_env=key_env,
            api_key=key,
            prices=self.prices(name),
            context_window=m.context_window,
            max_tokens=m.max_tokens,
            scripted=p.scripted,
        )
