"""The request log: one line per HTTP request at INFO on the `payfirst.access` logger -
method, path (never the query: it may carry a key), status, duration, client address.
With PAYFIRST_LOG_FORMAT=json each is a field of its own."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("payfirst.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            client = (scope.get("client") or ("-", 0))[0]
            method, path = scope["method"], scope["path"][:200]
            log.info(
                "%s %s %d %.1fms %s",
                method,
                path,
                status,
                duration_ms,
                client,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(duration_ms, 2),
                    "client": client,
                },
            )
