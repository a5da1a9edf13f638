"""Where Godel keeps its files: ``GODEL_HOME`` and the paths inside it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

# sun_path is 108 bytes on Linux; keep a margin for the NUL and odd filesystems.
MAX_SOCKET_PATH = 100


def default_home() -> Path:
    env = os.environ.get("GODEL_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("godel"))


@dataclass(frozen=True)
class GodelPaths:
    home: Path

    @classmethod
    def resolve(cls, home: Path | str | None = None) -> GodelPaths:
        h = Path(home).expanduser() if home else default_home()
        return cls(home=h.absolute())

    @property
    def db(self) -> Path:
        return self.home / "godel.db"

    @property
    def socket(self) -> Path:
        """The daemon's unix socket: in the home, unless that path is too long for one.

        Then it lives in a private per-user directory under the temp dir (as tmux does),
        named after a hash of the home so each home keeps its own daemon.
        """
        p = self.home / "godel.sock"
        if len(os.fsencode(p)) <= MAX_SOCKET_PATH:
            return p
        digest = hashlib.sha256(os.fsencode(self.home)).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"godel-{os.getuid()}" / f"{digest}.sock"

    @property
    def pidfile(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def lockfile(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def log(self) -> Path:
        return self.home / "daemon.log"

    @property
    def events(self) -> Path:
        return self.home / "events.jsonl"

    @property
    def event_seq(self) -> Path:
        """The highest event seq handed out (``core.events.seq``): seqs never restart."""
        return self.home / "events.seq"

    @property
    def workspaces(self) -> Path:
        return self.home / "workspaces"

    def ensure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        sock_dir = self.socket.parent
        if sock_dir != self.home:
            sock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(sock_dir, 0o700)
