"""Helpers shared by the CLI's command modules: context, errors, the daemon call.

Commands call the daemon through ``request`` (one call over a blocking socket, no
asyncio: the fast path) or ``call`` (async, for commands that need an event loop).
Whether a call may start a stopped daemon is decided here, by its method: a method
that changes something (``STARTS_DAEMON``) starts one the way tmux starts its server;
any other only reads, and a read never starts a daemon: it prints one line saying none
runs and exits 3, as ``daemon status`` does. A new read-only method needs nothing; a
new method that changes something is added to the set.

This module and the command modules import no engine, store or pydantic code at
import time (``tests/unit/test_thin_client.py`` checks), so a command costs a Python
start plus one round trip.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, NoReturn, TypeVar

import click

from core.api import blocking
from core.api.protocol import DaemonNotRunning
from core.cli.caller import warn_config_drift, warn_config_drift_async, with_caller_keys
from core.errors import GodelError
from core.paths import GodelPaths

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3


# The methods that change something: calling one starts a stopped daemon.
STARTS_DAEMON = frozenset(
    {
        "agent.spawn",
        "agent.exec",
        "agent.kill",
        "agent.steer",
        "agent.abort",
        "task.submit",
        "task.cancel",
        "task.retry",
        "swarm.create",
        "swarm.scale",
        "swarm.destroy",
        "swarm.strategy",
        "config.reload",
        "budget.set",
        "budget.clear",
    }
)


class Ctx:
    def __init__(self, home: str | None) -> None:
        self.paths = GodelPaths.resolve(home)


pass_ctx = click.make_pass_decorator(Ctx)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"godel: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def run_home(ctx: Ctx, embedded: bool, prefix: str) -> Iterator[GodelPaths]:
    """Where a run's engine keeps its data: ``ctx``'s home, except for ``--embedded``
    without ``--home``/``$GODEL_HOME``: a temporary home, removed afterwards."""
    home_given = click.get_current_context().find_root().params.get("home") is not None
    if not embedded or home_given:
        yield ctx.paths
        return
    import shutil
    import tempfile

    temp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield GodelPaths.resolve(temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def check_budget_option(budget: str | None) -> None:
    """``--budget DOLLARS`` of a run: a finite amount, not negative, or one line, exit 2."""
    if budget is None:
        return
    from decimal import Decimal, InvalidOperation

    try:
        ok = Decimal(budget).is_finite() and Decimal(budget) >= 0
    except InvalidOperation:
        ok = False
    if not ok:
        fail(f"--budget takes an amount of dollars (e.g. 10.00), got {budget!r}", 2)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Godel errors become one line on stderr and exit 1 (exit 3 when no daemon runs
    for a command that does not start one); Ctrl-C exits 130."""
    try:
        yield
    except DaemonNotRunning as e:
        fail(e.message, EXIT_NOT_RUNNING)
    except GodelError as e:
        fail(e.message)
    except KeyboardInterrupt:
        sys.exit(130)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body, with ``one_line_errors``."""
    import asyncio  # here, not at the top: read-only commands run without it

    with one_line_errors():
        return asyncio.run(coro)
    raise AssertionError("unreachable")


def async_command(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run(fn(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


def sync_command(fn: Callable[..., T]) -> Callable[..., T]:
    """A command whose body calls the daemon with ``request`` (no event loop)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with one_line_errors():
            return fn(*args, **kwargs)
        raise AssertionError("unreachable")

    return wrapper


async def call(
    ctx: Ctx,
    method: str,
    params: dict[str, Any] | None = None,
    on_stream: Callable[[Any], None] | None = None,
    *,
    start: bool | None = None,
) -> Any:
    """Call ``method`` on the daemon and return its result.

    ``start`` says whether a stopped daemon is started first; by default it is for the
    methods in ``STARTS_DAEMON`` and not for reads, which raise DaemonNotRunning.
    """
    from core.api.client import connect

    if start is None:
        start = method in STARTS_DAEMON
    client = await connect(ctx.paths, autostart=start)
    try:
        await warn_config_drift_async(client, method)
        return await client.call(method, with_caller_keys(method, params), on_stream=on_stream)
    finally:
        await client.close()


def request(
    ctx: Ctx,
    method: str,
    params: dict[str, Any] | None = None,
    on_stream: Callable[[Any], None] | None = None,
    *,
    start: bool | None = None,
) -> Any:
    """``call`` without asyncio, for commands that make one call (``sync_command``).

    Same ``start`` rule; only starting a daemon loads asyncio.
    """
    if start is None:
        start = method in STARTS_DAEMON
    if start:
        from core.api.client import start_daemon

        run(start_daemon(ctx.paths))
    warn_config_drift(ctx.paths, method)
    return blocking.call(ctx.paths, method, with_caller_keys(method, params), on_stream)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
