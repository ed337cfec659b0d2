"""What the HTTP routes need, handed to them by the composition root (payfirst.app)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from uuid import UUID

from starlette.requests import Request

from payfirst.api.rate_limits import RateLimiter
from payfirst.api.waiters import PaymentWaiters, TooManyWaiters, wait_for
from payfirst.domain.models import Token
from payfirst.domain.networks import KNOWN_NETWORKS, Network, caip2_id
from payfirst.ports.chain import Chain
from payfirst.ports.store import Store
from payfirst.usecases.deps import CannotWait, ServedNetwork, ServedNetworks
from payfirst.usecases.endpoints import EndpointRegistry
from payfirst.usecases.facilitation import Facilitator
from payfirst.usecases.policies import PolicyCache, PolicyGate
from payfirst.usecases.purchase import MintSales
from payfirst.usecases.status import DecideByChain, StatusBoard
from payfirst.usecases.views import EXPORT_LIMIT
from payfirst.usecases.webhooks import UrlCheck
from payfirst.x402.networks import CHAIN_ID_V1_NETWORKS


class TokenCache:
    """Token configuration for the mint path, kept for a moment to spare a query per
    request. Only price, asset and payTo are read from it: the supply cap is enforced by
    the database when the payment is queued, never from this copy. One refresh at a time:
    requests arriving while it runs share its answer instead of each querying."""

    def __init__(self, store: Store, ttl_s: float = 5.0) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, asyncio.Future[Token | None]]] = {}
        self._all: tuple[float, asyncio.Future[list[Token]]] | None = None

    async def all(self) -> list[Token]:
        now = time.monotonic()
        if self._all is None or now - self._all[0] >= self._ttl_s:
            self._all = (now, asyncio.ensure_future(self._store.list_tokens()))
        try:
            return await asyncio.shield(self._all[1])
        except Exception:
            self._all = None
            raise

    async def get(self, address: str) -> Token | None:
        now = time.monotonic()
        hit = self._entries.get(address)
        if hit is None or now - hit[0] >= self._ttl_s:
            hit = (now, asyncio.ensure_future(self._store.get_token(address)))
            self._entries[address] = hit
        try:
            return await asyncio.shield(hit[1])
        except Exception:
            self._entries.pop(address, None)  # a failed lookup is not remembered
            raise


@dataclass(frozen=True, slots=True)
class _EventSignal:
    event: asyncio.Event

    def clear(self) -> None:
        self.event.clear()

    async def wait(self, timeout_s: float) -> bool:
        return await wait_for(self.event, timeout_s)


class StoreChanges:
    """The use cases' PaymentChanges over this process's waiters, woken by the store's
    change notices (PostgreSQL NOTIFY), never by polling."""

    def __init__(self, waiters: PaymentWaiters, store: Store) -> None:
        self._waiters = waiters
        self._store = store

    @contextlib.asynccontextmanager
    async def watch(self, payment_id: UUID) -> AsyncIterator[_EventSignal]:
        await self._waiters.start(self._store)
        with contextlib.ExitStack() as stack:
            try:
                event = stack.enter_context(self._waiters.waiting(payment_id))
            except TooManyWaiters:
                raise CannotWait from None
            yield _EventSignal(event)


@dataclass(slots=True)
class Services:
    store: Store
    # The default network's chain (a single-chain setup): read by /health and by the
    # facilitator's balance checks; the mint path never uses it. With `networks` given,
    # each network's own chain is used instead.
    chain: Chain | None
    max_quantity_per_request: int = 100
    clock: Callable[[], float] = field(default=time.time)
    # Wakes an in-process sender at once; separate API processes leave it a no-op.
    on_payment_queued: Callable[[], None] = field(default=lambda: None)
    # A single-chain setup: the chain payfirst settles on (0: none), and the relayer
    # addresses that sign (for /supported). Ignored when `networks` is given.
    chain_id: int = 0
    signers: tuple[str, ...] = ()
    # The networks settled here (each its chain and signers); () : the single chain above.
    networks: tuple[ServedNetwork, ...] = ()
    # How long /settle waits for confirmation before answering settlement_pending.
    settle_timeout_s: float = 30.0
    # The pay-to addresses /settle may pay (empty: none) and the smallest amount it settles.
    settle_pay_to: frozenset[str] = frozenset()
    min_settle_amount: int = 1000
    # Accept-path limits per client address and per payer (requests per minute, 0: off).
    rate_limit_per_client: int = 6000
    rate_limit_per_payer: int = 600
    max_waiters: int = 10_000
    # The platform's treasury on the single chain above (`networks` carry their own).
    treasury_address: str | None = None
    # The platform's fee on payments it collects for a provider without a fee of its own.
    platform_fee_bps: int = 0
    # Checks a webhook URL's addresses when it is registered (the SSRF guard's, given by
    # the composition root); None: public addresses only (payfirst.api.webhooks).
    webhook_url_check: UrlCheck | None = None
    # The most rows a CSV export of payments or ledger entries holds (more: 400).
    export_limit: int = EXPORT_LIMIT
    # The status page (api/status.py): served unless PAYFIRST_STATUS_PAGE=0; its "decide by
    # the chain" (the reset-stuck logic, given by the composition root; None: 503).
    status_page: bool = True
    decide_by_chain: DecideByChain | None = None
    tokens: TokenCache = field(init=False)
    per_client: RateLimiter = field(init=False)
    per_payer: RateLimiter = field(init=False)
    waiters: PaymentWaiters = field(init=False)
    served: ServedNetworks = field(init=False)
    sales: MintSales = field(init=False)
    facilitator: Facilitator = field(init=False)
    endpoints: EndpointRegistry = field(init=False)
    policies: PolicyGate = field(init=False)
    status: StatusBoard = field(init=False)
    status_streams: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.served = ServedNetworks(self.networks or self._single_network())
        self.tokens = TokenCache(self.store)
        self.per_client = RateLimiter(self.rate_limit_per_client, what="client")
        self.per_payer = RateLimiter(self.rate_limit_per_payer, what="payer")
        self.waiters = PaymentWaiters(self.max_waiters)
        self.endpoints = EndpointRegistry(
            self.store, self.served, self.tokens, platform_fee_bps=self.platform_fee_bps
        )
        self.status = StatusBoard(self.store, self.served, self.decide_by_chain)
        # Payers' spending policies, cached in this process, dropped on every change notice.
        self.policies = PolicyGate(PolicyCache(self.store))
        self.sales = MintSales(
            store=self.store,
            tokens=self.tokens.get,
            clock=self.clock,
            per_payer=self.per_payer,
            on_payment_queued=self.on_payment_queued,
            networks=self.served if self.served.all else None,
        )
        self.facilitator = Facilitator(
            store=self.store,
            networks=self.served,
            tokens=self.tokens,
            clock=self.clock,
            per_payer=self.per_payer,
            changes=StoreChanges(self.waiters, self.store),
            on_payment_queued=self.on_payment_queued,
            settle_pay_to=self.settle_pay_to,
            min_settle_amount=self.min_settle_amount,
            settle_timeout_s=self.settle_timeout_s,
            endpoints=self.endpoints,
            policies=self.policies,
        )

    def _single_network(self) -> tuple[ServedNetwork, ...]:
        """The `chain_id` setup as a served network (a known one keeps its assets)."""
        if not self.chain_id:
            return ()
        network = next(
            (n for n in KNOWN_NETWORKS if n.chain_id == self.chain_id),
            Network(
                caip2=caip2_id(self.chain_id),
                chain_id=self.chain_id,
                v1_name=CHAIN_ID_V1_NETWORKS.get(self.chain_id),
            ),
        )
        if self.treasury_address is not None:
            network = replace(network, treasury_address=self.treasury_address)
        return (ServedNetwork(network, self.chain, self.signers),)

    def admit_client(self, request: Request) -> None:
        """The per-client-address limit of the accept paths (raises 429)."""
        client = request.client
        self.per_client.take(client.host if client is not None else "")


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
