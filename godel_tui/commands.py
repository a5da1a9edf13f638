"""The ``:`` command grammar (as k9s's), pure: a line -> a typed command -> JSON-RPC calls.

No Textual and no I/O here: ``parse`` turns what was typed into one of the command
dataclasses (or a one-line ``CommandError`` naming the problem and the usage), ``plan``
turns a command that changes state into the daemon calls it makes, ``describe`` says what
one call's result means, and ``complete`` offers the lines Tab can complete to.

Text arguments (``exec``, ``steer``, ``submit``) are the rest of the line as typed, so a
shell command keeps its own quoting; a text wholly inside one pair of quotes loses them.
``submit``'s options go before or after its text.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.models import TaskPriority
from godel_tui.filter import FilterError, parse_filter
from godel_tui.render import SORT_KEYS

SPAWN_MAX = 100  # agents one :spawn starts one by one; a swarm takes more
SCALE_MAX = 5000  # what swarm.scale accepts
PRIORITIES = tuple(p.value for p in TaskPriority)


class CommandError(ValueError):
    """What is wrong with a typed command: one line, with the usage when it helps."""


@dataclass(frozen=True)
class Spec:
    name: str
    args: str  # the usage after the name: "RUNTIME [N] [--swarm S]"
    help: str
    changes_state: bool
    aliases: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        return f"{self.name} {self.args}".strip()


SPECS: tuple[Spec, ...] = (
    Spec(
        "spawn",
        "RUNTIME [N] [--swarm S] [--model M] [--name NAME]",
        "Spawn N agents (default 1); with --swarm, create swarm S or grow it by N.",
        True,
    ),
    Spec("kill", "[ID...]", "Kill the agents named, else the marked or selected ones.", True),
    Spec(
        "restart",
        "[ID...]",
        "Restart the agents named, else the marked or selected ones (same spec and swarm).",
        True,
    ),
    Spec(
        "exec",
        "TEXT",
        "Run TEXT (a command, or a prompt) on the marked or selected agents.",
        True,
        aliases=("prompt",),
    ),
    Spec("steer", "TEXT", "Send TEXT to the running exec of the marked or selected agents.", True),
    Spec(
        "abort",
        "[ID...]",
        "Abort the running exec of the agents named, or marked, or selected.",
        True,
    ),
    Spec(
        "submit",
        "TEXT [--swarm S] [--priority P]",
        "Queue a task (P: critical, high, normal, low).",
        True,
    ),
    Spec("scale", "SWARM N", "Spawn or stop agents until the swarm has N.", True),
    Spec("strategy", "SWARM NAME", "Change how the swarm routes its tasks.", True),
    Spec("filter", "[TEXT]", "Filter the agents as / does (no TEXT: show all).", False),
    Spec("sort", "[-]KEY", "Sort the agents by KEY (-KEY: reversed).", False),
    Spec("runs", "", "Show the godel do runs, live (as D does).", False),
    Spec("help", "", "Show the keys, the filter grammar and these commands.", False),
    Spec("quit", "", "Leave the console (agents keep running).", False, aliases=("q",)),
)

BY_NAME: dict[str, Spec] = {n: s for s in SPECS for n in (s.name, *s.aliases)}


# --- the commands -----------------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    name: ClassVar[str] = "spawn"
    runtime: str
    count: int = 1
    swarm: str | None = None
    model: str | None = None
    agent_name: str | None = None


@dataclass(frozen=True)
class Kill:
    name: ClassVar[str] = "kill"
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Restart:
    name: ClassVar[str] = "restart"
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exec:
    name: ClassVar[str] = "exec"
    text: str


@dataclass(frozen=True)
class Steer:
    name: ClassVar[str] = "steer"
    text: str


@dataclass(frozen=True)
class Abort:
    name: ClassVar[str] = "abort"
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Submit:
    name: ClassVar[str] = "submit"
    text: str
    swarm: str | None = None
    priority: str = "normal"


@dataclass(frozen=True)
class Scale:
    name: ClassVar[str] = "scale"
    swarm: str
    count: int


@dataclass(frozen=True)
class Strategy:
    name: ClassVar[str] = "strategy"
    swarm: str
    strategy: str


@dataclass(frozen=True)
class Filter:
    name: ClassVar[str] = "filter"
    text: str = ""


@dataclass(frozen=True)
class Sort:
    name: ClassVar[str] = "sort"
    key: str
    reverse: bool = False


@dataclass(frozen=True)
class Runs:
    name: ClassVar[str] = "runs"


@dataclass(frozen=True)
class Help:
    name: ClassVar[str] = "help"


@dataclass(frozen=True)
class Quit:
    name: ClassVar[str] = "quit"


Command = (
    Spawn
    | Kill
    | Restart
    | Exec
    | Steer
    | Abort
    | Submit
    | Scale
    | Strategy
    | Filter
    | Sort
    | Runs
    | Help
    | Quit
)
StateCommand = Spawn | Kill | Restart | Exec | Steer | Abort | Submit | Scale | Strategy


def spec_of(command: Command) -> Spec:
    return BY_NAME[command.name]


# --- parsing ----------------------------------------------------------------------------


def parse(line: str) -> Command:
    """The command ``line`` asks for (a leading ``:`` is allowed); ``CommandError`` if none."""
    line = line.strip().removeprefix(":").strip()
    if not line:
        raise CommandError(f"type a command: {', '.join(s.name for s in SPECS)}")
    verb, _, rest = line.partition(" ")
    rest = rest.strip()
    spec = BY_NAME.get(verb.lower())
    if spec is None:
        close = difflib.get_close_matches(verb.lower(), list(BY_NAME), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise CommandError(
            f"unknown command {verb!r}{hint}; commands: {', '.join(s.name for s in SPECS)}"
        )
    try:
        return _PARSERS[spec.name](rest)
    except CommandError as e:
        raise CommandError(f"{e}; usage: :{spec.usage}") from None


def _words(rest: str) -> list[str]:
    try:
        return shlex.split(rest)
    except ValueError as e:  # "No closing quotation"
        raise CommandError(str(e).lower()) from None


def _options(words: list[str], names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Positional words and ``--name VALUE`` / ``--name=VALUE`` options (each once)."""
    positional: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and len(word) > 2:
            key, eq, value = word[2:].partition("=")
            if key not in names:
                known = ", ".join(f"--{n}" for n in names) or "none"
                raise CommandError(f"unknown option --{key} (options: {known})")
            if not eq:
                if i + 1 >= len(words):
                    raise CommandError(f"--{key} needs a value")
                i += 1
                value = words[i]
            if not value:
                raise CommandError(f"--{key} needs a value")
            if key in options:
                raise CommandError(f"--{key} is given twice")
            options[key] = value
        else:
            positional.append(word)
        i += 1
    return positional, options


def _count(word: str, what: str, lo: int, hi: int) -> int:
    try:
        n = int(word)
    except ValueError:
        raise CommandError(f"{what} must be a whole number, got {word!r}") from None
    if not lo <= n <= hi:
        raise CommandError(f"{what} must be from {lo} to {hi}, got {n}")
    return n


def _spawn(rest: str) -> Spawn:
    words, opts = _options(_words(rest), ("swarm", "model", "name"))
    if not words:
        raise CommandError("spawn needs a RUNTIME (shell, native, pi...)")
    if len(words) > 2:
        raise CommandError(f"unexpected {words[2]!r}")
    swarm = opts.get("swarm")
    count = 1
    if len(words) == 2:
        hi = SCALE_MAX if swarm else SPAWN_MAX
        count = _count(words[1], "N", 1, hi)
    name = opts.get("name")
    if name is not None and (count > 1 or swarm):
        raise CommandError("--name names one agent outside a swarm (a swarm names its own)")
    return Spawn(words[0], count, swarm, opts.get("model"), name)


def _ids(rest: str) -> tuple[str, ...]:
    words, _ = _options(_words(rest), ())
    return tuple(words)


def _text(rest: str, what: str) -> str:
    text = _unquote(rest.strip())
    if not text.strip():
        raise CommandError(f"{what} needs TEXT")
    return text


def _unquote(text: str) -> str:
    """``"echo hi"`` -> ``echo hi`` when the whole text is one quoted word; else as typed."""
    if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        try:
            words = shlex.split(text)
        except ValueError:
            return text
        if len(words) == 1:
            return words[0]
    return text


def _spans(text: str) -> list[tuple[int, int]]:
    """Where each shell word of ``text`` starts and ends, quotes respected."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, quote = i, ""
        while i < n and (quote or not text[i].isspace()):
            c = text[i]
            if quote:
                if c == "\\" and quote == '"':
                    i += 1
                elif c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c == "\\":
                i += 1
            i += 1
        spans.append((start, min(i, n)))
    return spans


def _submit(rest: str) -> Submit:
    names = ("swarm", "priority")
    spans = _spans(rest)
    words = [rest[a:b] for a, b in spans]
    opts: dict[str, str] = {}

    def take(i: int) -> int:
        """Read the option at ``words[i]``; return how many words it used (0: none)."""
        word = words[i]
        if not word.startswith("--"):
            return 0
        key, eq, value = word[2:].partition("=")
        if key not in names:
            return 0
        used = 1
        if not eq:
            if i + 1 >= len(words):
                raise CommandError(f"--{key} needs a value")
            value, used = words[i + 1], 2
        if key in opts:
            raise CommandError(f"--{key} is given twice")
        opts[key] = _unquote(value)
        return used

    lo, hi = 0, len(words)
    while lo < hi and (used := take(lo)):
        lo += used
    # Trailing options: "--swarm S" or "--swarm=S" as the last words.
    while hi - lo >= 1:
        if hi - lo >= 2 and words[hi - 2] in ("--swarm", "--priority"):
            take(hi - 2)
            hi -= 2
        elif words[hi - 1].startswith(("--swarm=", "--priority=")):
            take(hi - 1)
            hi -= 1
        else:
            break
    if lo >= hi:
        raise CommandError("submit needs TEXT")
    text = _unquote(rest[spans[lo][0] : spans[hi - 1][1]])
    priority = opts.get("priority", "normal").lower()
    if priority not in PRIORITIES:
        raise CommandError(f"unknown priority {priority!r} (one of {', '.join(PRIORITIES)})")
    return Submit(text, opts.get("swarm"), priority)


def _scale(rest: str) -> Scale:
    words, _ = _options(_words(rest), ())
    if len(words) != 2:
        raise CommandError("scale needs SWARM and N")
    return Scale(words[0], _count(words[1], "N", 0, SCALE_MAX))


def _strategy(rest: str) -> Strategy:
    words, _ = _options(_words(rest), ())
    if len(words) != 2:
        raise CommandError("strategy needs SWARM and a strategy NAME")
    return Strategy(words[0], words[1])


def _filter(rest: str) -> Filter:
    try:
        parse_filter(rest)
    except FilterError as e:
        raise CommandError(str(e)) from None
    return Filter(rest.strip())


def _sort(rest: str) -> Sort:
    words = _words(rest)
    keys = ", ".join(SORT_KEYS)
    if len(words) != 1:
        raise CommandError(f"sort needs one KEY ({keys})")
    key = words[0].lower()
    reverse = key.startswith("-")
    key = key.removeprefix("-")
    if key not in SORT_KEYS:
        raise CommandError(f"cannot sort by {key!r} (keys: {keys})")
    return Sort(key, reverse)


def _bare(command: Command) -> Callable[[str], Command]:
    def parse_bare(rest: str) -> Command:
        if rest:
            raise CommandError(f"{command.name} takes no arguments")
        return command

    return parse_bare


_PARSERS: dict[str, Callable[[str], Command]] = {
    "spawn": _spawn,
    "kill": lambda rest: Kill(_ids(rest)),
    "restart": lambda rest: Restart(_ids(rest)),
    "exec": lambda rest: Exec(_text(rest, "exec")),
    "steer": lambda rest: Steer(_text(rest, "steer")),
    "abort": lambda rest: Abort(_ids(rest)),
    "submit": _submit,
    "scale": _scale,
    "strategy": _strategy,
    "filter": _filter,
    "sort": _sort,
    "runs": _bare(Runs()),
    "help": _bare(Help()),
    "quit": _bare(Quit()),
}


# --- planning: a command -> the calls it makes -------------------------------------------


@dataclass(frozen=True)
class Call:
    """One JSON-RPC call a command makes."""

    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class SwarmInfo:
    runtime: str
    desired: int
    model: str | None = None


NO_TARGETS = (
    "no agent marked or selected: select one, mark some with space, or name them (:{name} ID...)"
)


def plan(
    command: StateCommand, targets: Sequence[str], swarms: Mapping[str, SwarmInfo]
) -> list[Call]:
    """The calls ``command`` makes. ``targets``: the marked agents, else the selected one;
    ``swarms``: what the console knows of each swarm (to grow one)."""
    match command:
        case Spawn():
            return _plan_spawn(command, swarms)
        case Submit():
            task: dict[str, Any] = {"input": command.text, "priority": command.priority}
            if command.swarm:
                task["swarm"] = command.swarm
            return [Call("task.submit", {"tasks": [task]})]
        case Scale():
            return [Call("swarm.scale", {"name": command.swarm, "count": command.count})]
        case Strategy():
            return [Call("swarm.strategy", {"name": command.swarm, "strategy": command.strategy})]
        case _:
            pass
    agents = list(getattr(command, "ids", ()) or targets)
    if not agents:
        raise CommandError(NO_TARGETS.format(name=command.name))
    match command:
        case Kill():
            return [Call("agent.kill", {"id": a}) for a in agents]
        case Restart():
            return [Call("agent.restart", {"id": a}) for a in agents]
        case Abort():
            return [Call("agent.abort", {"id": a}) for a in agents]
        case Exec():
            return [Call("agent.exec", {"id": a, "input": command.text}) for a in agents]
        case Steer():
            return [Call("agent.steer", {"id": a, "message": command.text}) for a in agents]
    raise AssertionError(command)  # pragma: no cover - every command is matched above


def _plan_spawn(command: Spawn, swarms: Mapping[str, SwarmInfo]) -> list[Call]:
    if command.swarm is None:
        params: dict[str, Any] = {"runtime": command.runtime}
        if command.model:
            params["model"] = command.model
        if command.agent_name:
            params["name"] = command.agent_name
        return [Call("agent.spawn", dict(params)) for _ in range(command.count)]
    have = swarms.get(command.swarm)
    if have is None:
        params = {"name": command.swarm, "runtime": command.runtime, "count": command.count}
        if command.model:
            params["model"] = command.model
        return [Call("swarm.create", params)]
    if have.runtime != command.runtime:
        raise CommandError(
            f"swarm {command.swarm} runs {have.runtime} agents, not {command.runtime}"
        )
    if command.model and command.model != have.model:
        raise CommandError(
            f"swarm {command.swarm} exists with model {have.model or '(none)'}; "
            "--model applies to a new swarm"
        )
    count = have.desired + command.count
    if count > SCALE_MAX:
        raise CommandError(f"swarm {command.swarm} would have {count} agents (at most {SCALE_MAX})")
    return [Call("swarm.scale", {"name": command.swarm, "count": count})]


# --- what a result means ----------------------------------------------------------------


def describe(call: Call, result: Any) -> str:
    """One line saying what ``call`` did, from its result (shapes read defensively)."""
    p = call.params
    r: Mapping[str, Any] = result if isinstance(result, Mapping) else {}
    match call.method:
        case "agent.spawn":
            return f"spawned {r.get('runtime', p['runtime'])} agent {r.get('id', '?')}"
        case "agent.kill":
            return f"killed {p['id']}"
        case "agent.abort":
            return (
                f"aborted the exec of {p['id']}"
                if r.get("aborted")
                else (f"{p['id']} had no exec running")
            )
        case "agent.steer":
            return (
                f"steered {p['id']}"
                if r.get("delivered", True)
                else (f"{p['id']} did not take the message (no exec running?)")
            )
        case "agent.exec":
            code = r.get("exit_code")
            tail = f" (exit {code})" if code is not None else ""
            reason = f": {r['reason']}" if r.get("reason") else ""
            return f"exec on {p['id']}: {r.get('status', 'done')}{tail}{reason}"
        case "task.submit":
            tasks = result if isinstance(result, list) else []
            shown = ", ".join(f"{t.get('id')} ({t.get('status')})" for t in tasks[:3])
            return f"queued task {shown}" if shown else "queued the task"
        case "swarm.create" | "swarm.scale":
            failures = r.get("failures") or []
            verb = "created" if call.method == "swarm.create" else "scaled"
            say = f"{verb} swarm {p['name']}: {p['count']} agents"
            if failures:
                say += f"; {len(failures)} failed to spawn: {_first_failure(failures)}"
            return say
        case "swarm.strategy":
            return f"swarm {p['name']} routes with {p['strategy']}"
    return f"{call.method}: done"


def _first_failure(failures: Sequence[Any]) -> str:
    first = failures[0]
    if isinstance(first, Mapping):
        return str(first.get("error") or first.get("message") or first)
    return str(first)


# --- completion -------------------------------------------------------------------------


def complete(line: str, names: Mapping[str, Sequence[str]]) -> list[str]:
    """Whole lines ``line`` may complete to (sorted); ``names`` holds what the console
    knows: ``runtime``, ``strategy``, ``swarm`` names (any may be missing)."""
    if " " not in line.lstrip():
        word = line.strip().lower()
        return sorted(f"{n} " for n in BY_NAME if n.startswith(word) and len(n) > 1)
    head, _, last = line.rpartition(" ")
    words = head.split()
    verb = BY_NAME.get(words[0].lower()) if words else None
    if verb is None:
        return []
    position = len(words)  # the index of the word being typed
    choices: Sequence[str] = ()
    if words[-1] == "--swarm":
        choices = names.get("swarm", ())
    elif words[-1] == "--priority":
        choices = PRIORITIES
    elif verb.name == "spawn" and position == 1:
        choices = names.get("runtime", ())
    elif verb.name in ("scale", "strategy") and position == 1:
        choices = names.get("swarm", ())
    elif verb.name == "strategy" and position == 2:
        choices = names.get("strategy", ())
    elif verb.name == "sort" and position == 1:
        choices = list(SORT_KEYS)
    return [f"{head} {c} " for c in sorted(choices) if c.startswith(last)]


def common_prefix(lines: Sequence[str]) -> str:
    """The longest start every line shares (what Tab fills in when several fit)."""
    if not lines:
        return ""
    first, last = min(lines), max(lines)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]
