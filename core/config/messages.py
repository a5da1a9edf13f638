"""Turning pydantic validation errors into one-line ``<file>: <key.path>: <problem>`` messages."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from core.config.autoscaler import AutoscalerSettings
from core.config.bounds import OUT_OF_RANGE
from core.config.health import HealthSettings
from core.config.policy import PolicySettings
from core.config.schema import (
    AgentGroup,
    DaemonSettings,
    Defaults,
    GodelConfig,
    QueueSettings,
)
from core.config.tui import TuiSettings
from core.errors import ConfigError

__all__ = ["config_error", "describe_error", "key_path"]

_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "defaults": Defaults,
    "daemon": DaemonSettings,
    "queue": QueueSettings,
    "health": HealthSettings,
    "autoscaler": AutoscalerSettings,
    "policy": PolicySettings,
    "tui": TuiSettings,
    "agents": AgentGroup,
}

# What a field holds, for "expected ..., got ..." messages clearer than pydantic's.
_FIELD_EXPECTS: dict[str, str] = {
    "exec_timeout": "a number of seconds",
    "input_per_mtok": "a number of US dollars",
    "output_per_mtok": "a number of US dollars",
    "cache_read_per_mtok": "a number of US dollars",
    "cache_write_per_mtok": "a number of US dollars",
    "workspace_root": "a path",
    "script": "a path",
}
_TYPE_EXPECTS: dict[str, str] = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "path_type": "a path",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}
# Raised by the validators in ``schema`` with messages that already read well.
_OWN_ERRORS = frozenset(
    {
        "unknown_runtime",
        "bad_skill",
        "empty_path",
        "missing_base_url",
        "script_not_scripted",
        "unknown_provider",
        "runtime_option",
        "invalid_deny_rule",
        "bad_keys",
        OUT_OF_RANGE,
    }
)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# A path or value the user typed may hold a newline; the message stays one line.
_ONE_LINE = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def key_path(loc: Sequence[int | str]) -> str:
    """``("agents", 0, "count")`` -> ``agents[0].count``, quoting keys TOML would quote."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue  # a dict-key error: the key itself is already the previous part
        else:
            name = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            out += f".{name}" if out else name
    return out or "(top level)"


def _show(value: object) -> str:
    """A user's value as they would recognise it, kept to one short line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, Mapping):
        text = "a table"
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bound(value: object) -> str:
    # Bounds reach us as 0.0 or Decimal("0"); show them as the schema means them.
    if isinstance(value, float | Decimal) and value == int(value):
        return str(int(value))
    return str(value)


def describe_error(err: ErrorDetails) -> str:
    """Turn one pydantic error into a short, specific problem text."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    loc = err["loc"]
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        parent = loc[:-1]
        model = _SECTION_MODELS.get(str(parent[0])) if parent else GodelConfig
        text = f"unknown key {loc[-1]!r}"
        if model is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
            if close:
                text += f" (did you mean {close[0]!r}?)"
        return text
    if kind in _TYPE_EXPECTS:
        # An item of a list is described by its own type, the list by its field.
        expects = _FIELD_EXPECTS.get(field) if isinstance(loc[-1], str) else None
        return f"expected {expects or _TYPE_EXPECTS[kind]}, got {_show(value)}"
    if kind == "greater_than":
        return f"must be greater than {_bound(ctx['gt'])}, got {_show(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {_bound(ctx['ge'])}, got {_show(value)}"
    if kind == "less_than":
        return f"must be less than {_bound(ctx['lt'])}, got {_show(value)}"
    if kind == "less_than_equal":
        return f"must be at most {_bound(ctx['le'])}, got {_show(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {_show(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":  # only EnvVarName has a pattern
        return (
            "expected an environment variable name (letters, digits and _, "
            f"not starting with a digit), got {_show(value)}"
        )
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {_show(value)}"
    if kind == "missing":
        return "is required"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind in _OWN_ERRORS:
        return err["msg"]
    return f"{err['msg']}, got {_show(value)}"


def config_error(file: str, problems: list[dict[str, str]], **extra: Any) -> ConfigError:
    first = problems[0]
    more = len(problems) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    message = f"{file}: {first['key']}: {first['problem']}{suffix}"
    return ConfigError(
        message.translate(_ONE_LINE),
        file=file,
        key=first["key"],
        problem=first["problem"],
        problems=problems,
        **extra,
    )
