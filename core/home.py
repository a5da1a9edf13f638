"""Making ``GODEL_HOME`` safe to use: private by construction.

The home holds agents' output, the audit log and the daemon's socket, so it is the
user's alone: the home and the socket's directory are 0700 and owned by the user, and
the files Godel keeps there are 0600 (the daemon also runs with a 077 umask, so what it
creates later is private too). An existing home with looser modes is tightened, and
says so in the daemon's log; one owned by another user is refused. The socket's
directory, when it is outside the home (a home path too long for a socket), is checked
as tmux checks its own: a real directory, the user's, not open to others, else refused,
since whoever controls it can put a fake daemon in the user's way.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from core.errors import HomeError
from core.paths import GodelPaths

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "prepare_home"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def _files(paths: GodelPaths) -> list[Path]:
    db = paths.db
    return [
        db,
        db.with_name(db.name + "-wal"),
        db.with_name(db.name + "-shm"),
        paths.events,
        paths.event_seq,
        paths.log,
        paths.pidfile,
        paths.lockfile,
    ]


def prepare_home(paths: GodelPaths) -> list[str]:
    """Create or check the home and the socket's directory; tighten loose modes.

    Returns what was tightened (for the daemon's log). Raises ``HomeError`` with one
    line naming the problem and what to do."""
    home = paths.home
    try:
        home.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    except OSError as e:
        raise HomeError(
            f"cannot create GODEL_HOME {home}: {e.strerror or e}; "
            "set GODEL_HOME (or --home) to a directory you can write",
            home=str(home),
        ) from None
    notes = _own_private_dir(home, "GODEL_HOME", tighten=True)
    if not os.access(home, os.W_OK | os.X_OK):
        raise HomeError(
            f"GODEL_HOME {home} is not writable; "
            "set GODEL_HOME (or --home) to a directory you can write",
            home=str(home),
        )
    for f in _files(paths):
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(f, PRIVATE_FILE)
            notes.append(f"{f} was readable by others ({stat.filemode(st.st_mode)}): made 0600")
    sock_dir = paths.socket.parent
    if sock_dir != home:
        try:
            sock_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        except OSError as e:
            raise HomeError(
                f"cannot create the socket directory {sock_dir}: {e.strerror or e}",
                path=str(sock_dir),
            ) from None
        notes += _own_private_dir(sock_dir, "the socket directory", tighten=False)
    paths.workspaces.mkdir(exist_ok=True, mode=PRIVATE_DIR)
    return notes


def _own_private_dir(path: Path, what: str, *, tighten: bool) -> list[str]:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) and what != "GODEL_HOME":
        raise HomeError(f"{what} {path} is a symbolic link; remove it", path=str(path))
    if not stat.S_ISDIR(os.stat(path).st_mode):
        raise HomeError(f"{what} {path} is not a directory", path=str(path))
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise HomeError(
            f"{what} {path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): "
            "another user could read or impersonate your daemon there; "
            + ("use a home of your own" if tighten else "remove it, or use a shorter GODEL_HOME"),
            path=str(path),
            owner=st.st_uid,
        )
    if not st.st_mode & 0o077:
        return []
    if not tighten:
        raise HomeError(
            f"{what} {path} is open to other users ({stat.filemode(st.st_mode)}); "
            "remove it (Godel creates it 0700), or use a shorter GODEL_HOME",
            path=str(path),
        )
    os.chmod(path, PRIVATE_DIR)
    return [f"{path} was open to other users ({stat.filemode(st.st_mode)}): made 0700"]
