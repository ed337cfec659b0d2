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

import asyncio
import logging
import time
from typing import Any
from uuid import UUID

from payfirst.adapters import contracts
from payfirst.adapters.chain_rpc import ChainUnavailable, RpcError
from payfirst.domain.models import Payment, SignedTx
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus
from payfirst.pipeline import faults
from payfirst.pipeline.outbox import Outbox
from payfirst.pipeline.payability import sort_payable
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

# Balance and authorization reads per JSON-RPC batch (providers cap batch sizes).
BALANCE_READS_PER_BATCH = 100

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
                payable = await self._payable(per_tx * MAX_TXS_PER_TICK, block["number"])
                claimed = await self._claim_batches(
                    per_tx * MAX_TXS_PER_TICK, per_tx, fees, payable
                )
            else:
                payable = await self._payable(batch_size, block["number"])
                claimed = await self.store.claim_payments(
                    relayer.address, batch_size, sign, only=payable
                )
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

    async def _payable(self, limit: int, block: str) -> list[UUID]:
        """The oldest `limit` pending payments whose payers can pay them (see
        payability.py), by the payers' balances at `block` (one read per payer) and, for
        the payments those balances would refuse or hold back, the authorizations' state
        at `block` (someone else may have submitted it). Reads go in JSON-RPC batches of
        BALANCE_READS_PER_BATCH, concurrently. Those that cannot be paid fail
        `insufficient_funds` without a tx (a mint's supply is released)."""
        pending = await self.store.list_payments(PaymentStatus.PENDING, limit)
        if not pending:
            return []
        holders = sorted({(p.payment_asset, p.payer) for p in pending})
        answers = await self._read_all(
            [
                ("eth_call", [{"to": asset, "data": contracts.balance_of(payer)}, block])
                for asset, payer in holders
            ]
        )
        balances = {h: _uint(a) for h, a in zip(holders, answers, strict=True)}
        in_flight = await self.store.amounts_in_flight(sorted({p.payer for p in pending}))
        decided = sort_payable(pending, balances, {}, in_flight)
        doubtful = [p for p, _ in decided.unpayable] + [
            p for p in pending if p.id in set(decided.deferred)
        ]
        if doubtful:
            states = await self._read_all(
                [
                    (
                        "eth_call",
                        [
                            {
                                "to": p.payment_asset,
                                "data": contracts.authorization_state(
                                    p.payer, p.authorization.nonce
                                ),
                            },
                            block,
                        ],
                    )
                    for p in doubtful
                ]
            )
            used = {
                p.id: None if (n := _uint(a)) is None else n != 0
                for p, a in zip(doubtful, states, strict=True)
            }
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

    async def _read_all(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Results in call order; a chunk the node refused as a whole is unknown (None)."""

        async def chunk(calls: list[tuple[str, list[Any]]]) -> list[Any]:
            try:
                return await self.outbox.rpc.batch(calls, return_errors=True)
            except RpcError as exc:
                log.warning("balance reads refused (%s): those payments wait", exc)
                return [None] * len(calls)

        size = BALANCE_READS_PER_BATCH
        parts = await asyncio.gather(
            *(chunk(calls[i : i + size]) for i in range(0, len(calls), size))
        )
        return [answer for part in parts for answer in part]

    async def _claim_batches(
        self, batch_size: int, cap: int, fees: Fees, payable: list[UUID]
    ) -> list[Payment]:
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
            batch = await self.store.claim_payment_batch(
                relayer.address, wanted, sign, only=payable
            )
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


def _uint(answer: Any) -> int | None:
    """A uint256 (or bool) `eth_call` answer, or None when the node gave none that reads."""
    if not isinstance(answer, str):
        return None
    try:
        return int(contracts.decode_result(["uint256"], answer)[0])
    except Exception:  # an empty or short answer: not a balance
        return None


def _quantity(value: Any) -> int:
    """A JSON-RPC hex quantity (None, e.g. no baseFeePerGas before EIP-1559: 0)."""
    if value is None:
        return 0
    return int(value, 16) if isinstance(value, str) else int(value)
