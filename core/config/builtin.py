"""The built-in providers and models, merged under the config files.

Plain data with no imports beyond the standard library, so the thin client can read the
providers' ``api_key_env`` names without loading the schema (pydantic).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BUILTIN_CONFIG"]

# Built in, and merged under the user's files, so `--model scripted` works offline and a
# user entry only needs the keys it changes.
BUILTIN_CONFIG: dict[str, Any] = {
    "providers": {
        "scripted": {"kind": "openai", "scripted": True, "api_key_env": "GODEL_SCRIPTED_API_KEY"},
        "scripted-anthropic": {
            "kind": "anthropic",
            "scripted": True,
            "api_key_env": "GODEL_SCRIPTED_API_KEY",
        },
        "anthropic": {
            "kind": "anthropic",
            "base_url": "https://api.anthropic.com",
            "api_key_env": "ANTHROPIC_API_KEY",
        },
        "openai": {
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY",
        },
    },
    "models": {
        # Made-up prices, so that the offline demo shows real cost arithmetic.
        "scripted": {
            "provider": "scripted",
            "id": "scripted",
            "input_per_mtok": "1",
            "output_per_mtok": "2",
            "context_window": 32000,
        },
        "scripted-anthropic": {
            "provider": "scripted-anthropic",
            "id": "scripted",
            "input_per_mtok": "1",
            "output_per_mtok": "2",
            "context_window": 32000,
        },
        "claude-sonnet-4-5": {
            "provider": "anthropic",
            "context_window": 200000,
            "max_tokens": 8192,
        },
        "claude-haiku-4-5": {"provider": "anthropic", "context_window": 200000, "max_tokens": 8192},
        "claude-opus-4-5": {"provider": "anthropic", "context_window": 200000, "max_tokens": 8192},
        "gpt-4.1": {"provider": "openai", "context_window": 1047576},
        "gpt-4o-mini": {"provider": "openai"},
    },
}
