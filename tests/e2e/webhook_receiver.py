"""A real webhook receiver for the tests: a Starlette app served by uvicorn on 127.0.0.1
(a port of its own) that verifies every request with the `standardwebhooks` package, as a
provider's receiver would, and records what it got.

Each endpoint under test posts to `/hook/<name>`; the test tells the receiver the name's
secret (`expect`) and how to answer (`mode`): `ok` (200), `fail` (500 with a 5 KiB body),
`hold` (answer only once `release()` is called: a delivery stays in flight)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class Received:
    name: str
    webhook_id: str
    payload: dict[str, Any]


@dataclass
class Receiver:
    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)  # verified, answered 2xx
    arrivals: Counter[str] = field(default_factory=Counter)  # verified requests per id
    refused: list[str] = field(default_factory=list)  # signatures that did not verify
    in_flight: Counter[str] = field(default_factory=Counter)
    max_in_flight_per_id: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook/{name}"

    def expect(self, name: str, secret: str, mode: str = "ok") -> None:
        self.secrets[name] = secret
        self.modes[name] = mode

    def release(self) -> None:
        self.released.set()

    def ids(self, name: str | None = None) -> list[str]:
        return [r.webhook_id for r in self.received if name is None or r.name == name]

    async def wait_for(self, count: int, name: str | None = None, timeout_s: float = 30) -> None:
        """Until `count` distinct ids were received (2xx) for `name` (None: any)."""
        deadline = time.monotonic() + timeout_s
        while len(set(self.ids(name))) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{len(set(self.ids(name)))} of {count} webhooks received; "
                    f"refused: {self.refused[:3]}"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))

    async def hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        secret = self.secrets.get(name)
        if secret is None:
            return PlainTextResponse("unknown hook", status_code=404)
        try:
            payload = Webhook(secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            self.refused.append(f"{name}: {exc}")
            return PlainTextResponse("bad signature", status_code=400)
        webhook_id = request.headers["webhook-id"]
        self.arrivals[webhook_id] += 1
        self.in_flight[webhook_id] += 1
        self.max_in_flight_per_id = max(self.max_in_flight_per_id, self.in_flight[webhook_id])
        try:
            mode = self.modes.get(name, "ok")
            if mode == "hold":
                await self.released.wait()
                mode = self.modes.get(name, "ok")
            else:
                await asyncio.sleep(0.01)  # a moment in flight, for overlaps to show
            if mode == "fail":
                return PlainTextResponse("x" * 5000, status_code=500)
            self.received.append(Received(name, webhook_id, payload))
            self.changed.set()
            return PlainTextResponse("thanks")
        finally:
            self.in_flight[webhook_id] -= 1


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook/{name}", receiver.hook, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    receiver.port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        receiver.release()
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()
