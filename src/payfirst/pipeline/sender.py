"""The sender loop: pending payments -> signed, persisted (processing) -> broadcast (sent).

Write-ahead rule: a payment's signed transaction, hash and relayer nonce are committed
together with the relayer's next nonce BEFORE anything is broadcast, so a crash at any
instant leaves either an untouched pending payment or a signed transaction the broadcaster
re-sends on restart — never a broadcast transaction payfirst does not know about.

Batched settlement: with a BatchSettler configured and the `payment_tx_batching` setting
on, one tx settles many payments of one asset (`settle(asset, authorizations)`, each item
able to fail on its own) under ONE relayer nonce; a batch of one is a direct
`transferWithAuthorization` call (cheaper). The gas is explicit (base + per item) and a
batch is capped so it stays under half the latest block's gas limit."""

from __future__ import annotations

import logging
import time
from uuid import UUID

from payfirst.domain.models import Payment, SignedTx
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus
from payfirst.evm import calls
from payfirst.pipeline import faults
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.payability import sort_payable
from payfirst.pipeline.relayer import (
    GAS_TRANSFER_WITH_AUTHORIZATION,
    Fees,
    Relayer,
    fees_for,
    max_settle_items,
    settle_gas,
)
from payfirst.ports.chain import AuthorizationRef, ChainUnavailable

log = logging.getLogger("payfirst.sender")

# Settlement txs one tick may sign before broadcasting them together (a long queue).
MAX_TXS_PER_TICK = 20

# A payment whose authorization expires sooner than this cannot be settled reliably.
MIN_VALIDITY_LEFT_S = 5


class Sender:
    def __init__(self, broadcaster: Broadcaster, settler: str | None = None) -> None:
        self.broadcaster = broadcaster
        self.store = broadcaster.store
        # The BatchSettler contract; None: one tx per payment.
        self.settler = settler
        self.chain_id = broadcaster.chain_id

    async def run_once(self, limit: int, *, batching: bool = True) -> int:
        """Up to `limit` payments; returns how many it signed. With `batching` (and a
        settler) they go in as few `settle` txs as the gas cap allows, else one tx each."""
        await self._fail_expired()
        block = await self.broadcaster.chain.get_block("latest")  # once per tick: fees, gas cap
        if block is None:
            raise ChainUnavailable("no latest block")
        fees = fees_for(block.base_fee)
        relayer = self.broadcaster.relayer

        def sign(payment: Payment, nonce: int) -> SignedTx:
            return _sign_direct(relayer, payment, nonce, fees)

        async with self.broadcaster.lock:
            await self.broadcaster.sync_nonce()
            if batching and self.settler is not None:
                # A settle tx carries at most payment_batch_size payments (and what the
                # block gas allows); a long queue gets several txs in one tick.
                per_tx = min(limit, max_settle_items(block.gas_limit))
                payable = await self._payable(per_tx * MAX_TXS_PER_TICK, block.number)
                claimed = await self._claim_settle_txs(
                    per_tx * MAX_TXS_PER_TICK, per_tx, fees, payable
                )
            else:
                payable = await self._payable(limit, block.number)
                claimed = await self.store.claim_payments(
                    relayer.address, limit, sign, only=payable, chain_id=self.chain_id
                )
            if claimed:
                faults.crash_point(faults.AFTER_PERSIST)
            # Also re-sends what an earlier tick or a crashed run signed but did not send.
            result = await self.broadcaster.broadcast_unconfirmed(resend_sent=False)
        if claimed:
            log.info(
                "sender tick: %d payments signed, %d txs broadcast, %d refused",
                len(claimed),
                result.accepted,
                result.failed,
            )
        return len(claimed)

    async def _payable(self, limit: int, block: int) -> list[UUID]:
        """The oldest `limit` pending payments whose payers can pay them (see
        payability.py), by the payers' balances at `block` (one read per payer) and, for
        the payments those balances would refuse or hold back, the authorizations' state
        at `block` (someone else may have submitted it): many-item reads, a few round trips
        for the whole queue. Those that cannot be paid fail `insufficient_funds` without a
        tx (a mint's supply is released)."""
        pending = await self.store.list_payments(
            PaymentStatus.PENDING, limit, chain_id=self.chain_id
        )
        if not pending:
            return []
        holders = sorted({(p.payment_asset, p.payer) for p in pending})
        answers = await self.broadcaster.chain.balances(holders, block)
        balances = dict(zip(holders, answers, strict=True))
        in_flight = await self.store.amounts_in_flight(
            sorted({p.payer for p in pending}), chain_id=self.chain_id
        )
        decided = sort_payable(pending, balances, {}, in_flight)
        doubtful = [p for p, _ in decided.unpayable] + [
            p for p in pending if p.id in set(decided.deferred)
        ]
        if doubtful:
            states = await self.broadcaster.chain.authorization_states(
                [
                    AuthorizationRef(p.payment_asset, p.payer, p.authorization.nonce)
                    for p in doubtful
                ],
                block,
            )
            used = {p.id: state for p, state in zip(doubtful, states, strict=True)}
            decided = sort_payable(pending, balances, used, in_flight)
        for payment, balance in decided.unpayable:
            if await self.store.fail_payment(
                payment.id,
                PaymentStatus.FAILED,
                f"{Reason.INSUFFICIENT_FUNDS}: the payer's balance {balance} does not cover "
                f"{payment.amount}",
                only_from=PaymentStatus.PENDING,
            ):
                log.warning(
                    "payment %s failed: insufficient_funds (payer %s has %d, needs %d)",
                    payment.id,
                    payment.payer,
                    balance,
                    payment.amount,
                )
        return decided.payable

    async def _claim_settle_txs(
        self, limit: int, cap: int, fees: Fees, payable: list[UUID]
    ) -> list[Payment]:
        """Claims (signs and persists) `settle` txs of at most `cap` payments each until
        `limit` payments are claimed or none is pending. Call with the lock held."""
        relayer = self.broadcaster.relayer
        settler = self.settler
        assert settler is not None

        def sign(payments: list[Payment], nonce: int) -> SignedTx:
            if len(payments) == 1:
                return _sign_direct(relayer, payments[0], nonce, fees)
            asset = payments[0].payment_asset
            data = calls.settle_batch(asset, [p.authorization for p in payments])
            return relayer.sign_call(settler, data, nonce, settle_gas(len(payments)), fees)

        claimed: list[Payment] = []
        while len(claimed) < limit:
            wanted = min(cap, limit - len(claimed))
            one_tx = await self.store.claim_payments_one_tx(
                relayer.address, wanted, sign, only=payable, chain_id=self.chain_id
            )
            if len(one_tx) > 1:
                log.info(
                    "%d payments in one tx (nonce %s, tx %s)",
                    len(one_tx),
                    one_tx[0].tx_nonce,
                    one_tx[0].tx_hash,
                )
            if not one_tx:
                break
            claimed += one_tx  # a short claim: that asset is done, another may follow
        return claimed

    async def _fail_expired(self) -> None:
        deadline = int(time.time()) + MIN_VALIDITY_LEFT_S
        # A payment held for its owner's approval expires alike (its reservation released).
        for status in (PaymentStatus.PENDING, PaymentStatus.AWAITING_APPROVAL):
            expiring = await self.store.list_payments(
                status, 1000, expiring_before=deadline, chain_id=self.chain_id
            )
            for payment in expiring:
                if await self.store.fail_payment(
                    payment.id,
                    PaymentStatus.FAILED,
                    "authorization expired before it could be sent",
                    only_from=status,
                ):
                    log.warning(
                        "payment %s failed: authorization expired before sending", payment.id
                    )


def _sign_direct(relayer: Relayer, payment: Payment, nonce: int, fees: Fees) -> SignedTx:
    """A tx calling the asset's `transferWithAuthorization` for this one payment."""
    data = calls.transfer_with_authorization_vrs(payment.authorization)
    return relayer.sign_call(
        payment.payment_asset, data, nonce, GAS_TRANSFER_WITH_AUTHORIZATION, fees
    )
