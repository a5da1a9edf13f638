"""Godel's error types.

Every error the engine raises on purpose is a ``GodelError`` with a stable JSON-RPC
code in the -32000..-32099 range and a ``data`` dict that names the problem, so the
daemon, the CLI and API clients all report the same thing.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GodelError(Exception):
    """Base class: a problem the user can act on."""

    code: ClassVar[int] = -32000
    kind: ClassVar[str] = "godel_error"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, Any] = {"kind": self.kind, **data}

    def to_jsonrpc(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "data": self.data}


class AgentNotFound(GodelError):
    code = -32001
    kind = "agent_not_found"


class AgentUnavailable(GodelError):
    """The agent exists but cannot take this action (stopped, lost, busy...)."""

    code = -32002
    kind = "agent_unavailable"


class UnknownRuntime(GodelError):
    code = -32003
    kind = "unknown_runtime"


class ConfigError(GodelError):
    """A config file is malformed. ``data`` holds ``file``, ``key`` and ``problem``."""

    code = -32004
    kind = "config_error"


class StoreError(GodelError):
    """The store cannot be opened or used safely (corrupt, newer schema...)."""

    code = -32005
    kind = "store_error"


class RuntimeFailure(GodelError):
    """A runtime failed to spawn or run an agent."""

    code = -32006
    kind = "runtime_failure"


class DaemonError(GodelError):
    """The daemon could not be started, reached or stopped."""

    code = -32007
    kind = "daemon_error"


class AuditError(GodelError):
    code = -32008
    kind = "audit_error"


class InvalidInput(GodelError):
    """Input that passed JSON-RPC validation but makes no sense to the engine."""

    code = -32009
    kind = "invalid_input"


class LLMUnavailable(GodelError):
    """A model cannot be used: unknown model, missing API key, unknown price under a budget."""

    code = -32011
    kind = "llm_unavailable"


class QueueFull(GodelError):
    """Backpressure: the queue is at 95 % of its capacity. ``data`` names the capacity."""

    code = -32012
    kind = "queue_full"


class TaskNotFound(GodelError):
    code = -32013
    kind = "task_not_found"


class SwarmError(GodelError):
    """A swarm does not exist, already exists, or cannot do what was asked."""

    code = -32014
    kind = "swarm_error"


class ExecNotFound(GodelError):
    code = -32015
    kind = "exec_not_found"


class HomeError(GodelError):
    """``GODEL_HOME`` (or the socket's directory) cannot be used safely: uncreatable,
    read-only, or another user's."""

    code = -32016
    kind = "home_error"


class PolicyDenied(GodelError):
    """A ``[policy] deny`` rule refused the command before it ran (and it was audited).
    ``data`` names the agent, the rule's number and its text."""

    code = -32017
    kind = "policy_denied"


class BudgetExhausted(GodelError):
    """A budget refused work: its limit is reached, or an estimate does not fit in what
    is left, or a model has no price under a dollar budget. ``data`` names the scope."""

    code = -32018
    kind = "budget_exhausted"


class BudgetReserved(GodelError):
    """A budget has room for this exec's estimate only once the execs that hold
    reservations in it settle: the work waits (a task goes back to the queue, its attempt
    not counted) rather than failing. ``data`` names the scope."""

    code = -32019
    kind = "budget_reserved"


ERRORS_BY_CODE: dict[int, type[GodelError]] = {
    cls.code: cls
    for cls in (
        GodelError,
        AgentNotFound,
        AgentUnavailable,
        UnknownRuntime,
        ConfigError,
        StoreError,
        RuntimeFailure,
        DaemonError,
        AuditError,
        InvalidInput,
        LLMUnavailable,
        QueueFull,
        TaskNotFound,
        SwarmError,
        ExecNotFound,
        HomeError,
        PolicyDenied,
        BudgetExhausted,
        BudgetReserved,
    )
}


# The exit codes of a run (`godel run`, `godel do`; docs/headless.md#exit-codes). Here
# because the engine reports them too (`do.finished`).
EXIT_OK = 0
EXIT_FAILED = 1  # a task failed, was cancelled or not merged
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130

# Kinds of error in what a run (`godel run`, `godel do`) was asked rather than in running
# it: the run exits 2 for them, as for bad usage.
USAGE_KINDS = frozenset(
    {"config_error", "invalid_input", "unknown_runtime", "home_error", "llm_unavailable"}
)


def run_exit_code(e: GodelError) -> int:
    """The exit code of a run that ``e`` stopped (docs/headless.md#exit-codes): 3 for a
    budget, 2 for what the run was asked (``USAGE_KINDS``), 1 otherwise."""
    kind = e.data.get("kind")
    if kind == "budget_exhausted":
        return EXIT_BUDGET
    return EXIT_USAGE if kind in USAGE_KINDS else EXIT_FAILED
