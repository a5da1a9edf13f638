"""What a runtime receives about a model: everything needed to call it, already resolved."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

ApiKind = Literal["openai", "anthropic"]


class ModelPrices(BaseModel):
    """US dollars per million tokens."""

    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal = Decimal(0)
    cache_write_mtok: Decimal = Decimal(0)
    source: str = ""  # "config", "snapshot genai-prices 0.2.3 (2026-11-24)", ...


class ResolvedModel(BaseModel):
    name: str  # Godel's name for it (e.g. "scripted", "claude-sonnet-4-5")
    provider: str  # provider name in config
    api: ApiKind
    # OpenAI: the URL that ends before "/chat/completions" (usually ".../v1").
    # Anthropic: the URL that ends before "/v1/messages".
    base_url: str
    upstream_id: str  # the id sent to the endpoint
    api_key_env: str  # the env var that holds the key (set in the agent's environment)
    # Its value, resolved by the engine (the caller's, else the daemon's); never logged,
    # so kept out of repr (a log line or traceback showing the model shows no key).
    api_key: str = Field(repr=False)
    prices: ModelPrices | None  # None: unknown price (cost reported as unknown)
    context_window: int = 128_000
    max_tokens: int = 4096
    scripted: bool = False  # served by Godel's scripted model server
