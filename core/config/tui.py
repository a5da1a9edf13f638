"""``[tui]``: the console's settings (``godel tui``), checked here for their syntax only.

``keymap`` maps an action id to the keys that run it, comma-separated Textual key names
(``"agent.kill" = "K"``, ``"app.help" = "f1,question_mark"``). The ids belong to the
console (``godel_tui.actions``), which core never imports: an id of the right shape that
names no action is reported by the console when it starts, with the list of valid ones.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

__all__ = ["TuiSettings", "check_keys"]

_MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")
# One printable character (K, ?, 1), or a Textual key name (f5, question_mark, escape).
_KEY = re.compile(r"[^\s,+\x00-\x1f\x7f]|[a-z][a-z0-9_]*")
_ACTION_ID = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
_EXAMPLES = "e.g. K, ctrl+k, f2, question_mark; several: 'ctrl+k,K'"


def _key_problem(key: str) -> str | None:
    *mods, name = key.split("+")
    if not name:
        return f"{key!r} names no key after its + (the + key itself is plus)"
    bad = [m for m in mods if m not in _MODIFIERS]
    if bad:
        return f"unknown modifier {bad[0]!r} (modifiers: {', '.join(_MODIFIERS)})"
    if not _KEY.fullmatch(name):
        return f"{name!r} is not a key name"
    return None


def check_keys(keys: str) -> str:
    """``keys`` if it is a list of keys Textual can bind, else a one-line error."""
    parts = [k.strip() for k in keys.split(",")]
    for key in parts:
        problem = "an empty key" if not key else _key_problem(key)
        if problem is not None:
            where = f"in {keys!r}: " if len(parts) > 1 else ""
            raise PydanticCustomError(
                "bad_keys",
                "{where}{problem} ({examples})",
                {"where": where, "problem": problem, "examples": _EXAMPLES},
            )
    return ",".join(parts)


def _check_action_id(action: str) -> str:
    if not _ACTION_ID.fullmatch(action):
        raise PydanticCustomError(
            "bad_keys",
            "{action} is not an action id (e.g. agent.kill; `?` in the console lists them)",
            {"action": repr(action)},
        )
    return action


ActionId = Annotated[str, Strict(), AfterValidator(_check_action_id)]
Keys = Annotated[str, Strict(), AfterValidator(check_keys)]


class TuiSettings(BaseModel):
    """``[tui]``: the console's key bindings."""

    # A typo'd key must be an error that names it, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")

    # action id -> keys, replacing that action's default keys.
    keymap: dict[ActionId, Keys] = Field(default_factory=dict)
