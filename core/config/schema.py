"""The pydantic models of ``config.toml`` (``GodelConfig`` and its sections) and the built-ins.

Known runtimes reach the validators through the validation context (``CONTEXT_KEY``);
``PARTIAL_KEY`` marks one file of several, which skips checks across files.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.config.autoscaler import AutoscalerSettings
from core.config.bounds import between, check_range
from core.config.builtin import BUILTIN_CONFIG
from core.config.do import DoSettings
from core.config.files import ConfigFile
from core.config.health import HealthSettings
from core.config.policy import PolicySettings
from core.config.tui import TuiSettings

__all__ = [
    "BUILTIN_CONFIG",
    "CONTEXT_KEY",
    "PARTIAL_KEY",
    "AgentGroup",
    "DaemonSettings",
    "Defaults",
    "GodelConfig",
    "LoadedConfig",
    "ModelSettings",
    "ProviderSettings",
    "QueueSettings",
]

CONTEXT_KEY = "known_runtimes"
PARTIAL_KEY = "partial"  # validating one file of several: skip cross-file checks


# --- validators shared by the models -------------------------------------------------


def _known_runtimes(info: ValidationInfo) -> Collection[str] | None:
    """The runtimes the caller registered, or None when validating without context."""
    context = info.context
    if isinstance(context, Mapping):
        known = context.get(CONTEXT_KEY)
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
MIB = 1024 * 1024
NonEmptyStr = Annotated[str, Field(min_length=1)]
_Num = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Seconds = Annotated[_Num, between(0.1, 7 * 86_400)]
Dollars = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
EnvVarName = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


# Numeric options of the free-form ``[runtimes.NAME]`` tables that a runtime reads:
# (lowest, highest, whole numbers only).
RUNTIME_NUMBERS: dict[str, dict[str, tuple[float, float, bool]]] = {
    "native": {
        "max_turns": (1, 10_000, True),
        "max_retries": (0, 100, True),
        "request_timeout": (1, 86_400, False),
    },
}


def _runtime_option_problem(value: object, lo: float, hi: float, whole: bool) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected {'a whole number' if whole else 'a number'}, got {value!r}"
    if whole and not isinstance(value, int):
        return f"expected a whole number, got {value!r}"
    if value != value or value in (float("inf"), float("-inf")):
        return f"must be a finite number, got {value!r}"
    return check_range(value, lo, hi)


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
    # Variables of the daemon's environment agents may see besides the harmless ones
    # (core.runtimes.environment); every other one, API keys included, is withheld.
    env_passthrough: list[EnvVarName] = Field(default_factory=list)
    # Bytes of output one exec keeps (store, event log); the rest is counted, not kept.
    exec_output_max_bytes: Annotated[StrictInt, between(1024, 1 << 36)] = 16 * MIB

    @field_validator("workspace_root", mode="before")
    @classmethod
    def _non_empty_path(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip():
            raise PydanticCustomError("empty_path", "must not be empty")
        if isinstance(v, str) and "\x00" in v:  # no OS call takes it: fail here, named
            raise PydanticCustomError("empty_path", "must not contain a NUL character")
        return v


class DaemonSettings(_Section):
    """``[daemon]``."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    event_queue_size: Annotated[StrictInt, between(1, 1_000_000)] = 1000
    # events.jsonl is renamed events.jsonl.1 at this size; `events_keep` old files stay.
    events_max_bytes: Annotated[StrictInt, between(1 * MIB, 1 << 40)] = 64 * MIB
    events_keep: Annotated[StrictInt, between(0, 100)] = 3
    # How every process an agent starts is kept within reach of a kill
    # (core.runtimes.containment): a cgroup where the machine allows, else a scan.
    containment: Literal["auto", "cgroup", "scan"] = "auto"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        # "INFO" is what people type after years of Python logging.
        return v.strip().lower() if isinstance(v, str) else v


class QueueSettings(_Section):
    """``[queue]``: capacities (backpressure) and how the dispatcher works."""

    # Active tasks (queued, ready, running) in the default pool; a swarm sets its own.
    default_capacity: Annotated[StrictInt, between(1, 10_000_000)] = 10_000
    # Active tasks in the whole queue.
    capacity: Annotated[StrictInt, between(1, 10_000_000)] = 100_000
    lease_s: Annotated[_Num, between(1, 86_400)] = 60.0
    # Agents spawned at once when a swarm grows (pi takes ~1.3 CPU-s to start).
    spawn_concurrency: Annotated[StrictInt, between(1, 256)] = 8


class AgentGroup(_Section):
    """One ``[[agents]]`` entry: ``count`` agents started alike."""

    name: NonEmptyStr | None = None
    # A group without a runtime takes ``defaults.runtime`` (filled by GodelConfig).
    runtime: RuntimeName = "shell"
    count: Annotated[StrictInt, between(1, 10_000)] = 1
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


class ProviderSettings(_Section):
    """``[providers.NAME]``: an endpoint speaking the OpenAI or the Anthropic API."""

    kind: Literal["openai", "anthropic"]
    # OpenAI: the URL before "/chat/completions" (".../v1"); Anthropic: before "/v1/messages".
    base_url: NonEmptyStr | None = None
    api_key_env: EnvVarName | None = None
    # Served by Godel's scripted model server, which the daemon starts on demand.
    scripted: bool = False
    # The script that server answers from (default: the bundled one); a relative path is
    # made absolute when its file is read (``parse_config_file``). Each distinct script
    # gets a server of its own.
    script: Path | None = None

    @field_validator("script", mode="before")
    @classmethod
    def _non_empty_script(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip():
            raise PydanticCustomError("empty_path", "must not be empty")
        if isinstance(v, str) and "\x00" in v:
            raise PydanticCustomError("empty_path", "must not contain a NUL character")
        return v

    @model_validator(mode="after")
    def _needs_url(self) -> ProviderSettings:
        if self.base_url is None and not self.scripted:
            raise PydanticCustomError(
                "missing_base_url", "base_url is required (unless scripted = true)"
            )
        if self.script is not None and not self.scripted:
            raise PydanticCustomError(
                "script_not_scripted",
                "script is only for a scripted provider: set scripted = true or remove it",
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
    context_window: Annotated[StrictInt, between(1, 100_000_000)] = 128_000
    max_tokens: Annotated[StrictInt, between(1, 10_000_000)] = 4096


class GodelConfig(_Section):
    """The whole configuration; every field has a default, so ``GodelConfig()`` is valid."""

    defaults: Defaults = Field(default_factory=Defaults)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    autoscaler: AutoscalerSettings = Field(default_factory=AutoscalerSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    tui: TuiSettings = Field(default_factory=TuiSettings)  # read by the console only
    do: DoSettings = Field(default_factory=DoSettings)  # read by `godel do`
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

    @field_validator("runtimes")
    @classmethod
    def _runtime_numbers(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for runtime, options in v.items():
            for key, (lo, hi, whole) in RUNTIME_NUMBERS.get(runtime, {}).items():
                if key not in options:
                    continue
                problem = _runtime_option_problem(options[key], lo, hi, whole)
                if problem is not None:
                    raise PydanticCustomError(
                        "runtime_option",
                        "{problem}",
                        {"key": f"runtimes.{runtime}.{key}", "problem": problem},
                    )
        return v

    @model_validator(mode="after")
    def _models_name_providers(self, info: ValidationInfo) -> GodelConfig:
        # A single file may name a provider another file defines, so this is checked
        # on the merged config only.
        if isinstance(info.context, Mapping) and info.context.get(PARTIAL_KEY):
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
    # The files as read (resolved path, hash of their bytes): what a client compares its
    # own directory's files with, without loading them.
    files: list[ConfigFile] = Field(default_factory=list)
    loaded_at: datetime | None = None  # when the files were read; None: built in code

    def identity(self) -> dict[str, Any]:
        """Which config this is, where from and since when (``config.sources``)."""
        return {
            "sources": [str(s) for s in self.sources],
            "files": [f.to_json() for f in self.files],
            "digest": self.digest,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds") if self.loaded_at else None,
        }
