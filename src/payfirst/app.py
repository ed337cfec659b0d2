"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payfirst.adapters.chain_rpc import ChainUnavailable, FailoverRpcClient, RpcClient, RpcError
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain
from payfirst.adapters.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_factory import open_store
from payfirst.api import (
    accounts,
    endpoints,
    facilitator,
    health,
    mint,
    payments,
    payouts,
    policies,
    status,
    tokens,
    views,
    webhooks,
)
from payfirst.api.access_log import AccessLog
from payfirst.api.http_limits import UNAVAILABLE_ERRORS, Guard, HttpLimits
from payfirst.api.metrics import prometheus_metrics
from payfirst.api.openapi import openapi_document
from payfirst.api.services import Services
from payfirst.config import EMBEDDED_DATABASE_DIR, Config
from payfirst.domain.errors import ConfigError
from payfirst.domain.models import Payment
from payfirst.domain.networks import Network
from payfirst.domain.reasons import Reason
from payfirst.networks_config import build_registry
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.confirmer import Confirmer
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.settings import SettingsReader
from payfirst.pipeline.worker import Worker
from payfirst.ports.store import Store
from payfirst.usecases.deps import ServedNetwork

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
        Route("/health/live", health.live, methods=["GET"]),
        Route("/health/ready", health.ready, methods=["GET"]),
        Route("/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False),
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
        # Accounts and API keys: admin routes, each needing a key (payfirst.api.auth).
        Route("/v1/me", accounts.me, methods=["GET"]),
        Route("/v1/accounts", accounts.create_account, methods=["POST"]),
        Route("/v1/accounts", accounts.list_accounts, methods=["GET"]),
        Route("/v1/accounts/{account_id}", accounts.get_account, methods=["GET"]),
        Route("/v1/accounts/{account_id}", accounts.update_account, methods=["PATCH"]),
        Route("/v1/accounts/{account_id}/revoke", accounts.revoke_account, methods=["POST"]),
        Route("/v1/keys", accounts.create_key, methods=["POST"]),
        Route("/v1/keys", accounts.list_keys, methods=["GET"]),
        Route("/v1/keys/{key_id}/revoke", accounts.revoke_key, methods=["POST"]),
        # Paid endpoints (api/endpoints.py): the registry, its 402s, Bazaar discovery.
        Route("/v1/endpoints", endpoints.create_endpoint, methods=["POST"]),
        Route("/v1/endpoints", endpoints.list_endpoints, methods=["GET"]),
        Route("/v1/endpoints/{endpoint_id}", endpoints.get_endpoint, methods=["GET"]),
        Route("/v1/endpoints/{endpoint_id}", endpoints.update_endpoint, methods=["PATCH"]),
        Route("/v1/endpoints/{endpoint_id}", endpoints.disable_endpoint, methods=["DELETE"]),
        Route(
            "/v1/endpoints/{endpoint_id}/requirements",
            endpoints.endpoint_requirements,
            methods=["GET"],
        ),
        Route("/discovery/resources", endpoints.discovery_resources, methods=["GET"]),
        # Payouts and balances (api/payouts.py).
        Route("/v1/payouts", payouts.create_payout, methods=["POST"]),
        Route("/v1/payouts", payouts.list_payouts, methods=["GET"]),
        Route("/v1/payouts/{payout_id}", payouts.get_payout, methods=["GET"]),
        Route("/v1/balance", payouts.balance, methods=["GET"]),
        # What providers read (api/views.py): payments and ledger entries, JSON or CSV.
        Route("/v1/payments", views.list_payments, methods=["GET"]),
        Route(
            "/v1/payments/{payment_id}",
            views.get_payment,
            methods=["GET"],
            name="get_provider_payment",
        ),
        Route("/v1/ledger/entries", views.list_entries, methods=["GET"]),
        # Agents' payers and spending policies (api/policies.py).
        Route("/v1/payers/challenge", policies.create_challenge, methods=["POST"]),
        Route("/v1/payers", policies.register_payer, methods=["POST"]),
        Route("/v1/payers", policies.list_payers, methods=["GET"]),
        Route("/v1/payers/{address}", policies.delete_payer, methods=["DELETE"]),
        Route("/v1/payers/{address}/policy", policies.put_policy, methods=["PUT"]),
        Route("/v1/payers/{address}/policy", policies.get_policy, methods=["GET"]),
        Route("/v1/payers/{address}/policy", policies.delete_policy, methods=["DELETE"]),
        Route("/v1/approvals", policies.list_approvals, methods=["GET"]),
        Route("/v1/approvals/{payment_id}/approve", policies.approve, methods=["POST"]),
        Route("/v1/approvals/{payment_id}/reject", policies.reject, methods=["POST"]),
        # Webhooks (api/webhooks.py).
        Route("/v1/webhooks", webhooks.create_webhook, methods=["POST"]),
        Route("/v1/webhooks", webhooks.list_webhooks, methods=["GET"]),
        Route("/v1/webhooks/{webhook_id}", webhooks.get_webhook, methods=["GET"]),
        Route("/v1/webhooks/{webhook_id}", webhooks.update_webhook, methods=["PATCH"]),
        Route("/v1/webhooks/{webhook_id}", webhooks.delete_webhook, methods=["DELETE"]),
        Route("/v1/webhooks/{webhook_id}/secret", webhooks.webhook_secret, methods=["GET"]),
        Route(
            "/v1/webhooks/{webhook_id}/secret/rotate",
            webhooks.rotate_webhook_secret,
            methods=["POST"],
        ),
        Route("/v1/webhooks/{webhook_id}/attempts", webhooks.webhook_attempts, methods=["GET"]),
        Route("/v1/webhooks/{webhook_id}/replay", webhooks.replay_webhook, methods=["POST"]),
        Route("/v1/webhooks/{webhook_id}/enable", webhooks.enable_webhook, methods=["POST"]),
        # The status page (api/status.py): the page and its assets need no key, its data does.
        Route("/status", status.status_page, methods=["GET"], include_in_schema=False),
        Route(
            "/status/assets/{name}", status.status_asset, methods=["GET"], include_in_schema=False
        ),
        Route("/v1/status/stream", status.status_stream, methods=["GET"]),
        Route("/v1/status/stuck/{payment_id}/decide", status.decide_stuck, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AccessLog), Middleware(Guard, limits=limits or HttpLimits())],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.services = svc
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": Reason.NOT_FOUND.value, "message": request.url.path}, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": Reason.METHOD_NOT_ALLOWED.value, "message": request.method}, 405)


class ChainDecider:
    """`reset-stuck` for one payment (usecases.status.DecideByChain): the confirmer of its
    relayer (else its network's first) decides it by the chain now, with the settings in
    force. A payment of no served network is left as it is."""

    def __init__(self, store: Store, confirmers: Mapping[int, Sequence[Confirmer]]) -> None:
        self._settings = SettingsReader(store)
        self._confirmers = confirmers

    async def __call__(self, payment: Payment) -> None:
        confirmers = self._confirmers.get(payment.chain_id or 0, ())
        if not confirmers:
            return
        mine = [c for c in confirmers if c.broadcaster.relayer.address == payment.relayer]
        confirmer = (mine or list(confirmers))[0]
        await confirmer.check([payment], [], await self._settings.read())


@dataclass
class NetworkRuntime:
    """One served network as opened at start-up: its chain, its relayers, its settler."""

    network: Network
    rpc: RpcClient
    relayers: list[Relayer]
    settler: str | None  # the BatchSettler payments batch through; None: one tx each
    chain: EvmChain = field(init=False)  # the Chain port on `rpc`

    def __post_init__(self) -> None:
        self.chain = EvmChain(self.rpc)

    @property
    def chain_id(self) -> int:
        return self.network.chain_id

    def worker(self, store: Store) -> Worker:
        """This network's worker (its relayer leases and loops), not started."""
        return Worker(
            store,
            self.chain,
            self.relayers,
            settler=self.settler,
            confirmation_depth=self.network.confirmation_depth,
            treasury=self.network.treasury_address,
        )

    def served(self) -> ServedNetwork:
        return ServedNetwork(self.network, self.chain, tuple(r.address for r in self.relayers))

    def confirmers(self, store: Store) -> list[Confirmer]:
        """One confirmer per relayer key: what `reset-stuck` and the status page decide
        stuck payments with (the pipeline's decision by the chain, at this network's
        depth)."""
        return [
            Confirmer(Broadcaster(store, self.chain, r), depth=self.network.confirmation_depth)
            for r in self.relayers
        ]


@dataclass
class Runtime:
    """What a payfirst process opened: the store, every served network's chain, and for a
    local run the dev chain and the embedded database it started. `close()` releases all
    of it. `rpc`, `chain` and `chain_id` are the first network's (the legacy single chain
    when PAYFIRST_RPC_URL or the dev chain is in use)."""

    config: Config
    store: Store
    networks: list[NetworkRuntime]
    devchain: DevChain | None = None
    deployment: Deployment | None = None
    database: EmbeddedPostgres | None = None

    @property
    def rpc(self) -> RpcClient:
        return self.networks[0].rpc

    @property
    def chain(self) -> EvmChain:
        return self.networks[0].chain

    @property
    def chain_id(self) -> int:
        return self.networks[0].chain_id

    def workers(self) -> list[Worker]:
        """One worker per served network, all on the one store."""
        return [n.worker(self.store) for n in self.networks]

    def served(self) -> tuple[ServedNetwork, ...]:
        return tuple(n.served() for n in self.networks)

    def decide_by_chain(self) -> ChainDecider:
        """The status page's "decide by the chain", over every network's relayers."""
        return ChainDecider(
            self.store, {n.chain_id: n.confirmers(self.store) for n in self.networks}
        )

    async def close(self) -> None:
        for rpc in {id(n.rpc): n.rpc for n in self.networks}.values():
            await rpc.aclose()
        await self.store.close()
        if self.database is not None:
            await self.database.stop()
        if self.devchain is not None:
            await self.devchain.stop()


def legacy_relayer_keys(config: Config, chain_id: int) -> tuple[str, ...]:
    """The relayer keys of the legacy single chain: the configured ones, else (on a local
    anvil chain only) anvil's first dev key."""
    if config.relayer_keys:
        return tuple(config.relayer_keys)
    if chain_id != ANVIL_CHAIN_ID:
        raise ConfigError(
            "PAYFIRST_RELAYER_KEY, PAYFIRST_RELAYER_KEYS or PAYFIRST_RELAYER_KEY_FILE "
            f"is required on chain {chain_id} (only a local anvil chain has a "
            "default relayer key)"
        )
    return (ANVIL_KEYS[0],)


async def open_runtime(config: Config, *, start_devchain: bool) -> Runtime:
    """Open the store and every served network's chain. With `start_devchain` (`payfirst
    serve`): without PAYFIRST_RPC_URL and PAYFIRST_NETWORKS_FILE, start anvil on the chain
    kept in var/devchain-state.json (deploying the demo contracts only if they are not
    there) and register the demo token; without PAYFIRST_DATABASE_URL, start the embedded
    PostgreSQL on var/postgres. `config.reset` deletes both first."""
    devchain: DevChain | None = None
    deployment: Deployment | None = None
    embedded: EmbeddedPostgres | None = None
    rpc_url = config.rpc_url
    if config.reset and start_devchain:
        _reset_local_state(config)
    if rpc_url is None and config.networks_file is None:
        if not start_devchain:
            raise ConfigError(
                "PAYFIRST_RPC_URL is required (only `payfirst serve` starts a dev chain), "
                "or PAYFIRST_NETWORKS_FILE"
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
    runtime = Runtime(config, store, [], devchain, deployment, embedded)
    try:
        runtime.networks = await open_networks(config, store, rpc_url, deployment)
        if deployment is not None:
            await store.upsert_token(deployment.to_token())
    except BaseException:
        await runtime.close()
        raise
    return runtime


async def open_networks(
    config: Config, store: Store, legacy_rpc_url: str | None, deployment: Deployment | None
) -> list[NetworkRuntime]:
    """The served networks of the registry (`payfirst.networks_config`), each on an RPC
    client over all its RPC URLs (the next one when one cannot be reached:
    `FailoverRpcClient`), every URL's chain id checked. The legacy chain (`legacy_rpc_url`)
    comes first, and the store adopts it as its default network (its rows of no recorded
    chain)."""
    clients: list[RpcClient] = []  # closed again if start-up fails
    try:
        legacy: RpcClient | None = None
        legacy_chain_id: int | None = None
        if legacy_rpc_url is not None:
            legacy = RpcClient(legacy_rpc_url)
            clients.append(legacy)
            legacy_chain_id = await _read_chain_id(legacy)
            legacy.network = f"eip155:{legacy_chain_id}"
            settler = config.settler_address or (
                deployment.settler if deployment is not None and deployment.settler else None
            )
            keys = legacy_relayer_keys(config, legacy_chain_id)
            # The dev chain's treasury, unless one is configured: the first relayer key, so
            # the dev instance pays providers out (a payout is signed by the treasury).
            treasury = config.treasury_address or (
                Relayer.from_key(keys[0], legacy_chain_id).address if deployment else None
            )
            config = replace(
                config, relayer_keys=keys, settler_address=settler, treasury_address=treasury
            )
        registry = build_registry(
            config, legacy_chain_id=legacy_chain_id, legacy_rpc_url=legacy_rpc_url
        )
        active = sorted(registry.active(), key=lambda n: n.chain_id != legacy_chain_id)
        if not active:
            raise ConfigError(
                "no network is served: set PAYFIRST_RPC_URL, or give a network rpc_urls and "
                "relayer keys in PAYFIRST_NETWORKS_FILE"
            )
        if legacy_chain_id is None and await store.default_network_rows():
            # Never guessed, even with one network served: its chain may not be the one
            # those payments were signed and sent on.
            raise ConfigError(
                "the database holds unfinished payments or relayer nonces of no recorded "
                "chain (from the single-chain setup, PAYFIRST_RPC_URL), and that chain is not "
                "configured: run `payfirst adopt-chain --chain-id N` with the chain id they "
                "settle on, or set PAYFIRST_RPC_URL to that chain"
            )
        opened: list[NetworkRuntime] = []
        for network in active:
            if legacy is not None and network.chain_id == legacy_chain_id:
                rpc = legacy
            else:
                rpc = FailoverRpcClient(network.rpc_urls, network=network.caip2)
                clients.append(rpc)
                await _check_chain_ids(rpc, network)
            relayers = [Relayer.from_key(k, network.chain_id) for k in network.relayer_keys]
            opened.append(NetworkRuntime(network, rpc, relayers, network.settler_address))
        if legacy_chain_id is not None:
            await store.adopt_default_chain(legacy_chain_id)
    except BaseException:
        for client in clients:
            await client.aclose()
        raise
    return opened


async def _read_chain_id(rpc: RpcClient) -> int:
    try:
        return await rpc.chain_id()
    except (ChainUnavailable, RpcError) as exc:
        raise Unreachable(
            f"the chain RPC at {redact(rpc.url)} is unreachable: {_why(exc)}"
        ) from None


async def _check_chain_ids(rpc: FailoverRpcClient, network: Network) -> None:
    """Every RPC URL of `network` serves its chain, the fallbacks too (one serving another
    chain would otherwise show up only in an outage, with that chain's nonces and
    balances). A URL that cannot be reached stops the start like a single one would."""
    for url in rpc.urls:
        try:
            chain_id = await rpc.chain_id_at(url)
        except (ChainUnavailable, RpcError) as exc:
            raise Unreachable(
                f"network {network.caip2}: the chain RPC at {redact(url)} is unreachable: "
                f"{_why(exc)}"
            ) from None
        if chain_id != network.chain_id:
            raise ConfigError(
                f"network {network.caip2}: the RPC at {redact(url)} serves another chain "
                f"({chain_id})"
            )


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
