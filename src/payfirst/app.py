"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payfirst.adapters.chain_rpc import ChainUnavailable, RpcClient, RpcError
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain
from payfirst.adapters.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError
from payfirst.adapters.store_factory import open_store
from payfirst.api import facilitator, health, mint, payments, tokens
from payfirst.api.http_limits import UNAVAILABLE_ERRORS, Guard, HttpLimits
from payfirst.api.openapi import openapi_document
from payfirst.api.services import Services
from payfirst.config import EMBEDDED_DATABASE_DIR, Config
from payfirst.domain.errors import ConfigError
from payfirst.domain.reasons import Reason
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
DEVCHAIN_STATE_FILE = "var/devchain-state.json"


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
    return JSONResponse({"error": Reason.NOT_FOUND.value, "message": request.url.path}, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": Reason.METHOD_NOT_ALLOWED.value, "message": request.method}, 405)


@dataclass
class Runtime:
    """What a payfirst process opened: the store, the chain, and for a local run the dev
    chain and the embedded database it started. `close()` releases all of it."""

    config: Config
    store: Store
    rpc: RpcClient
    chain_id: int
    devchain: DevChain | None = None
    deployment: Deployment | None = None
    database: EmbeddedPostgres | None = None

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
        if self.database is not None:
            await self.database.stop()
        if self.devchain is not None:
            await self.devchain.stop()


async def open_runtime(config: Config, *, start_devchain: bool) -> Runtime:
    """Open the store and the chain. With `start_devchain` (`payfirst serve`): without
    PAYFIRST_RPC_URL, start anvil on the chain kept in var/devchain-state.json (deploying
    the demo contracts only if they are not there) and register the demo token; without
    PAYFIRST_DATABASE_URL, start the embedded PostgreSQL on var/postgres. `config.reset`
    deletes both first."""
    devchain: DevChain | None = None
    deployment: Deployment | None = None
    embedded: EmbeddedPostgres | None = None
    rpc_url = config.rpc_url
    if config.reset and start_devchain:
        _reset_local_state(config)
    if rpc_url is None:
        if not start_devchain:
            raise ConfigError(
                "PAYFIRST_RPC_URL is required (only `payfirst serve` starts a dev chain)"
            )
        devchain = DevChain()
        deployment = await devchain.start(
            port=config.anvil_port,
            state_file=DEVCHAIN_STATE_FILE,
            previous=_previous_deployment(),
        )
        deployment.save(DEVCHAIN_FILE)
        rpc_url = deployment.rpc_url
        if devchain.reused:
            log.info("dev chain continued from %s", DEVCHAIN_STATE_FILE)
    try:
        if config.database_url is None and start_devchain:
            embedded = EmbeddedPostgres(EMBEDDED_DATABASE_DIR)
            try:
                if devchain is not None and not devchain.reused and embedded.data.exists():
                    # A new chain knows none of the old payments: the database starts afresh.
                    embedded.wipe()
                    log.info("new dev chain: the embedded database starts afresh")
                url = await embedded.start()
            except EmbeddedPostgresError as exc:
                raise Unreachable(f"the embedded PostgreSQL did not start: {exc}") from None
            store = await open_database(replace(config, database_url=url))
        else:
            store = await open_database(config)
    except BaseException:
        if embedded is not None:
            await embedded.stop()
        if devchain is not None:
            await devchain.stop()
        raise
    rpc = RpcClient(rpc_url)
    runtime = Runtime(config, store, rpc, 0, devchain, deployment, embedded)
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


def _previous_deployment() -> Deployment | None:
    """The demo contracts deployed on the kept dev chain (var/devchain.json), if any."""
    if not Path(DEVCHAIN_STATE_FILE).exists() or not Path(DEVCHAIN_FILE).exists():
        return None
    try:
        return Deployment.load(DEVCHAIN_FILE)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _reset_local_state(config: Config) -> None:
    """PAYFIRST_RESET / `serve --reset`: delete the embedded database and the dev chain."""
    if config.database_url is not None:
        raise ConfigError(
            "PAYFIRST_RESET / --reset wipes only the embedded database under var/: unset "
            "PAYFIRST_DATABASE_URL, or empty your own database yourself"
        )
    try:
        EmbeddedPostgres(EMBEDDED_DATABASE_DIR).wipe()
    except EmbeddedPostgresError as exc:
        raise ConfigError(f"cannot reset: {exc}") from None
    if config.rpc_url is None:
        for name in (DEVCHAIN_STATE_FILE, DEVCHAIN_FILE):
            Path(name).unlink(missing_ok=True)
    log.info("reset: the embedded database and the dev chain start afresh")


# Start-up failures that mean "cannot use this database", not a bug in payfirst.
_DATABASE_REFUSED: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


async def open_database(config: Config) -> Store:
    """The store of PAYFIRST_DATABASE_URL, else of the embedded PostgreSQL a running
    `payfirst serve` started; Unreachable (one line naming it) if it cannot be reached or
    refuses payfirst."""
    url = config.database_url
    if url is None:
        url = EmbeddedPostgres(EMBEDDED_DATABASE_DIR).running_url()
        if url is None:
            raise Unreachable(
                f"no embedded PostgreSQL is running in {EMBEDDED_DATABASE_DIR} (start "
                "`payfirst serve`, or set PAYFIRST_DATABASE_URL)"
            )
    try:
        return await open_store(url)
    except _DATABASE_REFUSED as exc:
        raise Unreachable(f"the database at {redact(url)} is unreachable: {_why(exc)}") from None


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
