"""The sender loop: pending payments -> signed, persisted (processing) -> broadcast (sent).

Write-ahead rule: a payment's signed transaction, hash and relayer nonce are committed
together with the relayer's next nonce BEFORE anything is broadcast, so a crash at any
instant leaves either an untouched pending payment or a signed transaction the outbox
re-sends on restart — never a broadcast transaction payfirst does not know about.

Batched settlement: with a BatchSettler configured and the `payment_tx_batching` setting
on, one tx settles many payments of one asset (`settle(asset, authorizations)`, each item
able to fail on its own) under ONE relayer nonce; a batch of one is a direct
`transferWithAuthorization` call (cheaper). The gas is explicit (base + per item) and a
batch is capped so it stays under half the latest block's gas limit."""

from __future__ import annotations

import logging
import time
from typing import Any

from payfirst.adapters import contracts
from payfirst.adapters.chain_rpc import ChainUnavailable
from payfirst.domain.models import Payment, SignedTx
from payfirst.domain.statuses import PaymentStatus
from payfirst.pipeline import faults
from payfirst.pipeline.outbox import Outbox
from payfirst.pipeline.relayer import (
    GAS_TRANSFER_WITH_AUTHORIZATION,
    Fees,
    Relayer,
    fees_for,
    max_settle_items,
    settle_gas,
)

log = logging.getLogger("payfirst.sender")

# Settlement txs one tick may sign before broadcasting them together (a long queue).
MAX_TXS_PER_TICK = 20

# A payment whose authorization expires sooner than this cannot be settled reliably.
MIN_VALIDITY_LEFT_S = 5


class Sender:
    def __init__(self, outbox: Outbox, settler: str | None = None) -> None:
        self.outbox = outbox
        self.store = outbox.store
        # The BatchSettler contract; None: one tx per payment.
        self.settler = settler

    async def run_once(self, batch_size: int, *, batching: bool = True) -> int:
        """Up to `batch_size` payments; returns how many it signed. With `batching` (and a
        settler) they go in as few `settle` txs as the gas cap allows, else one tx each."""
        await self._fail_expired()
        block = await self.outbox.rpc.get_block("latest")  # once per tick: fees, gas cap
        if block is None:
            raise ChainUnavailable("no latest block")
        fees = fees_for(_quantity(block.get("baseFeePerGas")))
        relayer = self.outbox.relayer

        def sign(payment: Payment, nonce: int) -> SignedTx:
            return _sign_direct(relayer, payment, nonce, fees)

        async with self.outbox.lock:
            await self.outbox.sync_nonce()
            if batching and self.settler is not None:
                # A settle tx carries at most payment_batch_size payments (and what the
                # block gas allows); a long queue gets several txs in one tick.
                per_tx = min(batch_size, max_settle_items(_quantity(block.get("gasLimit"))))
                claimed = await self._claim_batches(per_tx * MAX_TXS_PER_TICK, per_tx, fees)
            else:
                claimed = await self.store.claim_payments(relayer.address, batch_size, sign)
            if claimed:
                faults.crash_point(faults.AFTER_PERSIST)
            # Also re-sends what an earlier tick or a crashed run signed but did not send.
            result = await self.outbox.flush(resend_sent=False)
        if claimed:
            log.info(
                "✅ batch complete: %d payments signed, %d txs broadcast, %d refused",
                len(claimed),
                result.accepted,
                result.failed,
            )
        return len(claimed)

    async def _claim_batches(self, batch_size: int, cap: int, fees: Fees) -> list[Payment]:
        """Claims (signs and persists) `settle` txs of at most `cap` payments each until
        `batch_size` payments are claimed or none is pending. Call with the lock held."""
        relayer = self.outbox.relayer
        settler = self.settler
        assert settler is not None

        def sign(payments: list[Payment], nonce: int) -> SignedTx:
            if len(payments) == 1:
                return _sign_direct(relayer, payments[0], nonce, fees)
            asset = payments[0].payment_asset
            data = contracts.settle_batch(asset, [p.authorization for p in payments])
            return relayer.sign_call(settler, data, nonce, settle_gas(len(payments)), fees)

        claimed: list[Payment] = []
        while len(claimed) < batch_size:
            wanted = min(cap, batch_size - len(claimed))
            batch = await self.store.claim_payment_batch(relayer.address, wanted, sign)
            if len(batch) > 1:
                log.info(
                    "📦 %d payments in one tx (nonce %s, tx %s)",
                    len(batch),
                    batch[0].nonce,
                    batch[0].tx_hash,
                )
            if not batch:
                break
            claimed += batch  # a short batch: that asset is done, another may follow
        return claimed

    async def _fail_expired(self) -> None:
        deadline = int(time.time()) + MIN_VALIDITY_LEFT_S
        expiring = await self.store.list_payments(
            PaymentStatus.PENDING, 1000, expiring_before=deadline
        )
        for payment in expiring:
            if await self.store.fail_payment(
                payment.id,
                PaymentStatus.FAILED,
                "authorization expired before it could be sent",
                only_from=PaymentStatus.PENDING,
            ):
                log.warning(
                    "❌ payment %s failed: authorization expired before sending", payment.id
                )


def _sign_direct(relayer: Relayer, payment: Payment, nonce: int, fees: Fees) -> SignedTx:
    """A tx calling the asset's `transferWithAuthorization` for this one payment."""
    data = contracts.transfer_with_authorization_vrs(payment.authorization)
    return relayer.sign_call(
        payment.payment_asset, data, nonce, GAS_TRANSFER_WITH_AUTHORIZATION, fees
    )


def _quantity(value: Any) -> int:
    """A JSON-RPC hex quantity (None, e.g. no baseFeePerGas before EIP-1559: 0)."""
    if value is None:
        return 0
    return int(value, 16) if isinstance(value, str) else int(value)
