"""What the HTTP routes need, handed to them by the composition root (payfirst.app)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.api.rate_limits import RateLimiter
from payfirst.api.waiters import PaymentWaiters
from payfirst.domain.models import Token
from payfirst.ports.store import Store


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


@dataclass(slots=True)
class Services:
    store: Store
    # Only /health talks to the chain; the payment path never does.
    chain: RpcClient | None
    max_quantity_per_request: int = 100
    clock: Callable[[], float] = field(default=time.time)
    # Wakes an in-process sender at once; separate API processes leave it a no-op.
    on_payment_queued: Callable[[], None] = field(default=lambda: None)
    # The chain payfirst settles on, and the relayer addresses that sign (for /supported).
    chain_id: int = 0
    signers: tuple[str, ...] = ()
    # How long /settle waits for confirmation before answering settlement_pending.
    settle_timeout_s: float = 30.0
    # The pay-to addresses /settle may pay (empty: none) and the smallest amount it settles.
    settle_pay_to: frozenset[str] = frozenset()
    min_settle_amount: int = 1000
    # Accept-path limits per client address and per payer (requests per minute, 0: off).
    rate_limit_per_client: int = 6000
    rate_limit_per_payer: int = 600
    max_waiters: int = 10_000
    tokens: TokenCache = field(init=False)
    per_client: RateLimiter = field(init=False)
    per_payer: RateLimiter = field(init=False)
    waiters: PaymentWaiters = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenCache(self.store)
        self.per_client = RateLimiter(self.rate_limit_per_client, what="client")
        self.per_payer = RateLimiter(self.rate_limit_per_payer, what="payer")
        self.waiters = PaymentWaiters(self.max_waiters)

    def admit_client(self, request: Request) -> None:
        """The per-client-address limit of the accept paths (raises 429)."""
        client = request.client
        self.per_client.take(client.host if client is not None else "")

    async def minted_tokens(self) -> set[str]:
        """Addresses of the tokens payfirst sells by mint (payments to them are mint-only)."""
        return {t.address for t in await self.tokens.all()}

    async def payment_assets(self) -> set[str]:
        """Assets the facilitator settles: those the registered tokens are paid in."""
        return {t.payment_asset for t in await self.tokens.all()}


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
