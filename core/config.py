"""Godel's configuration: loading, merging and validating ``config.toml`` files.

Two files are read, both optional:

* the user file, ``platformdirs.user_config_dir("godel")/config.toml`` or the file
  named by ``GODEL_CONFIG``;
* the project file, the first ``.godel/config.toml`` found walking up from the
  current directory.

Project values override user values: tables are merged key by key, lists and
scalars are replaced whole. Each file is validated on its own first, so an error
names the file that holds the mistake, then the merged result is validated.

Every problem is reported as a ``ConfigError`` whose one-line message reads
``<file>: <key.path>: <what is wrong>``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import platformdirs
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from core.errors import ConfigError
from core.federation.autoscaler_settings import AutoscalerSettings
from core.federation.health import HealthSettings

__all__ = [
    "CONFIG_ENV_VAR",
    "PROJECT_CONFIG_PATH",
    "AgentGroup",
    "BudgetSettings",
    "DaemonSettings",
    "Defaults",
    "GodelConfig",
    "LoadedConfig",
    "find_project_config",
    "load_config",
    "parse_config_file",
    "user_config_path",
]

CONFIG_ENV_VAR = "GODEL_CONFIG"
PROJECT_CONFIG_PATH = Path(".godel") / "config.toml"
SYNTAX_KEY = "(syntax)"
FILE_KEY = "(file)"

_CONTEXT_KEY = "known_runtimes"
_PARTIAL_KEY = "partial"  # validating one file of several: skip cross-file checks


# --- validators shared by the models -------------------------------------------------


def _known_runtimes(info: ValidationInfo) -> Collection[str] | None:
    """The runtimes the caller registered, or None when validating without context."""
    context = info.context
    if isinstance(context, Mapping):
        known = context.get(_CONTEXT_KEY)
        if known is not None:
            return cast("Collection[str]", known)
    return None


def _describe_known(known: Collection[str]) -> str:
    return f"known: {', '.join(sorted(known))}" if known else "no runtimes are registered"


def _check_runtime(name: str, info: ValidationInfo) -> str:
    known = _known_runtimes(info)
    if known is not None and name not in known:
        raise PydanticCustomError(
            "unknown_runtime",
            "unknown runtime {name} ({known})",
            {"name": repr(name), "known": _describe_known(known)},
        )
    return name


# Known runtimes come from the registry, which lives elsewhere, so the check reads
# them from the validation context; without a context any name is accepted.
RuntimeName = Annotated[str, Strict(), AfterValidator(_check_runtime)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
Percent = Annotated[StrictInt, Field(ge=1, le=100)]
Dollars = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class _Section(BaseModel):
    # A typo'd key must be an error that names it, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class Defaults(_Section):
    """``[defaults]``: what the engine uses when a request does not say."""

    runtime: RuntimeName = "shell"
    # The model for runtimes that need one, when --model is not given.
    model: NonEmptyStr = "scripted"
    exec_timeout: Seconds = 600.0
    # None lets the engine use GODEL_HOME/workspaces.
    workspace_root: Path | None = None

    @field_validator("workspace_root", mode="before")
    @classmethod
    def _non_empty_path(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip():
            raise PydanticCustomError("empty_path", "must not be empty")
        return v


class DaemonSettings(_Section):
    """``[daemon]``."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    event_queue_size: Annotated[StrictInt, Field(ge=1)] = 1000

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        # "INFO" is what people type after years of Python logging.
        return v.strip().lower() if isinstance(v, str) else v


class BudgetSettings(_Section):
    """``[budget]``: spending limit and the percentages at which to warn."""

    limit_usd: Dollars | None = None  # None: no budget
    thresholds: list[Percent] = Field(default_factory=lambda: [50, 75, 90, 100])

    @field_validator("thresholds")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        for prev, cur in pairwise(v):
            if cur <= prev:
                raise PydanticCustomError(
                    "not_increasing",
                    "must be strictly increasing, but {cur} follows {prev}",
                    {"cur": cur, "prev": prev},
                )
        return v


class QueueSettings(_Section):
    """``[queue]``: capacities (backpressure) and how the dispatcher works."""

    # Active tasks (queued, ready, running) in the default pool; a swarm sets its own.
    default_capacity: Annotated[StrictInt, Field(ge=1)] = 10_000
    # Active tasks in the whole queue.
    capacity: Annotated[StrictInt, Field(ge=1)] = 100_000
    lease_s: Seconds = 60.0
    # Agents spawned at once when a swarm grows (pi takes ~1.3 CPU-s to start).
    spawn_concurrency: Annotated[StrictInt, Field(ge=1, le=256)] = 8


class AgentGroup(_Section):
    """One ``[[agents]]`` entry: ``count`` agents started alike."""

    name: NonEmptyStr | None = None
    # A group without a runtime takes ``defaults.runtime`` (filled by GodelConfig).
    runtime: RuntimeName = "shell"
    count: Annotated[StrictInt, Field(ge=1)] = 1
    skills: list[str] = Field(default_factory=list)
    model: NonEmptyStr | None = None

    @field_validator("skills")
    @classmethod
    def _clean_skills(cls, v: list[str]) -> list[str]:
        # Same rule as AgentSpec, so a group always turns into valid specs.
        out: list[str] = []
        for s in v:
            s = s.strip()
            if not s:
                continue
            if any(c.isspace() or c == "," for c in s):
                raise PydanticCustomError(
                    "bad_skill",
                    "skill {skill} must not contain spaces or commas",
                    {"skill": repr(s)},
                )
            out.append(s)
        return out


EnvVarName = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class ProviderSettings(_Section):
    """``[providers.NAME]``: an endpoint speaking the OpenAI or the Anthropic API."""

    kind: Literal["openai", "anthropic"]
    # OpenAI: the URL before "/chat/completions" (".../v1"); Anthropic: before "/v1/messages".
    base_url: NonEmptyStr | None = None
    api_key_env: EnvVarName | None = None
    # Served by Godel's scripted model server, which the daemon starts on demand.
    scripted: bool = False

    @model_validator(mode="after")
    def _needs_url(self) -> ProviderSettings:
        if self.base_url is None and not self.scripted:
            raise PydanticCustomError(
                "missing_base_url", "base_url is required (unless scripted = true)"
            )
        return self


class ModelSettings(_Section):
    """``[models.NAME]``: a model Godel can spawn agents with (``--model NAME``)."""

    provider: NonEmptyStr
    id: NonEmptyStr | None = None  # the upstream model id; default: the model's name
    # US dollars per million tokens; when absent the vendored price snapshot is used.
    input_per_mtok: Dollars | None = None
    output_per_mtok: Dollars | None = None
    cache_read_per_mtok: Dollars | None = None
    cache_write_per_mtok: Dollars | None = None
    context_window: Annotated[StrictInt, Field(ge=1)] = 128_000
    max_tokens: Annotated[StrictInt, Field(ge=1)] = 4096


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


class GodelConfig(_Section):
    """The whole configuration; every field has a default, so ``GodelConfig()`` is valid."""

    defaults: Defaults = Field(default_factory=Defaults)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    autoscaler: AutoscalerSettings = Field(default_factory=AutoscalerSettings)
    agents: list[AgentGroup] = Field(default_factory=list)
    # Free-form options per runtime; only the runtime names are checked here.
    runtimes: dict[RuntimeName, dict[str, Any]] = Field(default_factory=dict)
    providers: dict[NonEmptyStr, ProviderSettings] = Field(
        default_factory=lambda: {
            k: ProviderSettings.model_validate(v) for k, v in BUILTIN_CONFIG["providers"].items()
        }
    )
    models: dict[NonEmptyStr, ModelSettings] = Field(
        default_factory=lambda: {
            k: ModelSettings.model_validate(v) for k, v in BUILTIN_CONFIG["models"].items()
        }
    )

    @model_validator(mode="after")
    def _models_name_providers(self, info: ValidationInfo) -> GodelConfig:
        # A single file may name a provider another file defines, so this is checked
        # on the merged config only.
        if isinstance(info.context, Mapping) and info.context.get(_PARTIAL_KEY):
            return self
        for name, m in self.models.items():
            if m.provider not in self.providers:
                known = ", ".join(sorted(self.providers))
                raise PydanticCustomError(
                    "unknown_provider",
                    "unknown provider {provider} (known: {known})",
                    {
                        "key": f"models.{name}.provider",
                        "provider": repr(m.provider),
                        "known": known,
                    },
                )
        return self

    @model_validator(mode="before")
    @classmethod
    def _agents_default_runtime(cls, data: Any, info: ValidationInfo) -> Any:
        """Give runtime-less ``[[agents]]`` the configured ``defaults.runtime``."""
        if not isinstance(data, Mapping):
            return data
        defaults, agents = data.get("defaults"), data.get("agents")
        if not isinstance(defaults, Mapping) or not isinstance(agents, list):
            return data
        runtime = defaults.get("runtime")
        known = _known_runtimes(info)
        # An unusable default is reported once, at defaults.runtime, not per group.
        if not isinstance(runtime, str) or (known is not None and runtime not in known):
            return data
        filled = [
            {**a, "runtime": runtime} if isinstance(a, Mapping) and "runtime" not in a else a
            for a in agents
        ]
        return {**data, "agents": filled}

    def to_toml_dict(self) -> dict[str, Any]:
        """JSON-safe dump without None values (TOML has no null); loads back equal."""
        return self.model_dump(mode="json", exclude_none=True)


class LoadedConfig(BaseModel):
    """The merged configuration and where it came from."""

    config: GodelConfig
    sources: list[Path]  # files actually read, lowest precedence first
    digest: str  # sha256 of the canonical JSON of ``config``, to audit changes


# --- error reporting ------------------------------------------------------------------

_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "defaults": Defaults,
    "daemon": DaemonSettings,
    "budget": BudgetSettings,
    "queue": QueueSettings,
    "health": HealthSettings,
    "autoscaler": AutoscalerSettings,
    "agents": AgentGroup,
}

# What a field holds, for "expected ..., got ..." messages clearer than pydantic's.
_FIELD_EXPECTS: dict[str, str] = {
    "limit_usd": "a number of US dollars",
    "exec_timeout": "a number of seconds",
    "thresholds": "a list of percentages",
    "workspace_root": "a path",
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
# Raised by the validators above with messages that already read well.
_OWN_ERRORS = frozenset(
    {
        "unknown_runtime",
        "not_increasing",
        "bad_skill",
        "empty_path",
        "missing_base_url",
        "unknown_provider",
    }
)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _key_path(loc: Sequence[int | str]) -> str:
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


def _describe(err: ErrorDetails) -> str:
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
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {_show(value)}"
    if kind == "missing":
        return "is required"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind in _OWN_ERRORS:
        return err["msg"]
    return f"{err['msg']}, got {_show(value)}"


def _config_error(file: str, problems: list[dict[str, str]], **extra: Any) -> ConfigError:
    first = problems[0]
    more = len(problems) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ConfigError(
        f"{file}: {first['key']}: {first['problem']}{suffix}",
        file=file,
        key=first["key"],
        problem=first["problem"],
        problems=problems,
        **extra,
    )


def _validate(
    data: Mapping[str, Any], known_runtimes: Collection[str], file: str, *, partial: bool = False
) -> GodelConfig:
    try:
        return GodelConfig.model_validate(
            data, context={_CONTEXT_KEY: frozenset(known_runtimes), _PARTIAL_KEY: partial}
        )
    except ValidationError as exc:
        problems = [
            {
                "key": str((err.get("ctx") or {}).get("key") or _key_path(err["loc"])),
                "problem": _describe(err),
            }
            for err in exc.errors()
        ]
        raise _config_error(file, problems) from None


# --- files ----------------------------------------------------------------------------


def user_config_path() -> Path:
    """``$GODEL_CONFIG`` if set, else ``<user config dir>/godel/config.toml``."""
    override = os.environ.get(CONFIG_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("godel")) / "config.toml"


def find_project_config(start: Path) -> Path | None:
    """The first ``.godel/config.toml`` in ``start`` or one of its parents."""
    here = start.expanduser().resolve()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_CONFIG_PATH
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problem = f"cannot read the file: {exc.strerror or exc}"
        raise _config_error(file, [{"key": FILE_KEY, "problem": problem}]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not valid UTF-8 (byte {exc.start})"
        raise _config_error(file, [{"key": SYNTAX_KEY, "problem": problem}]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        extra: dict[str, int] = {}
        if position:
            line, column = int(position[1]), int(position[2])
            extra = {"line": line, "column": column}
            detail = message[: position.start()]
            problem = f"invalid TOML at line {line}, column {column}: {detail}"
        else:
            problem = f"invalid TOML: {message}"
        raise _config_error(file, [{"key": SYNTAX_KEY, "problem": problem}], **extra) from None


def _base_dir(path: Path) -> Path:
    # As with Cargo's .cargo/config.toml, a project file's relative paths mean
    # "from the project root", not "from inside .godel".
    parent = path.parent
    return parent.parent if parent.name == PROJECT_CONFIG_PATH.parent.name else parent


def parse_config_file(path: Path, known_runtimes: Collection[str]) -> dict[str, Any]:
    """Read and validate one file; return its raw table, ready to merge.

    A relative ``defaults.workspace_root`` is made absolute here, while we still know
    which file it came from.
    """
    data = _read_toml(path)
    config = _validate(data, known_runtimes, str(path), partial=True)
    root = config.defaults.workspace_root
    if root is not None:
        root = root.expanduser()
        if not root.is_absolute():
            root = _base_dir(path.absolute()) / root
        data["defaults"] = {**data["defaults"], "workspace_root": str(root)}
    return data


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _digest(config: GodelConfig) -> str:
    canonical = json.dumps(
        config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_config(
    known_runtimes: Collection[str],
    *,
    cwd: Path | None = None,
    user_file: Path | None = None,
) -> LoadedConfig:
    """Load the user file, then the project file over it; missing files are skipped.

    ``user_file`` replaces the ``GODEL_CONFIG`` / platform lookup (for tests and
    ``--config``); ``cwd`` is where the walk for ``.godel/config.toml`` starts.
    """
    user_path = user_file.expanduser() if user_file is not None else user_config_path()
    project_path = find_project_config(cwd if cwd is not None else Path.cwd())
    # Built-in providers and models sit under the files, so a file adds or overrides keys.
    merged: dict[str, Any] = json.loads(json.dumps(BUILTIN_CONFIG))
    sources: list[Path] = []
    seen: set[Path] = set()
    for path in (user_path, project_path):
        # A missing file is fine, but a directory or unreadable file is an error.
        if path is None or not path.exists():
            continue
        resolved = path.resolve()
        if resolved in seen:  # e.g. GODEL_CONFIG pointing at the project file
            continue
        seen.add(resolved)
        merged = _deep_merge(merged, parse_config_file(path, known_runtimes))
        sources.append(path)
    # Each file passed on its own, so a failure here comes from their combination.
    label = " + ".join(str(p) for p in sources) or "(defaults)"
    config = _validate(merged, known_runtimes, label)
    return LoadedConfig(config=config, sources=sources, digest=_digest(config))
