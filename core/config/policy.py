"""``[policy]``: the deny-list of commands, its grammar and its matching.

A rule is a string. ``re:PATTERN`` is a Python regular expression searched anywhere in
the command (``re.search``; ``(?i)`` makes it case-blind); any other rule is a literal
piece of text the command must contain, compared after every run of whitespace (in the
rule and in the command) is collapsed to one space. Patterns are compiled when the
config loads, so a bad one is a config error naming the entry, never a failure at exec.

The list matches the command's text: it guards against mistakes, it is not a sandbox
(``bash -c "$(echo cm0gLXJmIC8= | base64 -d)"`` holds none of the words it runs).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, Strict
from pydantic_core import PydanticCustomError

__all__ = ["DENY_RULE", "DenyMatch", "PolicySettings"]

DENY_RULE = "command_deny"  # the rule a refusal names in its audit entry
REGEX_PREFIX = "re:"
_BLANKS = re.compile(r"\s+")
_SHOWN_MAX = 300  # characters of a refused command quoted in its audit detail


def _collapse(text: str) -> str:
    return _BLANKS.sub(" ", text)


def _compile(rule: str) -> re.Pattern[str] | None:
    """The compiled pattern of a ``re:`` rule (None for a literal rule); ``re.error``
    if it does not compile."""
    if not rule.startswith(REGEX_PREFIX):
        return None
    with warnings.catch_warnings():
        # "possible nested set" and the like: the pattern still means what it says.
        warnings.simplefilter("ignore")
        return re.compile(rule[len(REGEX_PREFIX) :])


def _check_rule(rule: str) -> str:
    if not rule.strip() or rule == REGEX_PREFIX:
        raise PydanticCustomError("invalid_deny_rule", "an empty deny rule matches everything")
    if any(ord(c) < 32 or ord(c) == 127 for c in rule):
        # A refusal quotes its rule on one line; a pattern can say \n instead.
        raise PydanticCustomError(
            "invalid_deny_rule",
            "deny rule {rule} holds a control character (write \\n, \\t... in a re: rule)",
            {"rule": repr(rule)},
        )
    try:
        _compile(rule)
    except (re.error, OverflowError, RecursionError) as e:
        raise PydanticCustomError(
            "invalid_deny_rule",
            "deny rule {rule} is not a valid regular expression: {error}",
            {"rule": repr(rule), "error": str(e)},
        ) from None
    return rule


DenyRule = Annotated[str, Strict(), AfterValidator(_check_rule)]


@dataclass(frozen=True)
class DenyMatch:
    """The first deny rule a command matches: its place in the list (from 1) and text."""

    number: int
    rule: str

    @property
    def text(self) -> str:
        return f"matches deny rule {self.number} '{self.rule}'"

    @property
    def refusal(self) -> str:
        """What the caller (or the model) is told."""
        return f"refused by policy: {self.text}"

    def detail(self, command: str) -> str:
        """The audit entry's one line: which command (its start, quoted) and which rule."""
        shown = repr(command)
        if len(shown) > _SHOWN_MAX:
            shown = shown[: _SHOWN_MAX - 3] + "..."
        return f"command {shown} {self.text}"


class PolicySettings(BaseModel):
    """``[policy]``: commands refused before they run (a shell agent's exec input, a
    native agent's ``bash`` tool call), each refusal audited as ``policy.violation``."""

    model_config = ConfigDict(extra="forbid")

    deny: list[DenyRule] = Field(default_factory=list)
    # (number, literal collapsed or None, pattern or None), built once per config.
    _rules: list[tuple[int, str | None, re.Pattern[str] | None]] = PrivateAttr(default_factory=list)

    def model_post_init(self, context: object, /) -> None:
        rules = []
        for n, rule in enumerate(self.deny, start=1):
            pattern = _compile(rule)
            rules.append((n, None if pattern else _collapse(rule), pattern))
        self._rules = rules

    def check(self, command: str) -> DenyMatch | None:
        """The first rule ``command`` matches, or None when it may run."""
        if not self._rules:
            return None
        collapsed: str | None = None
        for n, literal, pattern in self._rules:
            if pattern is not None:
                hit = pattern.search(command) is not None
            else:
                assert literal is not None
                if collapsed is None:
                    collapsed = _collapse(command)
                hit = literal in collapsed
            if hit:
                return DenyMatch(n, self.deny[n - 1])
        return None
