"""The status page's data (api/status.py): the queue, rates, latencies, failures and stuck
payments from the database, and each relayer's gas and nonces from its chain; and the
one-click "decide by the chain" of a stuck payment.

A snapshot is read at most once per `ttl_s` in a process, whatever the number of open
pages: the streams share it (one read in flight at a time). Deciding is the `reset-stuck`
logic (the confirmer's decision by the chain at the confirmation depth), handed in by the
composition root as `DecideByChain`: the use cases never import the pipeline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Payment
from payfirst.domain.reasons import Reason
from payfirst.domain.settings import RuntimeSettings
from payfirst.domain.status import QueueSnapshot
from payfirst.domain.statuses import PaymentStatus
from payfirst.ports.store import Store
from payfirst.usecases.deps import ServedNetworks
from payfirst.usecases.readiness import RelayerState, relayer_states

#: Decides a `sent` payment by what the chain says (the `reset-stuck` logic); the payment
#: may stay `sent` when the chain does not decide it yet (its tx is re-sent).
DecideByChain = Callable[[Payment], Awaitable[None]]

#: How long one snapshot serves every open page.
SNAPSHOT_TTL_S: Final = 0.9


@dataclass(frozen=True, slots=True)
class RelayerView:
    network: str  # CAIP-2
    chain_id: int
    state: RelayerState
    stored_next_nonce: int | None  # None: it has signed nothing on this chain yet


@dataclass(frozen=True, slots=True)
class Status:
    queue: QueueSnapshot
    relayers: tuple[RelayerView, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    payment_id: UUID
    status: PaymentStatus  # after the decision (`sent`: not decided yet)
    error: str | None
    tx_hash: str | None

    @property
    def decided(self) -> bool:
        return self.status is not PaymentStatus.SENT


class StatusBoard:
    def __init__(
        self,
        store: Store,
        networks: ServedNetworks,
        decide_by_chain: DecideByChain | None = None,
        *,
        ttl_s: float = SNAPSHOT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._networks = networks
        self._decide = decide_by_chain
        self._ttl_s = ttl_s
        self._clock = clock
        self._latest: tuple[float, asyncio.Future[Status]] | None = None

    async def snapshot(self) -> Status:
        """The status now (at most `ttl_s` old), read once for every caller."""
        now = self._clock()
        if self._latest is None or now - self._latest[0] >= self._ttl_s:
            self._latest = (now, asyncio.ensure_future(self._read()))
        try:
            return await asyncio.shield(self._latest[1])
        except Exception:
            self._latest = None  # a failed read is not served to the next caller
            raise

    async def _read(self) -> Status:
        settings, _ = RuntimeSettings.from_rows(await self._store.get_settings())
        queue = await self._store.queue_snapshot(stuck_after_s=settings.confirmation_timeout_s)
        served = [s for s in self._networks.all if s.chain is not None and s.signers]
        states = await asyncio.gather(*(relayer_states(self._store, s) for s in served))
        relayers: list[RelayerView] = []
        for network, found in zip(served, states, strict=True):
            chain_id = network.network.chain_id
            for state in found:
                stored = await self._store.get_relayer_nonce(state.address, chain_id=chain_id)
                relayers.append(RelayerView(network.network.caip2, chain_id, state, stored))
        return Status(queue, tuple(relayers))

    async def decide(self, payment_id: UUID) -> Decision:
        """Decide a `sent` payment by the chain now. Raises PaymentRejected: unknown
        payment (404), not `sent` (409), or no way to decide in this process (503)."""
        payment = await self._store.get_payment(payment_id)
        if payment is None:
            raise PaymentRejected(Reason.UNKNOWN_PAYMENT, "no such payment")
        if payment.status is not PaymentStatus.SENT:
            raise PaymentRejected(
                Reason.PAYMENT_NOT_SENT,
                f"the payment is {payment.status.value}: only a sent payment is decided "
                "by the chain",
            )
        if self._decide is None:
            raise PaymentRejected(
                Reason.SERVICE_UNAVAILABLE,
                "this process holds no relayer key to decide by the chain with",
            )
        await self._decide(payment)
        self._latest = None  # the next snapshot shows the outcome
        after = await self._store.get_payment(payment_id)
        assert after is not None  # payments are never deleted
        return Decision(payment_id, after.status, after.error, after.tx_hash)
