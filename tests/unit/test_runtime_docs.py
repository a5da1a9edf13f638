"""The capability table in docs/runtimes.md matches what the runtimes declare."""

from core.runtimes.docs import DOC, builtin_infos, capability_table, render_doc


def test_capability_table_is_current() -> None:
    text = DOC.read_text()
    assert render_doc(text, capability_table(builtin_infos())) == text, (
        "docs/runtimes.md is out of date: run `python -m core.runtimes.docs`"
    )
