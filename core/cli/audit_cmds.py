"""``godel audit ...``: list, verify and export the tamper-evident audit log."""

from __future__ import annotations

import json
import sys
from typing import IO, Any, cast

import click

from core.api.shapes import VerifyReport
from core.cli import render
from core.cli.common import (
    EXIT_ERROR,
    Ctx,
    echo_json,
    json_option,
    pass_ctx,
    request,
    sync_command,
)

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """Read, verify and export the tamper-evident audit log."""


@audit.command("list")
@click.option("--subject", help="Only entries about this subject (e.g. an agent id).")
@click.option(
    "--after",
    "after_seq",
    type=click.IntRange(min=0),
    default=0,
    help="Only entries after this seq.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many entries.")
@json_option
@pass_ctx
@sync_command
def audit_list(
    ctx: Ctx, subject: str | None, after_seq: int, limit: int | None, as_json: bool
) -> None:
    """List audit entries, oldest first."""
    params: dict[str, Any] = {"after_seq": after_seq}
    if subject:
        params["subject"] = subject
    if limit:
        params["limit"] = limit
    result = request(ctx, "audit.list", params)
    if as_json:
        echo_json(result)
        return
    click.echo(render.table(render.AUDIT_HEADERS, [render.audit_row(e) for e in result]))


@audit.command("verify")
@click.option(
    "--offline",
    is_flag=True,
    help="Read the store file directly (read-only), with no daemon: for a store the "
    "daemon refuses to open.",
)
@json_option
@pass_ctx
@sync_command
def audit_verify(ctx: Ctx, offline: bool, as_json: bool) -> None:
    """Recompute the hash chain and check it against the store's anchor; exit 1 and name
    the first bad entry if it is broken, cut short or rolled back."""
    if offline:
        from core.store.sqlite.backup import verify_file

        report = cast(VerifyReport, verify_file(ctx.paths.db).model_dump())
    else:
        report = request(ctx, "audit.verify")
    if as_json:
        echo_json(report)
    else:
        click.echo(render.verify_summary(report), err=not report["ok"])
    if not report["ok"]:
        sys.exit(EXIT_ERROR)


@audit.command("export")
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8", lazy=False),
    default="-",
    help="Write to this file instead of stdout.",
)
@pass_ctx
@sync_command
def audit_export(ctx: Ctx, output: IO[str]) -> None:
    """Export every audit entry as JSON lines (with hashes, so it can be verified offline)."""

    def on_stream(data: Any) -> None:
        output.write(json.dumps(data, sort_keys=True) + "\n")

    result = request(ctx, "audit.export", on_stream=on_stream)
    output.flush()
    if output is not sys.stdout:
        click.echo(f"Exported {result['entries']} entries to {output.name}", err=True)
