"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payfirst.adapters.chain_rpc import ChainUnavailable, RpcClient, RpcError
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain
from payfirst.adapters.store_factory import open_store
from payfirst.api import facilitator, health, mint, payments, tokens
from payfirst.api.http_limits import UNAVAILABLE_ERRORS, Guard, HttpLimits
from payfirst.api.openapi import openapi_document
from payfirst.api.services import Services
from payfirst.config import DEFAULT_DATABASE_URL, Config
from payfirst.domain.errors import ConfigError
from payfirst.pipeline.relayer import Relayer
from payfirst.ports.store import Store

log = logging.getLogger("payfirst")

# py_ecc (imported through eth-account) raises the recursion limit to 100,000 at import, so
# C code recursing on client input overflows the C stack (a segfault) long before a
# RecursionError. Client JSON never recurses deeper than payfirst.jsonsafe.MAX_DEPTH; this
# puts the interpreter's own default back as a second line of defence.
RECURSION_LIMIT = 1000
sys.setrecursionlimit(RECURSION_LIMIT)

ANVIL_CHAIN_ID = 31337
DEVCHAIN_FILE = "var/devchain.json"


class Unreachable(Exception):
    """The database or the chain could not be reached at start-up; the message names it."""


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.app.routes))


def build_app(svc: Services, limits: HttpLimits | None = None) -> Starlette:
    """The HTTP application over already-opened services (the caller owns their lifetime).
    `limits`: request body size and read time (payfirst.api.http_limits)."""
    routes = [
        Route("/health", health.health, methods=["GET"]),
        Route("/api/tokens", tokens.list_tokens, methods=["GET"]),
        Route("/api/tokens/{address}", tokens.get_token, methods=["GET"]),
        Route("/api/mint/{token}", mint.mint, methods=["POST"]),
        Route("/api/x402-batch-mint", mint.batch_mint, methods=["POST"]),
        Route("/api/payment/{payment_id}", payments.get_payment, methods=["GET"]),
        Route("/api/payment/{payment_id}/events", payments.payment_events, methods=["GET"]),
        Route("/api/payment-stats", payments.payment_stats, methods=["GET"]),
        Route("/supported", facilitator.supported, methods=["GET"]),
        Route("/verify", facilitator.verify, methods=["POST"]),
        Route("/settle", facilitator.settle, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, limits=limits or HttpLimits())],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.services = svc
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not_found", "message": request.url.path}, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "method_not_allowed", "message": request.method}, 405)


@dataclass
class Runtime:
    """What a payfirst process opened: the store, the chain, and for a local run the dev
    chain it started. `close()` releases all of it."""

    config: Config
    store: Store
    rpc: RpcClient
    chain_id: int
    devchain: DevChain | None = None
    deployment: Deployment | None = None

    def relayers(self) -> list[Relayer]:
        keys = self.config.relayer_keys
        if not keys:
            if self.chain_id != ANVIL_CHAIN_ID:
                raise ConfigError(
                    "PAYFIRST_RELAYER_KEY, PAYFIRST_RELAYER_KEYS or PAYFIRST_RELAYER_KEY_FILE "
                    f"is required on chain {self.chain_id} (only a local anvil chain has a "
                    "default relayer key)"
                )
            keys = (ANVIL_KEYS[0],)
        return [Relayer.from_key(key, self.chain_id) for key in keys]

    def settler(self) -> str | None:
        """The BatchSettler payments are batched through: PAYFIRST_SETTLER_ADDRESS, else the
        one the local dev chain deployed; None: one transaction per payment."""
        if self.config.settler_address is not None:
            return self.config.settler_address
        if self.deployment is not None and self.deployment.settler:
            return self.deployment.settler
        return None

    async def close(self) -> None:
        await self.rpc.aclose()
        await self.store.close()
        if self.devchain is not None:
            await self.devchain.stop()


async def open_runtime(config: Config, *, start_devchain: bool) -> Runtime:
    """Open the store and the chain. Without PAYFIRST_RPC_URL and with `start_devchain`,
    start anvil, deploy the demo contracts and register the demo token."""
    devchain: DevChain | None = None
    deployment: Deployment | None = None
    rpc_url = config.rpc_url
    if rpc_url is None:
        if not start_devchain:
            raise ConfigError(
                "PAYFIRST_RPC_URL is required (only `payfirst serve` starts a dev chain)"
            )
        devchain = DevChain()
        deployment = await devchain.start(port=config.anvil_port)
        deployment.save(DEVCHAIN_FILE)
        rpc_url = deployment.rpc_url
        if config.database_url == DEFAULT_DATABASE_URL:
            # A fresh chain knows none of the old file's payments: start the file afresh.
            _remove_sqlite_file(DEFAULT_DATABASE_URL.removeprefix("sqlite:///"))
    try:
        store = await open_database(config)
    except BaseException:
        if devchain is not None:
            await devchain.stop()
        raise
    rpc = RpcClient(rpc_url)
    runtime = Runtime(config, store, rpc, 0, devchain, deployment)
    try:
        try:
            runtime.chain_id = await rpc.chain_id()
        except (ChainUnavailable, RpcError) as exc:
            raise Unreachable(
                f"the chain RPC at {redact(rpc_url)} is unreachable: {_why(exc)}"
            ) from None
        if deployment is not None:
            await store.upsert_token(deployment.to_token())
    except BaseException:
        await runtime.close()
        raise
    return runtime


# Start-up failures that mean "cannot use this database", not a bug in payfirst.
_DATABASE_REFUSED: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


async def open_database(config: Config) -> Store:
    """The store of PAYFIRST_DATABASE_URL; Unreachable (one line naming it) if it cannot
    be reached or refuses payfirst."""
    try:
        return await open_store(config.database_url)
    except _DATABASE_REFUSED as exc:
        raise Unreachable(
            f"the database at {redact(config.database_url)} is unreachable: {_why(exc)}"
        ) from None


def redact(url: str) -> str:
    """`url` without a password (or an RPC provider's key in the userinfo)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, hostpart = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}" if ":" in userinfo else f"{scheme}://***@{hostpart}"


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _remove_sqlite_file(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        file = Path(path + suffix)
        if file.exists():
            file.unlink()
            log.info("fresh dev chain: removed the old %s", file)
