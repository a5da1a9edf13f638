"""Fuzzing config files: whatever a ``config.toml`` holds, loading it gives a config or
one ``ConfigError`` line naming the file, never a traceback.

Documents are built from the schema's real sections and keys with values of every TOML
type (so they get past the parser and exercise validation), and from junk text (so they
exercise the parser's errors).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from core.config import GodelConfig, load_config, parse_config_file
from core.config.checks import check_usable
from core.errors import ConfigError

KNOWN = ("shell", "native", "claude")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written to the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- a small TOML writer (the project has none): quoted keys, inline values -----------

Toml = Any


def _str(s: str) -> str:
    # JSON's escapes are TOML's basic-string escapes, but not its surrogate pairs, and
    # TOML wants DEL escaped too.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(v: Toml) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_str(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise AssertionError(f"not a TOML value: {v!r}")


def to_toml(doc: dict[str, Toml]) -> str:
    top = [f"{_str(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    lines = [*top]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{_str(k)}]")
            lines += [f"{_str(kk)} = {_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# --- strategies -------------------------------------------------------------------------

# Every section and key the schema knows, plus a few it does not.
SECTIONS: dict[str, list[str]] = {
    name: list(getattr(field.annotation, "model_fields", {}))
    for name, field in GodelConfig.model_fields.items()
}
SECTIONS["agents"] = ["name", "runtime", "count", "skills", "model"]
SECTIONS["runtimes"] = ["shell", "native", "claude", "pi", "nope"]
SECTIONS["providers"] = ["openai", "mine", ""]
SECTIONS["models"] = ["scripted", "m", ""]
INNER_KEYS = [
    "shell",
    "max_turns",
    "max_retries",
    "request_timeout",
    "kind",
    "base_url",
    "api_key_env",
    "scripted",
    "provider",
    "id",
    "input_per_mtok",
    "context_window",
    "max_tokens",
]

TARGETS = [
    ("defaults", "workspace_root"),
    ("defaults", "runtime"),
    ("defaults", "env_passthrough"),
    ("daemon", "log_level"),
    ("runtimes", "shell"),
    ("runtimes", "native"),
]
RUNTIME_KEYS = ["shell", "max_turns", "max_retries", "request_timeout"]

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_words = st.sampled_from(
    [
        "shell",
        "native",
        "claude",
        "pi",
        "openai",
        "anthropic",
        "info",
        "DEBUG",
        "~",
        "~nobody/x",
        "~\x00",
        "/proc/nope",
        "/",
        ".",
        "ws",
        "a\x00b",
        "/a\nb",
        "/proc/a\nb",
        "",
        " ",
        "x,y",
        "A_KEY",
        "1BAD",
        "scripted",
    ]
)
# What a path or name must not hold, or names that cannot be made.
_telling = st.sampled_from(["~\x00", "a\x00b", "/a\nb", "/proc/a\nb", "/proc/nope", "a\rb"])
_scalars: st.SearchStrategy[Toml] = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-9, 0.1, 1e300]),
    _words,
    _text,
    st.datetimes(),
    st.dates(),
    st.times(),
)
_keys = st.one_of(st.sampled_from(INNER_KEYS), _text)
# Names and paths that mean something to the schema, often, and anything else.
_values: st.SearchStrategy[Toml] = _words | st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def _section(draw: st.DrawFn, name: str) -> Toml:
    keys = SECTIONS[name]
    table = draw(
        st.dictionaries(st.one_of(st.sampled_from(keys), _text), _values, max_size=5)
        if keys
        else st.dictionaries(_text, _values, max_size=3)
    )
    if name == "agents":  # an array of tables, or sometimes not
        return draw(st.one_of(st.just([table]), st.lists(_values, max_size=2)))
    if name in ("runtimes", "providers", "models"):  # tables of tables
        return {
            k: draw(st.one_of(st.dictionaries(_keys, _values, max_size=4), _values)) for k in table
        }
    return draw(st.one_of(st.just(table), _values)) if draw(st.integers(0, 9)) == 0 else table


@st.composite
def documents(draw: st.DrawFn) -> str:
    # Half the documents hold only the telling key below, so it is what gets validated.
    names = draw(st.lists(st.sampled_from(list(SECTIONS)), max_size=4, unique=True))
    names = names if draw(st.booleans()) else []
    doc: dict[str, Toml] = {name: draw(_section(name)) for name in names}
    # One known key set to a telling value: random documents rarely get past their
    # first bad key to the one that matters. Paths and names reach the filesystem.
    section, key = draw(
        st.sampled_from(TARGETS)
        | st.sampled_from(["defaults", "daemon", "queue", "health", "autoscaler"]).flatmap(
            lambda n: st.tuples(st.just(n), st.sampled_from(SECTIONS[n]))
        )
    )
    value = draw(_telling | _words | _scalars)
    if section == "runtimes":
        doc["runtimes"] = {key: {draw(st.sampled_from(RUNTIME_KEYS)): value}}
    else:
        if not isinstance(doc.get(section), dict):
            doc[section] = {}
        doc[section][key] = value
    text = to_toml(doc)
    if draw(st.integers(0, 4)):  # mostly well-formed: junk_bytes below does the rest
        return text
    junk = draw(st.sampled_from(["[", "]]", "= 1", "a =", "\x7f", '"', "[[agents]]"]) | _text)
    where = draw(st.integers(0, len(text)))
    return text[:where] + junk + text[where:]


# --- the property -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="godel-fuzz-config-") as d:
        root = Path(d)
        (root / "proj").mkdir()
        yield root


def _check_one_line(e: ConfigError, file: Path) -> None:
    assert "\n" not in e.message and "\r" not in e.message, e.message
    assert str(file) in e.message, e.message


def _load(home: Path, raw: bytes) -> None:
    file = home / "config.toml"
    file.write_bytes(raw)
    try:
        parse_config_file(file, KNOWN)
    except ConfigError as e:
        _check_one_line(e, file)
    try:
        loaded = load_config(KNOWN, cwd=home / "proj", user_file=file)
    except ConfigError as e:
        _check_one_line(e, file)
        event(f"refused: {e.data['key'].split('.')[0]}")
        return
    event("loaded")
    root = loaded.config.defaults.workspace_root
    # check_usable really creates the workspace root (and removes it): only under home.
    if root is None or home in root.expanduser().absolute().parents:
        try:
            check_usable(loaded)
        except ConfigError as e:
            _check_one_line(e, file)


@FUZZ
@given(doc=documents())
# Found by this fuzz: a NUL in a path was a ValueError traceback from expanduser.
@example(doc='["defaults"]\n"workspace_root" = "~\\u0000"\n')
# A newline in a value the user typed made the one-line error two lines.
@example(doc='["runtimes"]\n"shell" = {"shell" = "/a\\nb"}\n')
@example(doc='[defaults]\nworkspace_root = "config.toml/a\\nb"\n')
def test_any_toml_document_loads_or_names_one_problem(home: Path, doc: str) -> None:
    _load(home, doc.encode("utf-8", "surrogatepass"))


@FUZZ
@given(raw=st.binary(max_size=200) | _text.map(str.encode))
def test_any_bytes_load_or_name_one_problem(home: Path, raw: bytes) -> None:
    _load(home, raw)
