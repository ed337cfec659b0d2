"""The small dependencies the use cases are handed, besides the Store and Chain ports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from payfirst.domain.models import Token
from payfirst.domain.networks import Network, NetworkRegistry
from payfirst.ports.chain import Chain

#: Seconds since the epoch (authorization validity windows are checked against it).
Clock = Callable[[], float]

#: Looks a token up by its checksummed address (a cache, or the store itself).
TokenLookup = Callable[[str], Awaitable[Token | None]]


class RateLimit(Protocol):
    def take(self, key: str) -> None:
        """Count one request of `key`; raises PaymentRejected(RATE_LIMITED) past the limit."""


class Tokens(Protocol):
    """The tokens payfirst sells, possibly cached for a moment."""

    async def get(self, address: str) -> Token | None: ...

    async def all(self) -> list[Token]: ...


class CannotWait(Exception):
    """Too many clients are already waiting: answer with what is known now."""


class ChangeSignal(Protocol):
    """Set whenever the watched payment may have changed."""

    def clear(self) -> None: ...

    async def wait(self, timeout_s: float) -> bool:
        """Until set or `timeout_s` passes; True if set."""


class PaymentChanges(Protocol):
    def watch(self, payment_id: UUID) -> AbstractAsyncContextManager[ChangeSignal]:
        """A signal for the payment's changes, registered on entry (so a change committed
        after the caller's next read still sets it). Raises CannotWait on entry."""


@dataclass(frozen=True, slots=True)
class ServedNetwork:
    """A network this instance settles on: its chain (None: the facilitator leaves the
    balance and authorization checks to settlement) and the relayers that sign on it."""

    network: Network
    chain: Chain | None
    signers: tuple[str, ...] = ()


class ServedNetworks:
    """The served networks, looked up by chain id or by the name a requirement gives (a
    CAIP-2 id or an x402 v1 name)."""

    def __init__(self, served: Iterable[ServedNetwork]) -> None:
        self.all = tuple(served)
        self._names = NetworkRegistry(s.network for s in self.all)
        self._by_chain_id = {s.network.chain_id: s for s in self.all}

    def get(self, name: str) -> ServedNetwork | None:
        network = self._names.get(name)
        return None if network is None else self._by_chain_id[network.chain_id]

    def by_chain_id(self, chain_id: int) -> ServedNetwork | None:
        return self._by_chain_id.get(chain_id)

    def describe(self) -> str:
        return ", ".join(s.network.caip2 for s in self.all) or "no network"
