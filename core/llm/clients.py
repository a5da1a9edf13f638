"""The client for a resolved model: the one place that picks the API's client class, so the
native runtime and the planner call a model the same way."""

from __future__ import annotations

from core.llm.catalog_types import ResolvedModel
from core.llm.types import LLMClient

__all__ = ["make_client"]


def make_client(model: ResolvedModel, *, timeout: float = 600, max_retries: int = 3) -> LLMClient:
    """A streaming client for ``model``'s endpoint and key (close it with ``aclose``)."""
    if model.api == "anthropic":
        from core.llm.anthropic import AnthropicClient

        return AnthropicClient(
            model.base_url, model.api_key, timeout=timeout, max_retries=max_retries
        )
    from core.llm.openai import OpenAIClient

    return OpenAIClient(model.base_url, model.api_key, timeout=timeout, max_retries=max_retries)
