"""``core.work.planner``: a real scripted model server on loopback answers the planner's
requests, in a real git repository; usage and cost come from what the server reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.config import GodelConfig
from core.errors import InvalidInput, RuntimeFailure
from core.llm.catalog import ModelCatalog
from core.llm.catalog_types import ResolvedModel
from core.llm.scripted import Script, ScriptedServer
from core.llm.types import LLMError
from core.models import Usage
from core.work.git import git
from core.work.plan import load_do_plan, validate_do_plan
from core.work.planner import MAX_LISTED_FILES, plan_intent
from tests.gitrepo import GIT_ENV, init_repo

PLANNER = "^You are the planner of Godel"
PLAN = {
    "tasks": [
        {"name": "api", "input": "add the endpoint", "files": ["src/app.py"]},
        {
            "name": "docs",
            "input": "document it",
            "depends_on": ["api"],
            "files": ["README.md"],
            "skills": ["writing"],
            "model": "scripted",
        },
    ]
}
USAGE = {"input_tokens": 1000, "output_tokens": 200}
# $3 / $15 per million tokens: 1000 in + 200 out = $0.006 per request.
PRICES = {"input_per_mtok": 3, "output_per_mtok": 15}
ONE_REQUEST_USD = Decimal("0.006")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with a few tracked files; git's identity from the environment only."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    return init_repo(
        tmp_path / "repo",
        {"src/app.py": "print('hi')\n", "README.md": "# app\n"},
        untracked={"untracked.txt": "not in git\n"},
    )


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(Script(rules=[])) as s:
        yield s


def use(server: ScriptedServer, *rules: dict[str, Any]) -> None:
    server.use_script(Script.model_validate({"rules": list(rules)}))


def plan_rule(text: str, **match: Any) -> dict[str, Any]:
    return {"match": {"system_regex": PLANNER, **match}, "reply": {"text": text, "usage": USAGE}}


async def resolve(
    server: ScriptedServer, *, kind: str = "openai", prices: bool = True
) -> ResolvedModel:
    """The model as the engine gets it: the config's provider and model, resolved by the
    catalog, the scripted server's URL handed in."""
    config = GodelConfig.model_validate(
        {
            "providers": {"plan": {"kind": kind, "scripted": True}},
            "models": {"planner": {"provider": "plan", **(PRICES if prices else {})}},
        }
    )

    async def url(script: Path | None) -> str:
        assert script is None
        return server.base_url

    return await ModelCatalog(config, scripted_url=url).resolve("planner")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_valid_plan_with_usage_and_cost(
    repo: Path, server: ScriptedServer, kind: str
) -> None:
    use(server, plan_rule(json.dumps(PLAN), user_regex="^Intent: add an endpoint\n"))
    result = await plan_intent("add an endpoint", repo, await resolve(server, kind=kind))
    assert result.plan.model_dump(exclude_defaults=True) == PLAN
    assert [[t.name for t in lv] for lv in result.plan.levels()] == [["api"], ["docs"]]
    assert result.model == "planner" and result.attempts == 1
    assert result.usage == Usage(**USAGE)
    assert result.cost_usd == ONE_REQUEST_USD
    # What the model was shown: the schema, and the tracked files (not the untracked one).
    (req,) = server.requests
    body = json.dumps(req.body)
    assert '\\"depends_on\\"' in body and "JSON schema" in body
    user = req.body["messages"][-1]["content"]
    if kind == "anthropic":
        user = user if isinstance(user, str) else user[0]["text"]
    assert "README.md\nsrc/app.py" in user and "untracked.txt" not in user
    assert "Tracked files (all 2, from git ls-files)" in user


async def test_a_fenced_plan_is_accepted(repo: Path, server: ScriptedServer) -> None:
    fenced = f"Here is the plan:\n\n```json\n{json.dumps(PLAN, indent=2)}\n```\nGood luck."
    use(server, plan_rule(fenced))
    result = await plan_intent("add an endpoint", repo, await resolve(server))
    assert [t.name for t in result.plan.tasks] == ["api", "docs"] and result.attempts == 1


async def test_an_invalid_reply_is_retried_once_with_the_problem(
    repo: Path, server: ScriptedServer
) -> None:
    bad = {"tasks": [{"name": "api", "input": "x", "depends_on": ["nope"]}]}
    use(
        server,
        plan_rule(json.dumps(bad), nth_request=1),
        plan_rule(json.dumps(PLAN), user_regex="^That reply is not a valid plan"),
    )
    result = await plan_intent("add an endpoint", repo, await resolve(server))
    assert result.attempts == 2 and [t.name for t in result.plan.tasks] == ["api", "docs"]
    # Both requests are counted and priced.
    assert result.usage == Usage(input_tokens=2000, output_tokens=400)
    assert result.cost_usd == 2 * ONE_REQUEST_USD
    retry = server.requests[1].body["messages"]
    assert retry[-2] == {"role": "assistant", "content": json.dumps(bad)}
    assert retry[-1]["content"] == (
        "That reply is not a valid plan: task 'api' depends on 'nope', which is not in the "
        "plan. Reply again with the corrected JSON object only."
    )


async def test_two_invalid_replies_are_one_line(repo: Path, server: ScriptedServer) -> None:
    use(server, plan_rule('{"tasks": [{"name": "no spaces", "input": "x"}]}'))
    with pytest.raises(InvalidInput) as info:
        await plan_intent("add an endpoint", repo, await resolve(server, prices=False))
    msg = info.value.message
    assert msg.startswith("the model planner gave no valid plan after 2 tries: tasks.0.name: ")
    assert "\n" not in msg and len(server.requests) == 2
    # The spend of the failed attempts is still reported; unknown price, unknown cost.
    assert info.value.data["usage"]["input_tokens"] == 2000
    assert info.value.data["cost_usd"] is None


async def test_prose_and_cycles_are_invalid_replies(repo: Path, server: ScriptedServer) -> None:
    cycle = {
        "tasks": [
            {"name": "a", "input": "x", "depends_on": ["b"]},
            {"name": "b", "input": "y", "depends_on": ["a"]},
        ]
    }
    use(
        server,
        plan_rule("Sure! I would split it in two.", nth_request=1),
        plan_rule(json.dumps(cycle)),
    )
    with pytest.raises(InvalidInput) as info:
        await plan_intent("add an endpoint", repo, await resolve(server))
    assert info.value.message == (
        "the model planner gave no valid plan after 2 tries: "
        "the tasks a, b depend on each other in a cycle"
    )
    first_problem = server.requests[1].body["messages"][-1]["content"]
    assert first_problem.startswith(
        "That reply is not a valid plan: the reply is not a JSON object (bare or in a ```json "
        "fence): Expecting value at line 1 column 1"
    )


async def test_an_http_error_is_one_line(repo: Path, server: ScriptedServer) -> None:
    use(
        server,
        {
            "match": {"system_regex": PLANNER},
            "reply": {"error": {"status": 400, "message": "scripted refusal:\nbad request"}},
        },
    )
    with pytest.raises(LLMError) as info:
        await plan_intent("add an endpoint", repo, await resolve(server))
    msg = info.value.message
    assert msg.startswith("planning with model 'planner' failed: openai endpoint http://")
    assert msg.endswith("HTTP 400: scripted refusal: bad request") and "\n" not in msg
    assert info.value.data["status"] == 400 and info.value.data["model"] == "planner"


async def test_a_server_error_is_retried_by_the_client_then_one_line(
    repo: Path, server: ScriptedServer
) -> None:
    use(server, {"match": {}, "reply": {"error": {"status": 503, "message": "overloaded"}}})
    with pytest.raises(LLMError) as info:
        await plan_intent("x", repo, await resolve(server), max_retries=1)
    assert "HTTP 503: overloaded (gave up after 2 attempts)" in info.value.message
    assert len(server.requests) == 2


async def test_the_bundled_script_plans_an_intent_as_one_task(
    repo: Path, scripted_server: ScriptedServer
) -> None:
    result = await plan_intent("write hello.txt: hi", repo, await resolve(scripted_server))
    (task,) = result.plan.tasks
    assert (task.name, task.input) == ("task", "write hello.txt: hi")
    # Its usage is the server's chars/4 estimate, not zero; the price is the config's.
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.cost_usd is not None and result.cost_usd > 0


async def test_the_file_listing_is_capped(repo: Path, server: ScriptedServer) -> None:
    many = repo / "many"
    many.mkdir()
    for i in range(MAX_LISTED_FILES + 5):
        (many / f"f{i:03}.txt").write_text("x")
    await git(repo, "add", "many")
    use(server, plan_rule(json.dumps(PLAN)))
    await plan_intent("x", repo, await resolve(server))
    user = server.requests[0].body["messages"][-1]["content"]
    total = MAX_LISTED_FILES + 7
    assert f"Tracked files (the first {MAX_LISTED_FILES} of {total}, from git" in user
    assert len(user.splitlines()) == 3 + MAX_LISTED_FILES


async def test_refusals_before_any_request(tmp_path: Path, server: ScriptedServer) -> None:
    use(server, plan_rule(json.dumps(PLAN)))
    model = await resolve(server)
    with pytest.raises(InvalidInput, match="the intent is empty"):
        await plan_intent("  ", tmp_path, model)
    with pytest.raises(RuntimeFailure, match="not a git repository"):
        await plan_intent("x", tmp_path, model)
    assert server.requests == []


def test_a_task_may_name_its_runtime_and_model(tmp_path: Path) -> None:
    plan = validate_do_plan(
        {"tasks": [{"name": "a", "input": "x", "runtime": "native", "model": " m "}]}, "t"
    )
    assert (plan.tasks[0].runtime, plan.tasks[0].model) == ("native", "m")
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"tasks": [{"name": "a", "input": "x", "runtime": " "}]}))
    with pytest.raises(InvalidInput) as info:
        load_do_plan(str(f))
    assert info.value.message == (
        f"plan {f}: tasks.0.runtime: must not be empty (leave it out to use the run's)"
    )
