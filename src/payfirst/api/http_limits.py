"""The HTTP edge every request passes: body size and read-time limits, the one JSON body
parser, and the last word on errors (no exception reaches the server as a 500 page).

`Guard` wraps the routes (inside Starlette's own error middleware, so nothing it answers is
re-raised):

- a body larger than `max_body_bytes` is refused with 413 before it is read (by its
  Content-Length) or as soon as the bytes read pass the limit (chunked, or a
  Content-Length that lies);
- a body that has not fully arrived `body_timeout_s` after the headers is answered 408;
- the database or the chain unreachable: 503 with `Retry-After`, one log line per outage
  burst (never a traceback per request);
- anything else unexpected: 500 `{"error": "internal_error"}` and the traceback logged once.

Every answer is an x402-style JSON body `{"error": <reason>, "message": ...}`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payfirst import jsonsafe
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.ports.chain import ChainUnavailable

log = logging.getLogger("payfirst.api")

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_BODY_TIMEOUT_S: Final = 10.0
RETRY_AFTER_S: Final = 5

# Errors that mean "a dependency is down", not "this request is wrong": 503 + Retry-After.
UNAVAILABLE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a pooled connection a database restart cut mid-use
    ChainUnavailable,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S


class BodyTooLarge(Exception):
    """The request body passed `max_body_bytes` while it was read."""


class BodyTimeout(Exception):
    """The request body did not arrive within `body_timeout_s`."""


async def json_body(request: Request, reason: Reason, *, empty: Any = None) -> Any:
    """The request body parsed as JSON by the one parser for client input
    (`payfirst.jsonsafe`: depth-limited, no NaN, no lone surrogates). A blank body gives
    `empty` when that is not None; anything unacceptable is PaymentRejected(reason)."""
    raw = await request.body()
    if empty is not None and not raw.strip():
        return empty
    try:
        return jsonsafe.loads(raw)
    except jsonsafe.JsonRejected as exc:
        raise PaymentRejected(reason, f"body is not acceptable JSON: {exc}") from None


def json_answer(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> tuple[Message, Message]:
    """The two ASGI messages of a JSON error answer (ASCII-escaped: always encodable)."""
    body = json.dumps({"error": error, "message": message}).encode("ascii")
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    raw_headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    return (
        {"type": "http.response.start", "status": status, "headers": raw_headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class _Throttled:
    """Logs a warning at most once per `interval_s`, counting what it left out."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self._interval_s = interval_s
        self._last = -interval_s
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" (and {self._suppressed} more since the last report)"
        self._last, self._suppressed = now, 0
        log.warning(message, *args)


class Guard:
    """ASGI middleware: body limits, and every exception turned into a JSON answer."""

    def __init__(self, app: ASGIApp, limits: HttpLimits | None = None) -> None:
        self.app = app
        self.limits = limits or HttpLimits()
        self._unavailable_log = _Throttled()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                # httptools has checked it is a number; a body declared too large is
                # refused unread.
                if int(value) > limit:
                    await self._answer(send, *_too_large(limit))
                    return
                has_body = has_body or value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(
                scope,
                _limited(receive, limit, self.limits.body_timeout_s) if has_body else receive,
                tracked_send,
            )
        except Exception as exc:
            answer = self._answer_for(scope, exc)
            if answer is None:
                return
            if started:
                log.warning(
                    "%s %s failed after its answer started: %s: %s",
                    scope["method"],
                    scope["path"],
                    type(exc).__name__,
                    exc,
                )
                return
            await self._answer(send, *answer)

    def _answer_for(
        self, scope: Scope, exc: Exception
    ) -> tuple[int, str, str, dict[str, str]] | None:
        if isinstance(exc, BodyTooLarge):
            return _too_large(self.limits.max_body_bytes)
        if isinstance(exc, BodyTimeout):
            return (
                408,
                Reason.REQUEST_TIMEOUT.value,
                f"the request body did not arrive within {self.limits.body_timeout_s:g} s",
                {"connection": "close"},
            )
        if isinstance(exc, ClientDisconnect):
            return None  # nobody to answer
        if isinstance(exc, UNAVAILABLE_ERRORS):
            what = "the chain RPC" if isinstance(exc, ChainUnavailable) else "the database"
            self._unavailable_log.warning(
                "%s %s: 503, %s is unreachable: %s: %s",
                scope["method"],
                scope["path"],
                what,
                type(exc).__name__,
                exc,
            )
            return (
                503,
                Reason.SERVICE_UNAVAILABLE.value,
                f"{what} is unreachable for a moment; retry after {RETRY_AFTER_S} s",
                {"retry-after": str(RETRY_AFTER_S)},
            )
        log.error(
            "%s %s: unexpected %s, answered 500",
            scope["method"],
            scope["path"],
            type(exc).__name__,
            exc_info=exc,
        )
        return 500, Reason.INTERNAL_ERROR.value, "an unexpected error was logged", {}

    @staticmethod
    async def _answer(
        send: Send, status: int, error: str, message: str, headers: dict[str, str]
    ) -> None:
        start, body = json_answer(status, error, message, headers)
        await send(start)
        await send(body)


def _too_large(limit: int) -> tuple[int, str, str, dict[str, str]]:
    return (
        413,
        Reason.PAYLOAD_TOO_LARGE.value,
        f"the request body is larger than {limit} bytes",
        {"connection": "close"},
    )


def _limited(receive: Receive, limit: int, timeout_s: float) -> Receive:
    """`receive` that counts the body's bytes and gives it `timeout_s` to arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    received = 0
    done = False

    async def guarded() -> Message:
        nonlocal received, done
        if done:
            return await receive()
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
            done = not message.get("more_body", False)
        else:
            done = True
        return message

    return guarded
