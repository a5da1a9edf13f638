"""The ``:`` grammar, its plans and completion, the help and palette built from the
registries, the command history, and the ``[tui]`` config section: all pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import GodelConfig, TuiSettings, load_tui_settings
from core.errors import ConfigError
from godel_tui.actions import ACTIONS, BY_ID
from godel_tui.command_runner import summarize
from godel_tui.commands import (
    SPECS,
    Abort,
    Call,
    CommandError,
    Exec,
    Filter,
    Help,
    Kill,
    Quit,
    Restart,
    Scale,
    Sort,
    Spawn,
    Steer,
    Strategy,
    Submit,
    SwarmInfo,
    common_prefix,
    complete,
    describe,
    parse,
    plan,
)
from godel_tui.palette import READ_ONLY, entries
from godel_tui.screens.command_line import History, hint
from godel_tui.screens.help import help_sections, key_display, plain_text

# --- parse ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("spawn shell", Spawn("shell")),
        (":spawn shell 2", Spawn("shell", 2)),
        ("spawn pi --model m1 --name bob", Spawn("pi", 1, None, "m1", "bob")),
        ("spawn shell 3 --swarm=api", Spawn("shell", 3, "api")),
        ("kill", Kill()),
        ("kill a-1 builder", Kill(("a-1", "builder"))),
        ("restart", Restart()),
        ('exec echo "a  b" | wc -c', Exec('echo "a  b" | wc -c')),
        ('prompt "fix the failing test"', Exec("fix the failing test")),
        ("steer use the other file", Steer("use the other file")),
        ("abort", Abort()),
        ("submit echo hi", Submit("echo hi")),
        (
            "submit echo hi --swarm api --priority high",
            Submit("echo hi", "api", "high"),
        ),
        ("submit --priority=LOW make test", Submit("make test", None, "low")),
        ('submit "ls --swarm x" --swarm api', Submit("ls --swarm x", "api")),
        ("scale api 0", Scale("api", 0)),
        ("strategy api least_loaded", Strategy("api", "least_loaded")),
        ("filter status:busy !swarm:api", Filter("status:busy !swarm:api")),
        ("filter", Filter("")),
        ("sort cost", Sort("cost")),
        ("sort -tokens", Sort("tokens", True)),
        ("help", Help()),
        ("q", Quit()),
        ("QUIT", Quit()),
    ],
)
def test_parse(line: str, command: object) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("", "type a command"),
        ("spwn shell", "unknown command 'spwn' (did you mean spawn?)"),
        ("frobnicate", "commands: spawn, kill"),
        ("spawn", "spawn needs a RUNTIME"),
        ("spawn shell two", "N must be a whole number, got 'two'"),
        ("spawn shell 0", "N must be from 1 to 100"),
        ("spawn shell 101", "N must be from 1 to 100"),
        ("spawn shell 2 --name a", "--name names one agent"),
        ("spawn shell --color red", "unknown option --color (options: --swarm, --model, --name)"),
        ("spawn shell --model", "--model needs a value"),
        ("spawn shell --model a --model b", "--model is given twice"),
        ("spawn shell 1 2", "unexpected '2'"),
        ("kill 'a-1", "no closing quotation"),
        ("exec", "exec needs TEXT"),
        ("steer   ", "steer needs TEXT"),
        ("submit --swarm api", "submit needs TEXT"),
        ("submit hi --priority urgent", "unknown priority 'urgent'"),
        ("scale api", "scale needs SWARM and N"),
        ("scale api -1", "N must be from 0 to 5000"),
        ("strategy api", "strategy needs SWARM and a strategy NAME"),
        ("filter colour:red", "unknown filter key 'colour'"),
        ("sort", "sort needs one KEY"),
        ("sort colour", "cannot sort by 'colour'"),
        ("quit now", "quit takes no arguments"),
    ],
)
def test_bad_lines_name_the_problem_and_the_usage(line: str, says: str) -> None:
    with pytest.raises(CommandError) as e:
        parse(line)
    message = str(e.value)
    assert says in message
    assert "\n" not in message
    if line.strip() and line.split()[0] in ("spawn", "kill", "exec", "submit", "scale", "sort"):
        assert "; usage: :" in message


# --- plan -------------------------------------------------------------------------------


def test_spawn_plans_one_call_per_agent() -> None:
    calls = plan(Spawn("shell", 2, model="m"), [], {})
    assert calls == [Call("agent.spawn", {"runtime": "shell", "model": "m"})] * 2


def test_spawn_into_a_swarm_creates_it_or_grows_it() -> None:
    assert plan(Spawn("shell", 3, "api"), [], {}) == [
        Call("swarm.create", {"name": "api", "runtime": "shell", "count": 3})
    ]
    swarms = {"api": SwarmInfo("shell", 2)}
    assert plan(Spawn("shell", 3, "api"), [], swarms) == [
        Call("swarm.scale", {"name": "api", "count": 5})
    ]
    with pytest.raises(CommandError, match="runs shell agents, not pi"):
        plan(Spawn("pi", 1, "api"), [], swarms)
    with pytest.raises(CommandError, match="--model applies to a new swarm"):
        plan(Spawn("shell", 1, "api", "m"), [], swarms)


def test_agent_commands_use_the_ids_given_else_the_targets() -> None:
    assert plan(Kill(("x",)), ["a", "b"], {}) == [Call("agent.kill", {"id": "x"})]
    assert plan(Kill(), ["a", "b"], {}) == [
        Call("agent.kill", {"id": "a"}),
        Call("agent.kill", {"id": "b"}),
    ]
    assert plan(Exec("ls"), ["a"], {}) == [Call("agent.exec", {"id": "a", "input": "ls"})]
    assert plan(Steer("go"), ["a"], {}) == [Call("agent.steer", {"id": "a", "message": "go"})]
    assert plan(Abort(), ["a"], {}) == [Call("agent.abort", {"id": "a"})]
    with pytest.raises(CommandError, match="no agent marked or selected"):
        plan(Exec("ls"), [], {})


def test_swarm_and_task_commands_plan_their_rpc_params() -> None:
    assert plan(Submit("echo hi", "api", "high"), [], {}) == [
        Call("task.submit", {"tasks": [{"input": "echo hi", "priority": "high", "swarm": "api"}]})
    ]
    assert plan(Scale("api", 4), [], {}) == [Call("swarm.scale", {"name": "api", "count": 4})]
    assert plan(Strategy("api", "random"), [], {}) == [
        Call("swarm.strategy", {"name": "api", "strategy": "random"})
    ]


def test_describe_reads_results_and_survives_odd_shapes() -> None:
    spawn = Call("agent.spawn", {"runtime": "shell"})
    assert describe(spawn, {"id": "a-1", "runtime": "shell"}) == "spawned shell agent a-1"
    assert describe(spawn, None) == "spawned shell agent ?"
    run = Call("agent.exec", {"id": "a-1", "input": "false"})
    assert describe(run, {"status": "failed", "exit_code": 1}) == "exec on a-1: failed (exit 1)"
    scale = Call("swarm.scale", {"name": "api", "count": 3})
    assert "1 failed to spawn: boom" in describe(scale, {"failures": ["boom"]})
    submit = Call("task.submit", {"tasks": []})
    assert describe(submit, [{"id": "t-1", "status": "ready"}]) == "queued task t-1 (ready)"


def test_many_outcomes_are_summed_up() -> None:
    few = summarize("kill", [(True, "killed a"), (False, "no agent b")])
    assert few == [("killed a", False), ("no agent b", True)]
    many = summarize("spawn", [(True, "ok")] * 4 + [(False, "boom")] * 2)
    assert many == [(":spawn: 4 of 6 done", True), ("boom", True)]


# --- completion and history ---------------------------------------------------------------


def test_tab_completes_commands_and_names() -> None:
    names = {"runtime": ["shell", "pi"], "strategy": ["least_loaded", "random"], "swarm": ["api"]}
    assert complete("sp", names) == ["spawn "]
    assert complete("s", names) == ["scale ", "sort ", "spawn ", "steer ", "strategy ", "submit "]
    assert common_prefix(complete("st", names)) == "st"
    assert complete("spawn s", names) == ["spawn shell "]
    assert complete("spawn shell 2 --swarm ", names) == ["spawn shell 2 --swarm api "]
    assert complete("strategy api r", names) == ["strategy api random "]
    assert complete("scale ", names) == ["scale api "]
    assert complete("submit x --priority h", names) == ["submit x --priority high "]
    assert complete("sort co", names) == ["sort cost "]
    assert complete("nope x", names) == []


def test_history_walks_back_and_returns_to_the_draft() -> None:
    h = History()
    for line in ("spawn shell", "kill", "kill"):
        h.add(line)
    assert h.lines == ["spawn shell", "kill"]
    assert h.older("sc") == "kill"
    assert h.older("kill") == "spawn shell"
    assert h.older("spawn shell") is None
    assert h.newer() == "kill"
    assert h.newer() == "sc"
    assert h.newer() is None


def test_the_hint_says_the_usage_of_the_command_typed() -> None:
    assert hint("scale a") == ":scale SWARM N  —  Spawn or stop agents until the swarm has N."
    assert hint("").startswith("commands: spawn")


# --- help and palette, from the registries --------------------------------------------------


def test_help_lists_the_pane_keys_as_bound_the_filter_grammar_and_commands() -> None:
    text = plain_text(help_sections("swarm", {"agent.kill": "K,ctrl+x"}, read_only=False))
    assert "Keys: agents pane" in text
    assert f"K ctrl+x  {BY_ID['agent.kill'].help}" in text
    assert f"?  {BY_ID['app.help'].help}" in text
    assert "status:busy runtime:pi !swarm:api" in text  # the filter grammar
    for spec in SPECS:
        assert f":{spec.usage}" in text
    assert "log pane" not in text  # only the focused pane's keys, and the app's


def test_help_marks_what_read_only_disables() -> None:
    text = plain_text(help_sections("swarm", {}, read_only=True))
    assert f"{BY_ID['agent.kill'].help} (disabled: read-only)" in text
    assert f"{BY_ID['swarm.mark'].help} (disabled" not in text


def test_key_display() -> None:
    assert key_display("question_mark") == "?"
    assert key_display("ctrl+backslash,colon") == "ctrl+\\ :"


def test_palette_entries_come_from_the_registry_and_say_what_they_act_on() -> None:
    es = entries(marked=3, selected="builder-1", read_only=False, keymap={})
    titles = [e.title for e in es]
    assert "Kill 3 marked agents" in titles
    shown = {a.id for a in ACTIONS} - {"app.palette"}
    assert {a.id for a in ACTIONS if a.pane != "replay"} - {"app.palette"} == {
        a.id for a in ACTIONS if any(e.action == a.action for e in es)
    } & shown
    in_replay = entries(marked=0, selected=None, read_only=True, keymap={}, replay=True)
    assert {e.action for e in in_replay} >= {a.action for a in ACTIONS if a.id in shown}
    assert "Log: Search" in titles
    assert ":scale SWARM N" in titles
    one = entries(marked=0, selected="builder-1", read_only=False, keymap={"agent.kill": "K"})
    kill = next(e for e in one if e.action == "kill")
    assert kill.title == "Kill builder-1" and kill.help.endswith("[K]")
    none = entries(marked=0, selected=None, read_only=False, keymap={})
    assert "Kill (no agent selected)" in [e.title for e in none]


def test_read_only_palette_shows_state_changes_disabled() -> None:
    es = entries(marked=0, selected="a", read_only=True, keymap={})
    by_title = {e.title: e for e in es}
    assert by_title["Kill a"].disabled == READ_ONLY
    assert by_title[":spawn RUNTIME [N] [--swarm S] [--model M] [--name NAME]"].disabled
    assert by_title["Filter"].disabled is None


# --- [tui] in the config ------------------------------------------------------------------


def test_tui_keymap_is_checked_for_key_syntax() -> None:
    ok = TuiSettings.model_validate({"keymap": {"agent.kill": "K, ctrl+x", "app.help": "f1"}})
    assert ok.keymap == {"agent.kill": "K,ctrl+x", "app.help": "f1"}
    assert GodelConfig.model_validate({"tui": {"keymap": {"x.y": "?"}}}).tui.keymap == {"x.y": "?"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('[tui.keymap]\n"agent.kill" = "ctrl+"', "'ctrl+' names no key after its +"),
        ('[tui.keymap]\n"agent.kill" = "hyprr+k"', "unknown modifier 'hyprr'"),
        ('[tui.keymap]\n"agent.kill" = "k,,x"', "an empty key"),
        ('[tui.keymap]\n"agent.kill" = "page up"', "'page up' is not a key name"),
        ('[tui.keymap]\n"kill" = "k"', "'kill' is not an action id"),
        ("[tui]\nkeymp = {}", "unknown key 'keymp' (did you mean 'keymap'?)"),
        ("tui = 3", "tui: expected a table, got 3"),
    ],
)
def test_a_bad_tui_section_is_one_line_naming_file_and_key(
    tmp_path: Path, body: str, says: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_tui_settings(cwd=tmp_path, user_file=config)
    assert e.value.message.startswith(f"{config}: tui")
    assert says in e.value.message
    assert "\n" not in e.value.message


def test_the_project_keymap_merges_over_the_user_keymap(tmp_path: Path) -> None:
    user = tmp_path / "user.toml"
    user.write_text('[tui.keymap]\n"agent.kill" = "K"\n"app.help" = "f1"\n')
    project = tmp_path / "repo" / ".godel" / "config.toml"
    project.parent.mkdir(parents=True)
    # Sections the console cannot check (it knows no runtimes) do not stop it.
    project.write_text('[defaults]\nruntime = "nosuch"\n[tui.keymap]\n"agent.kill" = "ctrl+x"\n')
    settings = load_tui_settings(cwd=project.parent.parent, user_file=user)
    assert settings.keymap == {"agent.kill": "ctrl+x", "app.help": "f1"}
