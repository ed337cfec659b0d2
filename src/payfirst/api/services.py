"""What the HTTP routes need, handed to them by the composition root (payfirst.app)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.domain.models import Token
from payfirst.ports.store import Store


class TokenCache:
    """Token configuration for the mint path, kept for a moment to spare a query per
    request. Only price, asset and payTo are read from it: the supply cap is enforced by
    the database when the payment is queued, never from this copy."""

    def __init__(self, store: Store, ttl_s: float = 2.0) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Token | None]] = {}

    async def get(self, address: str) -> Token | None:
        now = time.monotonic()
        hit = self._entries.get(address)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        token = await self._store.get_token(address)
        self._entries[address] = (now, token)
        return token


@dataclass(slots=True)
class Services:
    store: Store
    # Only /health talks to the chain; the payment path never does.
    chain: RpcClient | None
    max_quantity_per_request: int = 100
    clock: Callable[[], float] = field(default=time.time)
    # Wakes an in-process sender at once; separate API processes leave it a no-op.
    on_payment_queued: Callable[[], None] = field(default=lambda: None)
    tokens: TokenCache = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenCache(self.store)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
