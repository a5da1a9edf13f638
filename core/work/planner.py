"""The ``godel do`` planner: asks a model to split an intent into a ``DoPlan``.

One request to the model: a system prompt stating the plan's JSON schema (generated from
``DoPlan``) and a user message with the intent and the repository's tracked files (so the
model can say which files each task touches). The reply must be one JSON object, bare or in
a ```` ```json ```` fence, that passes the same checks as a ``--plan`` file
(``validate_do_plan``). An invalid reply is answered once with the one-line problem and the
model tries again; a second invalid reply is refused with one line.

The planner is a library function: the engine resolves the model (``ModelCatalog.resolve``)
and calls ``plan_intent``; nothing here spawns an agent.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.errors import InvalidInput
from core.llm.catalog_types import ResolvedModel
from core.llm.clients import make_client
from core.llm.prices import cost
from core.llm.types import (
    ChatMessage,
    ChatRequest,
    Finish,
    LLMClient,
    LLMError,
    TextDelta,
    UsageLimited,
    UsageReport,
)
from core.models import Usage
from core.work.git import git
from core.work.plan import DoPlan, validate_do_plan

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_LISTED_FILES",
    "PLANNER_SYSTEM_PROMPT",
    "PlanResult",
    "parse_plan_reply",
    "plan_intent",
    "planner_user_message",
    "repo_files",
]

MAX_ATTEMPTS = 2  # the first reply, and one more after it was told what was wrong
MAX_LISTED_FILES = 200  # tracked files shown to the model; enough to name paths, not a dump

# The first line is how a scripted model recognises a planner request (``system_regex``).
PLANNER_SYSTEM_PROMPT = """You are the planner of Godel, a control plane for AI coding agents.
Split the user's intent into tasks. Each task is run by its own coding agent in its own git
worktree of the repository, then gated and merged. Keep tasks independent where you can;
when a task needs another's changes, name that task in "depends_on" (no cycles). Give every
task a short "name" (letters, digits, ".", "_" and "-" only; it becomes a branch name), an
"input" that is the full instruction its agent receives, the repository "files" it is
expected to touch, and optionally "skills". Leave "runtime" and "model" out unless the
intent asks for a particular one.

Reply with exactly one JSON object and nothing else (no prose; a ```json fence is
accepted). It must match this JSON schema:

{schema}"""

RETRY_MESSAGE = (
    "That reply is not a valid plan: {problem}. Reply again with the corrected JSON object only."
)

_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


class PlanResult(BaseModel):
    """A plan the model made, and what asking for it cost."""

    plan: DoPlan
    model: str  # Godel's name of the model that planned
    usage: Usage  # summed over the attempts
    cost_usd: Decimal | None  # None: the model's price is unknown (never guessed as zero)
    attempts: int  # requests made: 1, or 2 when the first reply was invalid


def system_prompt() -> str:
    schema = json.dumps(DoPlan.model_json_schema(), separators=(",", ":"))
    return PLANNER_SYSTEM_PROMPT.format(schema=schema)


async def repo_files(repo: Path, limit: int = MAX_LISTED_FILES) -> tuple[list[str], int]:
    """The first ``limit`` tracked files of ``repo`` (``git ls-files``) and how many there are.

    A path that is not a git repository fails with git's one line (``RuntimeFailure``).
    """
    out = await git(repo, "ls-files", "-z")
    paths = [p for p in out.stdout.split("\0") if p]
    return paths[:limit], len(paths)


def planner_user_message(intent: str, files: list[str], total: int) -> str:
    if not files:
        listing = "The repository has no tracked files yet."
    else:
        shown = f"all {total}" if len(files) == total else f"the first {len(files)} of {total}"
        listing = f"Tracked files ({shown}, from git ls-files):\n" + "\n".join(files)
    return f"Intent: {intent}\n\n{listing}"


def _json_text(text: str) -> str:
    """The JSON part of a reply: the whole reply, or the first fenced block in it."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return stripped
    fenced = _FENCE.search(text)
    if fenced is not None:
        return fenced.group(1).strip()
    return stripped


def parse_plan_reply(text: str, where: str) -> DoPlan:
    """The plan in a model's reply (a bare JSON object or one in a ```json fence), or
    ``InvalidInput`` with one line naming the problem."""
    body = _json_text(text)
    if not body:
        raise InvalidInput(f"plan {where}: the reply is empty")
    try:
        raw: Any = json.loads(body)
    except json.JSONDecodeError as e:
        raise InvalidInput(
            f"plan {where}: the reply is not a JSON object (bare or in a ```json fence): "
            f"{e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"plan {where}: the reply is JSON but not an object")
    return validate_do_plan(raw, where)


def _problem(e: InvalidInput, where: str) -> str:
    """The problem alone, without the ``plan <where>:`` prefix (a cycle says ``plan:``)."""
    return e.message.removeprefix(f"plan {where}: ").removeprefix("plan: ")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_read_tokens=a.cache_read_tokens + b.cache_read_tokens,
        cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
    )


async def _ask(client: LLMClient, request: ChatRequest) -> tuple[str, Usage, Finish]:
    text: list[str] = []
    usage = Usage()
    finish = Finish(stop_reason="error", error="the stream ended without a finish")
    async for ev in client.stream(request):
        if isinstance(ev, TextDelta):
            text.append(ev.text)
        elif isinstance(ev, UsageReport):
            usage = ev.usage
        elif isinstance(ev, Finish):
            finish = ev
    return "".join(text), usage, finish


async def plan_intent(
    intent: str,
    repo: Path,
    model: ResolvedModel,
    *,
    client: LLMClient | None = None,
    timeout: float = 600,
    max_retries: int = 3,
    max_files: int = MAX_LISTED_FILES,
) -> PlanResult:
    """Ask ``model`` to plan ``intent`` in the git repository ``repo``.

    ``model`` is what ``ModelCatalog.resolve`` returns (endpoint, key, prices); ``client``
    replaces the client made for it (the caller then closes it). ``timeout`` and
    ``max_retries`` are the HTTP client's (as the native runtime's ``request_timeout`` and
    ``max_retries``).

    Raises ``InvalidInput`` (one line) for an empty intent or when both replies are not a
    valid plan, ``LLMError`` (one line) when the endpoint fails, and ``RuntimeFailure``
    when ``repo`` is not a git repository.
    """
    if not intent.strip():
        raise InvalidInput("the intent is empty: say what the change should do")
    files, total = await repo_files(repo, max_files)
    messages = [ChatMessage(role="user", content=planner_user_message(intent, files, total))]
    where = f"from model {model.name}"
    usage = Usage()
    total_cost: Decimal | None = Decimal(0) if model.prices is not None else None
    own = client is None
    llm = (
        client
        if client is not None
        else make_client(model, timeout=timeout, max_retries=max_retries)
    )
    problem = ""
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            request = ChatRequest(
                model=model.upstream_id,
                system=system_prompt(),
                messages=messages,
                max_tokens=model.max_tokens,
            )
            try:
                text, turn_usage, finish = await _ask(llm, request)
            except LLMError as e:
                data = {k: v for k, v in e.data.items() if k != "kind"}
                data["model"] = model.name
                if isinstance(e, UsageLimited):
                    data["retry_after"] = e.retry_after
                raise LLMError(
                    _one_line(f"planning with model {model.name!r} failed: {e.message}"), **data
                ) from None
            usage = _add(usage, turn_usage)
            turn_cost = cost(turn_usage, model.prices)
            if total_cost is not None and turn_cost is not None:
                total_cost += turn_cost
            if finish.stop_reason == "error":
                raise LLMError(
                    _one_line(
                        f"planning with model {model.name!r} failed: "
                        f"{finish.error or 'the model returned an error'}"
                    ),
                    model=model.name,
                )
            try:
                if finish.stop_reason == "length":
                    raise InvalidInput(
                        f"plan {where}: the reply was cut at the max_tokens limit "
                        f"({model.max_tokens}); make the plan shorter"
                    )
                plan = parse_plan_reply(text, where)
            except InvalidInput as e:
                problem = _one_line(_problem(e, where))
                messages = [
                    *messages,
                    ChatMessage(role="assistant", content=text),
                    ChatMessage(role="user", content=RETRY_MESSAGE.format(problem=problem)),
                ]
                continue
            return PlanResult(
                plan=plan, model=model.name, usage=usage, cost_usd=total_cost, attempts=attempt
            )
    finally:
        if own:
            await llm.aclose()
    raise InvalidInput(
        f"the model {model.name} gave no valid plan after {MAX_ATTEMPTS} tries: {problem}",
        model=model.name,
        attempts=MAX_ATTEMPTS,
        # What the failed attempts cost is still spent: the caller may charge it.
        usage=usage.model_dump(),
        cost_usd=None if total_cost is None else str(total_cost),
    )
