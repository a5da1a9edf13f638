"""GODEL_HOME is private by construction: modes, owners, the socket's directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import Godel


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_loose_existing_home_and_its_files_are_made_private(godel: Godel) -> None:
    godel.home.mkdir(mode=0o755)
    os.chmod(godel.home, 0o755)
    (godel.home / "events.jsonl").write_text("")
    os.chmod(godel.home / "events.jsonl", 0o644)
    os.umask(old := os.umask(0o022))  # whatever the test runner had
    godel.run("daemon", "start", check=True)
    godel.run("agent", "spawn", "--runtime", "shell", check=True)
    assert mode(godel.home) == 0o700
    for name in ("godel.db", "godel.db-wal", "events.jsonl", "daemon.log", "events.seq"):
        assert mode(godel.home / name) == 0o600, name
    (workspace,) = (godel.home / "workspaces").iterdir()
    assert mode(godel.home / "workspaces") == 0o700 and not mode(workspace) & 0o077
    log = (godel.home / "daemon.log").read_text()
    assert "was open to other users (drwxr-xr-x): made 0700" in log
    del old


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_a_socket_directory_of_another_user_is_refused(godel: Godel, tmp_path: Path) -> None:
    # A home path too long for a socket puts it in $TMPDIR/godel-UID/, as tmux does.
    long_home = tmp_path / ("h" * 120)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**godel.env, "GODEL_HOME": str(long_home), "TMPDIR": str(tmp)}
    theirs = tmp / f"godel-{os.getuid()}"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)  # pre-created by another user
    other = Godel(home=long_home, cwd=godel.cwd, env=env)
    r = other.run("daemon", "start")
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert f"the socket directory {theirs} belongs to uid 65534" in r.stderr
    os.chown(theirs, os.getuid(), os.getgid())
    os.chmod(theirs, 0o777)  # ours, but open to everyone
    r = other.run("daemon", "start")
    assert r.returncode != 0 and "is open to other users (drwxrwxrwx)" in r.stderr
    os.chmod(theirs, 0o700)
    other.run("daemon", "start", check=True)
    other.run("daemon", "stop", check=True)


def test_an_unusable_home_is_one_line(godel: Godel) -> None:
    bad = Godel(
        home=Path("/proc/nope"), cwd=godel.cwd, env={**godel.env, "GODEL_HOME": "/proc/nope"}
    )
    for args in (("daemon", "start"), ("agent", "spawn", "--runtime", "shell")):
        r = bad.run(*args)
        assert r.returncode != 0 and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "cannot create GODEL_HOME /proc/nope" in r.stderr and "Traceback" not in r.stderr
