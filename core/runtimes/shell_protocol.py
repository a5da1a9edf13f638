"""The shell runtime's wire protocol with bash: the ``__godel_run`` function installed at
spawn, how each command is framed, and how its end marker is found in the output bytes.
"""

from __future__ import annotations

import base64
import re
import shlex
from pathlib import Path

# ``set --`` hides the nonce ($1) from the command; ``wait 2>/dev/null`` keeps bash's
# "Terminated" job reports out of the exec's stderr.
_SETUP = r"""
__godel_ws=@WS@
__godel_run() {
  (
    cd "$__godel_ws" || exit
    __godel_cmd=$(printf %s "$2" | base64 -d) || exit 126
    set --
    eval "unset __godel_cmd; $__godel_cmd"
  ) </dev/null &
  wait "$!" 2>/dev/null
  __godel_rc=$?
  printf '\036GODEL:%s:end:%s\n' "$1" "$__godel_rc"
  printf '\036GODEL:%s:end:%s\n' "$1" "$__godel_rc" >&2
}
"""


def setup_script(workspace: Path) -> str:
    """The script that installs ``__godel_run``, running every command in ``workspace``."""
    return _SETUP.replace("@WS@", shlex.quote(str(workspace)))


def command_line(nonce: str, command: str) -> str:
    """The line that runs ``command`` (any text) through ``__godel_run`` under ``nonce``."""
    encoded = base64.b64encode(command.encode("utf-8", errors="replace")).decode("ascii")
    return f"__godel_run {nonce} {encoded}\n"


class EndMarker:
    """Finds ``\\x1eGODEL:<nonce>:end:<rc>\\n`` in a byte stream, wherever it falls.

    The marker need not start a line (output may lack a trailing newline) and may be
    split across reads, so a trailing piece that could be its start is held back.
    """

    def __init__(self, nonce: str) -> None:
        self._prefix = f"\x1eGODEL:{nonce}:end:".encode()
        self._pattern = re.compile(re.escape(self._prefix) + rb"(\d{1,3})\n")
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, int | None, bytes]:
        """Return (output before the marker, exit code or None, bytes after the marker)."""
        buf = self._held + data
        self._held = b""
        m = self._pattern.search(buf)
        if m:
            return buf[: m.start()], int(m.group(1)), buf[m.end() :]
        cut = buf.rfind(b"\x1e")
        if cut != -1 and self._may_start_marker(buf[cut:]):
            self._held = buf[cut:]
            return buf[:cut], None, b""
        return buf, None, b""

    def _may_start_marker(self, tail: bytes) -> bool:
        n = len(self._prefix)
        if len(tail) <= n:
            return self._prefix.startswith(tail)
        digits = tail[n:]
        return tail.startswith(self._prefix) and len(digits) <= 3 and digits.isdigit()

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held
