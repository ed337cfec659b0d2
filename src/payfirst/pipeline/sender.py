"""The sender loop: pending payments -> signed, persisted (processing) -> broadcast (sent).

Write-ahead rule: a payment's signed transaction, hash and relayer nonce are committed
together with the relayer's next nonce BEFORE anything is broadcast, so a crash at any
instant leaves either an untouched pending payment or a signed transaction the outbox
re-sends on restart — never a broadcast transaction payfirst does not know about."""

from __future__ import annotations

import logging
import time

from payfirst.adapters import contracts
from payfirst.domain.models import Payment, SignedTx
from payfirst.domain.statuses import PaymentStatus
from payfirst.pipeline import faults
from payfirst.pipeline.outbox import Outbox
from payfirst.pipeline.relayer import GAS_TRANSFER_WITH_AUTHORIZATION, current_fees

log = logging.getLogger("payfirst.sender")

# A payment whose authorization expires sooner than this cannot be settled reliably.
MIN_VALIDITY_LEFT_S = 5


class Sender:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.store = outbox.store

    async def run_once(self, batch_size: int) -> int:
        """One batch; returns how many payments it signed."""
        await self._fail_expired()
        fees = await current_fees(self.outbox.rpc)
        relayer = self.outbox.relayer

        def sign(payment: Payment, nonce: int) -> SignedTx:
            data = contracts.transfer_with_authorization_vrs(payment.authorization)
            return relayer.sign_call(
                payment.payment_asset, data, nonce, GAS_TRANSFER_WITH_AUTHORIZATION, fees
            )

        async with self.outbox.lock:
            await self.outbox.sync_nonce()
            claimed = await self.store.claim_payments(relayer.address, batch_size, sign)
            faults.crash_point(faults.AFTER_PERSIST)
            # Also re-sends what an earlier tick or a crashed run signed but did not send.
            result = await self.outbox.flush(resend_sent=False)
        if claimed:
            log.info(
                "✅ batch complete: %d signed, %d broadcast, %d refused",
                len(claimed),
                result.accepted,
                result.failed,
            )
        return len(claimed)

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
