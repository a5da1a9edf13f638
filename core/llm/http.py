"""What both LLM clients share: one POST that opens an SSE stream, with timeouts and retries,
and an SSE line parser.

Retries only ever happen before the caller has seen anything (they wrap opening the
stream, up to the 200 status line), so a retried request can never duplicate text or tool
calls the agent loop already acted on.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.llm.types import LLMError, LLMEvent, UsageLimited

log = logging.getLogger("godel.llm")

# 408/529 are not in every provider's list, but both mean "try again" (529: Anthropic
# overloaded).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True)
class RetryInfo:
    """Passed to ``on_retry`` before each backoff sleep."""

    attempt: int  # the attempt that failed, 1-based
    status: int | None  # None: a connection error or timeout
    message: str
    delay_s: float


@dataclass(frozen=True)
class RetrySettings:
    max_retries: int = 3
    backoff_base_s: float = 0.5  # first backoff; doubles per attempt, plus up to this jitter
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 60.0  # a server's Retry-After is honoured up to this
    # A 429 asking for longer than this is the provider's usage limit: not retried here
    # (``UsageLimited``; the engine pauses the provider until the reset).
    usage_limit_after_s: float = 60.0


class _Retryable(Exception):
    def __init__(self, status: int | None, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(body: bytes) -> str:
    """The human part of a provider error body (both APIs nest it in ``error.message``)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return text[:500]


@dataclass
class SSEMessage:
    event: str  # "" when the server sent no ``event:`` line
    data: str


async def iter_sse(response: httpx.Response) -> AsyncGenerator[SSEMessage, None]:
    """Server-sent events from a streaming response (multi-line data joined with ``\\n``)."""
    event = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SSEMessage(event, "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment / keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield SSEMessage(event, "\n".join(data))


class StreamingEndpoint:
    """POSTs JSON to one URL and returns the open 200 response, retrying what is worth it."""

    def __init__(
        self,
        api: str,
        url: str,
        headers: dict[str, str],
        *,
        timeout: float,
        connect_timeout: float,
        retry: RetrySettings,
        on_retry: Callable[[RetryInfo], None] | None = None,
    ) -> None:
        self.api = api
        self.url = url
        self.retry = retry
        self.on_retry = on_retry
        # read= bounds the silence between two chunks, not the whole answer.
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
        )
        self._backoff = wait_exponential_jitter(
            multiplier=retry.backoff_base_s, max=retry.backoff_max_s, jitter=retry.backoff_base_s
        )

    def _where(self) -> str:
        return f"{self.api} endpoint {self.url}"

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            delay = min(exc.retry_after, self.retry.retry_after_max_s)
        else:
            delay = float(self._backoff(state))
        if isinstance(exc, _Retryable):
            log.info(
                "%s: attempt %d failed (%s); retrying in %.2fs",
                self._where(),
                state.attempt_number,
                exc.message,
                delay,
            )
            if self.on_retry is not None:
                self.on_retry(RetryInfo(state.attempt_number, exc.status, exc.message, delay))
        return delay

    async def _attempt(self, body: dict[str, Any]) -> httpx.Response:
        request = self.client.build_request("POST", self.url, json=body)
        try:
            response = await self.client.send(request, stream=True)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            raise _Retryable(None, f"{type(e).__name__}: {e}".rstrip(": "), None) from e
        except httpx.HTTPError as e:  # e.g. an unsupported URL scheme: retrying cannot help
            raise LLMError(f"{self._where()}: {e}", url=self.url, api=self.api) from e
        if 200 <= response.status_code < 300:
            return response
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            raw = b""
        finally:
            await response.aclose()
        status = response.status_code
        message = error_message(raw)
        retry_after = parse_retry_after(response.headers)
        if (
            status == 429
            and retry_after is not None
            and retry_after > self.retry.usage_limit_after_s
        ):
            # A usage limit, not a hiccup: waiting here would hold the agent for minutes.
            raise UsageLimited(
                f"{self._where()}: HTTP 429: {message} (retry after {retry_after:.0f}s)",
                retry_after=retry_after,
                status=status,
                url=self.url,
                api=self.api,
            )
        if status in RETRYABLE_STATUSES:
            raise _Retryable(status, f"HTTP {status}: {message}", retry_after)
        raise LLMError(
            f"{self._where()}: HTTP {status}: {message}",
            status=status,
            url=self.url,
            api=self.api,
            retryable=False,
        )

    async def stream(
        self,
        body: dict[str, Any],
        parse: Callable[[httpx.Response], AsyncGenerator[LLMEvent, None]],
    ) -> AsyncGenerator[LLMEvent, None]:
        """Open the response (with retries), then yield what ``parse`` makes of it.

        The response is closed as soon as the consumer stops, so a cancelled exec hangs
        up at once; ``aclosing`` closes the parser generators now, not at GC time.
        """
        response = await self.open(body)
        try:
            async with contextlib.aclosing(parse(response)) as events:
                async for event in events:
                    yield event
        finally:
            await response.aclose()

    async def open(self, body: dict[str, Any]) -> httpx.Response:
        """The 200 response, body not yet read; the caller must ``aclose()`` it."""
        attempts = self.retry.max_retries + 1
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            return await retrying(self._attempt, body)
        except _Retryable as e:
            n = retrying.statistics.get("attempt_number", attempts)
            raise LLMError(
                f"{self._where()}: {e.message} (gave up after {n} attempt{'s' if n != 1 else ''})",
                status=e.status,
                url=self.url,
                api=self.api,
                retryable=True,
                attempts=n,
            ) from e

    async def aclose(self) -> None:
        await self.client.aclose()
