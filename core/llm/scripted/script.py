"""The script a scripted server answers from: ``Script``, its ``Rule``s and their replies,
validated (templates included) and loaded from JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from core.errors import ConfigError

__all__ = [
    "PLACEHOLDER",
    "ErrorReply",
    "Match",
    "Reply",
    "Rule",
    "Script",
    "ToolCallReply",
    "UsageSpec",
]

PLACEHOLDER = re.compile(r"\{(\d+|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)\}")
_BUILTIN_VARS = frozenset({"message", "tool_output", "tool_name", "model"})


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_regex: str | None = None
    # Searched in the system prompt (a filter only: its groups are not template variables);
    # tells e.g. a planner's request from an agent's.
    system_regex: str | None = None
    tool_result_regex: str | None = None
    tool_name: str | None = None
    last: Literal["user", "tool_result"] | None = None
    model: str | None = None
    nth_request: int | None = Field(default=None, ge=1)


class ToolCallReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ErrorReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int | str  # an HTTP status, or a template such as "{status}"
    message: str = ""  # template; default "scripted error <status>"
    type: str | None = None  # the provider's error type; default derived from the status
    retry_after: float | None = Field(default=None, ge=0)  # sent as Retry-After (seconds)

    @model_validator(mode="after")
    def _error_status(self) -> ErrorReply:
        if isinstance(self.status, int) and not 400 <= self.status <= 599:
            raise ValueError(f"error.status {self.status} is not an HTTP error status (400-599)")
        return self


class UsageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: int | None = Field(default=None, ge=0)  # None: the chars/4 estimate
    output_tokens: int | None = Field(default=None, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    tool_calls: list[ToolCallReply] = Field(default_factory=list)
    error: ErrorReply | None = None
    delay_s: float = Field(default=0.0, ge=0)
    chunk_delay_s: float = Field(default=0.0, ge=0)
    usage: UsageSpec | None = None
    # Neutral ("stop", "tool_use", "length") or a raw provider value, sent as is.
    stop_reason: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Reply:
        if self.error is not None and (self.text is not None or self.tool_calls):
            raise ValueError("a reply with 'error' cannot also have 'text' or 'tool_calls'")
        if self.error is None and self.text is None and not self.tool_calls:
            raise ValueError("a reply needs 'text', 'tool_calls' or 'error'")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    match: Match = Field(default_factory=Match)
    reply: Reply

    _user_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _tool_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _system_re: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> Rule:
        self._user_re = _compile(self.match.user_regex, "user_regex")
        self._tool_re = _compile(self.match.tool_result_regex, "tool_result_regex")
        self._system_re = _compile(self.match.system_regex, "system_regex")
        numbered = self._user_re or self._tool_re
        n_groups = numbered.groups if numbered else 0
        names = set(_BUILTIN_VARS)
        for rx in (self._user_re, self._tool_re):
            if rx is not None:
                names.update(rx.groupindex)
        for where, template in self._templates():
            for var in PLACEHOLDER.findall(template):
                if var.isdigit():
                    if int(var) > n_groups:
                        raise ValueError(
                            f"{where}: {{{var}}} but the regex has only {n_groups} group(s)"
                        )
                elif "." in var:
                    if not var.startswith("tool_args."):
                        raise ValueError(f"{where}: unknown template variable {{{var}}}")
                elif var not in names:
                    raise ValueError(
                        f"{where}: unknown template variable {{{var}}} (known: "
                        f"{', '.join(sorted(names))}, tool_args.KEY, group numbers)"
                    )
        return self

    def _templates(self) -> Iterator[tuple[str, str]]:
        r = self.reply
        if r.text is not None:
            yield "reply.text", r.text
        for i, call in enumerate(r.tool_calls):
            yield f"reply.tool_calls[{i}].name", call.name
            yield from _strings(call.arguments, f"reply.tool_calls[{i}].arguments")
        if r.error is not None:
            yield "reply.error.message", r.error.message
            if isinstance(r.error.status, str):
                yield "reply.error.status", r.error.status


def _compile(pattern: str | None, what: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"match.{what}: invalid regex {pattern!r}: {e}") from e


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


class Script(BaseModel):
    """An ordered list of rules; the first that matches a request answers it."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    rules: list[Rule]

    @classmethod
    def load(cls, path: Path) -> Script:
        """Read a script file: ``{"rules": [...]}`` or a bare list of rules. Problems raise
        ``ConfigError`` naming the file and the rule index."""
        path = Path(path)
        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as e:
            raise ConfigError(
                f"{path}: cannot read script: {e.strerror or e}", file=str(path), problem=str(e)
            ) from e
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}",
                file=str(path),
                problem=e.msg,
            ) from e
        if isinstance(data, list):
            data = {"rules": data}
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = list(err["loc"])
            where = ""
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                where = f"rule {loc[1]}"
                rest = ".".join(str(p) for p in loc[2:])
                key = f"rules[{loc[1]}]" + (f".{rest}" if rest else "")
                if rest:
                    where += f" ({rest})"
            else:
                key = ".".join(str(p) for p in loc) or "(top level)"
                where = key
            problem = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(
                f"{path}: {where}: {problem}", file=str(path), key=key, problem=problem
            ) from e

    @classmethod
    def default(cls) -> Script:
        """The bundled script (``core/llm/scripts/default.json``)."""
        ref = resources.files("core.llm").joinpath("scripts/default.json")
        with resources.as_file(ref) as p:
            return cls.load(p)
