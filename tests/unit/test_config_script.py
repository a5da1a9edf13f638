"""``[providers.NAME] script``: a scripted provider's own script, read from real config
files, and one scripted model server per distinct script (``LazyScriptedServer``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.config import LoadedConfig, load_config
from core.engine.build import LazyScriptedServer
from core.errors import ConfigError
from core.llm.catalog import ModelCatalog

KNOWN = ("shell", "native")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def script(path: Path, answer: str) -> Path:
    return write(path, json.dumps({"rules": [{"reply": {"text": answer}}]}))


def load(project: Path, user_file: Path) -> LoadedConfig:
    return load_config(KNOWN, cwd=project, user_file=user_file)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    return root


@pytest.fixture
def no_user(tmp_path: Path) -> Path:
    return tmp_path / "missing-user-config.toml"


@pytest.fixture
async def lazy() -> AsyncIterator[LazyScriptedServer]:
    servers = LazyScriptedServer()
    try:
        yield servers
    finally:
        await servers.close()


PROVIDERS = """
[providers.plan]
kind = "openai"
scripted = true
script = "{script}"

[models.planner]
provider = "plan"
"""


def test_a_relative_script_is_read_from_the_project_root(project: Path, no_user: Path) -> None:
    script(project / "scripts" / "plan.json", "planned")
    write(project / ".godel" / "config.toml", PROVIDERS.format(script="scripts/plan.json"))
    provider = load(project, no_user).config.providers["plan"]
    assert provider.script == project / "scripts" / "plan.json"


def test_a_user_files_script_is_relative_to_that_file(tmp_path: Path, project: Path) -> None:
    user = write(tmp_path / "home" / "godel.toml", PROVIDERS.format(script="plan.json"))
    script(tmp_path / "home" / "plan.json", "planned")
    assert load(project, user).config.providers["plan"].script == tmp_path / "home" / "plan.json"


def test_a_missing_script_is_one_line(project: Path, no_user: Path) -> None:
    cfg = write(project / ".godel" / "config.toml", PROVIDERS.format(script="nope.json"))
    with pytest.raises(ConfigError) as info:
        load(project, no_user)
    assert info.value.message == (
        f"{cfg}: providers.plan.script: cannot read the script {project / 'nope.json'}: "
        "No such file or directory"
    )


def test_a_script_on_a_provider_that_is_not_scripted_is_refused(
    project: Path, no_user: Path
) -> None:
    script(project / "plan.json", "x")
    cfg = write(
        project / ".godel" / "config.toml",
        '[providers.real]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'script = "plan.json"\n',
    )
    with pytest.raises(ConfigError) as info:
        load(project, no_user)
    assert info.value.message == (
        f"{cfg}: providers.real: script is only for a scripted provider: set scripted = true "
        "or remove it"
    )


async def answer(base_url: str) -> str:
    body = {"model": "m", "stream": False, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient() as client:
        r = await client.post(base_url + "/chat/completions", json=body)
    return str(r.json()["choices"][0]["message"]["content"])


async def test_each_script_gets_its_own_server(
    project: Path, no_user: Path, lazy: LazyScriptedServer
) -> None:
    script(project / "a.json", "from a")
    script(project / "b.json", "from b")
    write(
        project / ".godel" / "config.toml",
        PROVIDERS.format(script="a.json")
        + '[providers.other]\nkind = "openai"\nscripted = true\nscript = "b.json"\n'
        + '[models.second]\nprovider = "other"\n'
        + '[providers.also-a]\nkind = "openai"\nscripted = true\nscript = "a.json"\n'
        + '[models.third]\nprovider = "also-a"\n',
    )
    catalog = ModelCatalog(load(project, no_user).config, scripted_url=lazy.url)
    a, b, a2, default = [
        await catalog.resolve(n) for n in ("planner", "second", "third", "scripted")
    ]
    assert a.base_url == a2.base_url  # keyed by the script's path
    assert len({a.base_url, b.base_url, default.base_url}) == 3
    assert await answer(a.base_url) == "from a"
    assert await answer(b.base_url) == "from b"
    assert await answer(default.base_url) == "You said: hi"  # the bundled script


async def test_an_invalid_script_is_one_line_when_its_model_is_used(
    project: Path, no_user: Path, lazy: LazyScriptedServer
) -> None:
    bad = write(
        project / "plan.json",
        '{"rules": [{"match": {"system_regex": "("}, "reply": {"text": "x"}}]}',
    )
    write(project / ".godel" / "config.toml", PROVIDERS.format(script="plan.json"))
    catalog = ModelCatalog(load(project, no_user).config, scripted_url=lazy.url)
    with pytest.raises(ConfigError) as info:
        await catalog.resolve("planner")
    assert info.value.message == (
        f"{bad}: rule 0: match.system_regex: invalid regex '(': missing ), unterminated "
        "subpattern at position 0"
    )
    # The default script's server is unaffected.
    assert (await catalog.resolve("scripted")).base_url.startswith("http://127.0.0.1:")
