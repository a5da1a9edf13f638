"""Helpers shared by the CLI's command modules: context, errors, the daemon call."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import click

from core.api.client import connect
from core.errors import GodelError
from core.paths import GodelPaths

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3


class Ctx:
    def __init__(self, home: str | None) -> None:
        self.paths = GodelPaths.resolve(home)


pass_ctx = click.make_pass_decorator(Ctx)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"godel: {message}", err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body; Godel errors become one line on stderr and exit 1."""
    try:
        return asyncio.run(coro)
    except GodelError as e:
        fail(e.message)
    except KeyboardInterrupt:
        sys.exit(130)
    raise AssertionError("unreachable")


def async_command(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run(fn(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


async def call(
    ctx: Ctx,
    method: str,
    params: dict[str, Any] | None = None,
    on_stream: Callable[[Any], None] | None = None,
) -> Any:
    client = await connect(ctx.paths)
    try:
        return await client.call(method, params, on_stream=on_stream)
    finally:
        await client.close()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
