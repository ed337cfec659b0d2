"""Sending webhooks: signed the Standard Webhooks way (the `standardwebhooks` package), over
an HTTP client that connects only to addresses the operator allows (the SSRF guard).

The guard sits in the client's network backend: every new connection resolves the host,
checks EVERY address it resolves to (payfirst.domain.webhooks.check_addresses) and connects
to the checked address itself, so a DNS answer that changes between the check and the
connection (DNS rebinding) cannot slip a private address in. The URL keeps its host name:
TLS verifies the certificate for it (SNI) and the Host header is the receiver's own.
Redirects are never followed; a response body is read up to 1 KiB; 5 s to connect, 15 s in
all."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import httpcore
import httpx
from standardwebhooks import Webhook

from payfirst.domain.webhooks import (
    MAX_RESPONSE_EXCERPT,
    AddressPolicy,
    AttemptResult,
    DueDelivery,
    UrlRefused,
    check_addresses,
    parse_url,
)

CONNECT_TIMEOUT_S: Final = 5.0
TOTAL_TIMEOUT_S: Final = 15.0
MAX_CONNECTIONS: Final = 64
USER_AGENT: Final = "payfirst-webhooks/1"


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal: itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


async def checked_addresses(url: str, policy: AddressPolicy) -> list[str]:
    """The addresses `url`'s host resolves to, all of them allowed; UrlRefused otherwise."""
    parsed = parse_url(url)
    try:
        addresses = await resolve(parsed.host, parsed.port)
    except OSError as exc:
        raise UrlRefused(f"the host {parsed.host!r} does not resolve: {exc}") from None
    return check_addresses(addresses, policy)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's backend, connecting only to checked addresses."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = check_addresses(await resolve(host, port), self._policy)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from None
        except UrlRefused as exc:
            raise httpcore.ConnectError(str(exc)) from None
        # The checked address itself: no second lookup between the check and the connect.
        return await self._inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks never use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: AddressPolicy, max_connections: int) -> None:
        super().__init__(trust_env=False)
        # Rebuilt with the guarded backend (httpx does not take a backend of its own).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(
    policy: AddressPolicy, max_connections: int = MAX_CONNECTIONS
) -> httpx.AsyncClient:
    """An httpx client for webhooks: the guard, no redirects, no proxies from the
    environment, 5 s to connect."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy, max_connections),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
    )


def signed_headers(delivery: DueDelivery, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed at `at`)."""
    secrets = [delivery.secret]
    if delivery.previous_secret is not None:  # rotated lately: receivers may not know the new
        secrets.append(delivery.previous_secret)
    signature = " ".join(
        Webhook(secret).sign(delivery.message_id, at, delivery.payload) for secret in secrets
    )
    return {
        "content-type": "application/json",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


class WebhookSender:
    """The dispatcher's sender (payfirst.pipeline.webhooks.Sender): one signed POST per
    attempt, never raising; the outcome says what happened."""

    def __init__(self, policy: AddressPolicy, max_connections: int = MAX_CONNECTIONS) -> None:
        self._policy = policy
        self._client = guarded_client(policy, max_connections)

    async def send(self, delivery: DueDelivery) -> AttemptResult:
        started = datetime.now(UTC)
        clock = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - clock) * 1000)

        try:
            parse_url(delivery.url)
            async with asyncio.timeout(TOTAL_TIMEOUT_S):
                request = self._client.build_request(
                    "POST",
                    delivery.url,
                    content=delivery.payload.encode(),
                    headers=signed_headers(delivery, started),
                )
                response = await self._client.send(request, stream=True)
                try:
                    body = await _excerpt(response)
                finally:
                    await response.aclose()
            return AttemptResult(started, took(), status=response.status_code, body=body)
        except TimeoutError:
            return AttemptResult(started, took(), error=f"no answer within {TOTAL_TIMEOUT_S:.0f}s")
        except (UrlRefused, httpx.HTTPError) as exc:
            return AttemptResult(started, took(), error=_error_text(exc))

    async def aclose(self) -> None:
        await self._client.aclose()


async def _excerpt(response: httpx.Response) -> str:
    """The body's first MAX_RESPONSE_EXCERPT bytes at most (the rest is never read)."""
    chunks = bytearray()
    async for chunk in response.aiter_raw():
        chunks += chunk
        if len(chunks) >= MAX_RESPONSE_EXCERPT:
            break
    return bytes(chunks[:MAX_RESPONSE_EXCERPT]).decode("utf-8", "replace")[:MAX_RESPONSE_EXCERPT]


def _error_text(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def payload_text(payload: Any) -> str:
    """A payload as the compact JSON text that is signed and sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=False)
