"""``godel backup FILE`` and ``godel restore FILE``: copy the store out, put a copy back.

A backup runs in the daemon when one runs (SQLite's online backup on its database thread,
audited as ``store.backup``), else here, on the file opened read-only. A restore runs only
with no daemon: it holds the home's daemon lock meanwhile (so none starts), checks the
file is a Godel store whose audit chain verifies, says what it brings back and what it
replaces, and moves the current store aside (never deleting it).

Store code is imported inside the commands, not here: listing commands stays cheap.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

import click

from core.api.protocol import DaemonNotRunning
from core.cli.common import Ctx, echo_json, fail, json_option, pass_ctx, request, sync_command
from core.errors import GodelError

__all__ = ["backup", "restore"]


def _describe(s: dict[str, Any], indent: str = "  ") -> list[str]:
    head = f"last seq {s['last_seq']}, hash {s['last_hash'] or '-'}"
    return [
        f"{indent}audit entries  {s['audit_entries']} ({head})",
        f"{indent}tasks          {s['tasks']}",
        f"{indent}agents         {s['agents']}",
        f"{indent}schema         version {s['schema_version']}",
    ]


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@json_option
@pass_ctx
@sync_command
def backup(ctx: Ctx, file: str, force: bool, as_json: bool) -> None:
    """Write a consistent copy of the store to FILE (0600), even while the daemon runs."""
    dest = os.path.abspath(file)
    try:
        done = request(ctx, "store.backup", {"path": dest, "force": force}, start=False)
        where = "by the daemon, audited as store.backup"
    except DaemonNotRunning:
        from core.api.client import silent_daemon
        from core.store.sqlite.backup import backup_file

        pid = silent_daemon(ctx.paths)
        if pid is not None:  # alive but not answering: a copy of its file could be torn
            fail(f"the daemon (pid {pid}) does not answer on its socket; stop it first")
        done = backup_file(ctx.paths.db, Path(dest), force=force)
        where = "offline: no daemon runs"
    if as_json:
        echo_json(done)
        return
    click.echo(f"Backed up {ctx.paths.db} to {done['path']} ({done['size']} bytes, {where})")
    click.echo("\n".join(_describe(done)))


def _take_lock(ctx: Ctx) -> Any:
    """Hold the home's daemon lock (so no daemon runs or starts); one line if one runs."""
    from core.home import prepare_home

    prepare_home(ctx.paths)
    lock = open(ctx.paths.lockfile, "a+")  # noqa: SIM115 - held until the command ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        try:
            pid = f" (pid {int(ctx.paths.pidfile.read_text().strip())})"
        except (OSError, ValueError):
            pid = ""
        fail(
            f"a daemon is running for {ctx.paths.home}{pid}; "
            "stop it first with `godel daemon stop`, then restore"
        )
    return lock


def _aside_name(db: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db.with_name(f"{db.name}.before-restore-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = db.with_name(f"{db.name}.before-restore-{stamp}-{n}")
    return target


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
@sync_command
def restore(ctx: Ctx, file: str, yes: bool) -> None:
    """Replace the store with the backup FILE (no daemon may run).

    The current store is moved aside to godel.db.before-restore-<time>, never deleted.
    """
    import sqlite3

    from core.audit import AuditHead
    from core.store.sqlite.anchor import anchor_path, write_anchor
    from core.store.sqlite.backup import inspect_backup, open_read_only, summary, write_backup

    src = Path(file).absolute()
    if not src.exists():
        fail(f"no such file: {src}")
    lock = _take_lock(ctx)
    try:
        found = inspect_backup(src)
        click.echo(f"Restores {src} ({found['size']} bytes):")
        click.echo("\n".join(_describe(found)))
        db = ctx.paths.db
        if db.exists():
            try:
                conn = open_read_only(db)
                try:
                    current = summary(conn)
                finally:
                    conn.close()
                click.echo(f"Replaces {db}:")
                click.echo("\n".join(_describe(current)))
            except (GodelError, sqlite3.Error) as e:
                why = e.message if isinstance(e, GodelError) else str(e)
                click.echo(f"Replaces {db} (unreadable: {why})")
        else:
            click.echo(f"Replaces nothing: no store at {db}")
        if not yes:
            click.confirm("Restore it?", abort=True)
        aside = _aside_name(db)
        moved = []
        # The WAL and the anchor belong with their database.
        for suffix in ("", "-wal", "-shm", ".anchor"):
            part = Path(f"{db}{suffix}")
            if part.exists():
                os.replace(part, f"{aside}{suffix}")
                moved.append(f"{aside}{suffix}")
        conn = open_read_only(src)
        try:
            write_backup(conn, db)
        finally:
            conn.close()
        if found["last_seq"]:  # the restored head is the one to hold the store to now
            head = AuditHead(seq=found["last_seq"], entry_hash=found["last_hash"])
            write_anchor(anchor_path(db), head, sync=True)
    finally:
        lock.close()
    click.echo(f"Restored {src} to {db} (audit up to seq {found['last_seq']}).")
    if moved:
        click.echo(f"The previous store is at {aside} (with its WAL and anchor, if any).")
