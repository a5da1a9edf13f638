"""Gates run for real in a directory: pass, fail, timeout (with its children) and bounded output."""

from __future__ import annotations

from pathlib import Path

import psutil

from core.work.gates import Gate, run_gate
from tests.conftest import until


async def test_a_passing_gate_reports_its_output(tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("here\n")
    result = await run_gate(Gate(command="cat marker; echo to-stderr >&2"), tmp_path)
    assert result.passed and result.exit_code == 0 and not result.timed_out
    assert "here" in result.output and "to-stderr" in result.output
    assert result.summary() == "`cat marker; echo to-stderr >&2` passed"


async def test_a_failing_gate_reports_its_exit_code_and_output(tmp_path: Path) -> None:
    result = await run_gate(Gate(command="echo 3 tests failed; exit 2"), tmp_path)
    assert not result.passed and result.exit_code == 2
    assert "3 tests failed" in result.output
    assert "failed (exit 2)" in result.summary()
    assert "3 tests failed" in result.feedback()


async def test_a_gate_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    # The gate starts a child and waits on it: the timeout must end both.
    result = await run_gate(
        Gate(command="sleep 300 & echo $! > child.pid; echo started; wait", timeout_s=0.5),
        tmp_path,
    )
    assert result.timed_out and not result.passed and result.exit_code is None
    assert "started" in result.output
    child = int((tmp_path / "child.pid").read_text())

    def gone() -> bool:
        try:
            return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    await until(gone)


async def test_long_output_keeps_its_head_and_tail(tmp_path: Path) -> None:
    command = "echo FIRST; head -c 100000 /dev/zero | tr '\\0' x; echo; echo LAST"
    result = await run_gate(Gate(command=command, keep_bytes=1000), tmp_path)
    assert result.passed and result.truncated
    assert result.output_bytes == len("FIRST\n") + 100000 + len("\nLAST\n")
    assert result.output.startswith("FIRST\n") and result.output.endswith("LAST\n")
    assert "bytes of output omitted" in result.output
    assert len(result.output) < 2100
