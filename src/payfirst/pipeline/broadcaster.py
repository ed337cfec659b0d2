"""The relayer's broadcaster: sends every transaction payfirst signed and persisted, in
nonce order, until the chain has consumed its nonce; resyncs the nonce; bumps the fees
of a stuck one.

A signed transaction is never dropped, even when its payment has already ended: an
unmined transaction that vanished from the node's pool would leave a nonce gap and
strand every later one, so it is re-sent (it reverts harmlessly if its authorization
expired) until the relayer's on-chain nonce passes it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from payfirst.metrics import metrics
from payfirst.pipeline import faults
from payfirst.pipeline.decide import bumped_fee
from payfirst.pipeline.relayer import Fees, Relayer, fees_for, tx_fees
from payfirst.ports.chain import Chain, ChainRejected, ChainUnavailable
from payfirst.ports.store import Store

log = logging.getLogger("payfirst.broadcaster")

# Errors meaning the node already has the tx, or its nonce is used (mined, or consumed by
# another tx): either way there is nothing more to send, the confirmer decides the rest.
_ALREADY_THERE = ("already known", "known transaction", "nonce too low", "already imported")


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    accepted: int
    failed: int


class Broadcaster:
    def __init__(self, store: Store, chain: Chain, relayer: Relayer) -> None:
        self.store = store
        self.chain = chain
        self.relayer = relayer
        # The network whose payments and relayer state this pipeline works on, passed to
        # every store call: the chain the relayer signs for, so a claim never takes another
        # chain's payments nor signs them with another chain's nonce.
        self.chain_id = relayer.chain_id
        self.network = f"eip155:{relayer.chain_id}"  # its metrics' and log records' label
        # Claims and broadcasts of one relayer take turns inside this process, so
        # transactions leave in nonce order.
        self.lock = asyncio.Lock()
        # The head-of-line tx (nonce, hash) and since when (monotonic) it has been waiting.
        self._head: tuple[tuple[int, str], float] | None = None
        self._over_cap: set[int] = set()  # nonces whose bump the fee cap refused (logged)

    async def sync_nonce(self) -> int:
        """Never sign a nonce the chain already knows used: the relayer key may have been
        used elsewhere. Returns the next nonce. Call with `lock` held."""
        address = self.relayer.address
        chain_next = await self.chain.get_transaction_count(address, "pending")
        return await self.store.sync_relayer_nonce(address, chain_next, chain_id=self.chain_id)

    async def broadcast_unconfirmed(self, *, resend_sent: bool) -> BroadcastResult:
        """Broadcast the relayer's unconsumed transactions in nonce order: those not yet
        marked sent, and with `resend_sent` also the sent ones still unmined. Marks the
        ones the node took as sent. Call with `lock` held."""
        chain_nonce = await self.chain.get_transaction_count(self.relayer.address, "latest")
        txs = await self.store.unconfirmed_txs(
            self.relayer.address, chain_nonce, chain_id=self.chain_id
        )
        if not resend_sent:
            # The head of the line (the next nonce the chain expects) goes out again too:
            # a node that lost it would otherwise hold every later tx back until the
            # confirmer's re-send. Sending known bytes again is harmless.
            txs = [tx for tx in txs if not tx.sent or tx.nonce == chain_nonce]
        if not any(not tx.sent for tx in txs) and not resend_sent:
            return BroadcastResult(0, 0)
        if not txs:
            return BroadcastResult(0, 0)
        results = await self.chain.send_raw_transactions([tx.raw_tx for tx in txs])
        faults.crash_point(faults.AFTER_BROADCAST)
        accepted: list[str] = []
        failed = 0
        for tx, result in zip(txs, results, strict=True):
            if isinstance(result, ChainRejected) and not _already_there(result):
                failed += 1
                log.warning(
                    "broadcast refused: nonce %d tx %s: %s (will retry)",
                    tx.nonce,
                    tx.tx_hash,
                    result.message,
                )
                continue
            if not tx.sent:
                accepted.append(tx.tx_hash)
                log.debug(
                    "sent tx (relayer %s nonce %d, tx %s)"
                    if not isinstance(result, ChainRejected)
                    else "tx already with the node (relayer %s nonce %d, tx %s)",
                    self.relayer.address,
                    tx.nonce,
                    tx.tx_hash,
                )
        if accepted:
            await self.store.mark_sent(accepted)
            metrics().txs.labels("sent", self.network).inc(len(accepted))
            log.info(
                "sent %d tx(s) of relayer %s (nonces %d..%d)",
                len(accepted),
                self.relayer.address,
                min(tx.nonce for tx in txs if tx.tx_hash in accepted),
                max(tx.nonce for tx in txs if tx.tx_hash in accepted),
                extra={"network": self.network, "count": len(accepted)},
            )
        return BroadcastResult(len(accepted), failed)

    async def bump_stuck(
        self, after_s: float, max_fee_per_gas: int, *, stuck_after_s: float | None = None
    ) -> str | None:
        """Fee bumping: the tx whose nonce the chain expects next, unmined for `after_s`
        seconds and offering less than the market — or unmined for `stuck_after_s`
        (confirmation_timeout_s) whatever it offers: stuck — is replaced by the same tx
        (same nonce) with maxFeePerGas and maxPriorityFeePerGas each raised by 10% at least
        (the EIP-1559 replacement rule) and at least to the market's, never above
        `max_fee_per_gas`; a stuck one again every `stuck_after_s` while it stays unmined.
        The replacement is persisted (the old tx stays on record: either may be mined)
        BEFORE it is broadcast. Returns its hash. Call with `lock` held."""
        address = self.relayer.address
        chain_nonce = await self.chain.get_transaction_count(address, "latest")
        head = next(
            (
                tx
                for tx in await self.store.unconfirmed_txs(
                    address, chain_nonce, chain_id=self.chain_id
                )
                if tx.nonce == chain_nonce and tx.sent
            ),
            None,
        )
        now = time.monotonic()
        if head is None:
            self._head = None
            return None
        if self._head is None or self._head[0] != (head.nonce, head.tx_hash):
            self._head = ((head.nonce, head.tx_hash), now)
            return None
        waited = now - self._head[1]
        stuck = stuck_after_s is not None and waited >= stuck_after_s
        if waited < after_s and not stuck:
            return None
        old = tx_fees(head.raw_tx)
        market = fees_for(await self.chain.latest_base_fee())
        if (
            old.max_fee_per_gas >= market.max_fee_per_gas
            and old.max_priority_fee_per_gas >= market.max_priority_fee_per_gas
            and not stuck
        ):
            return None  # not below the market: the re-sends are what it needs, for now
        priority = bumped_fee(old.max_priority_fee_per_gas, market.max_priority_fee_per_gas)
        fees = Fees(
            max_fee_per_gas=max(bumped_fee(old.max_fee_per_gas, market.max_fee_per_gas), priority),
            max_priority_fee_per_gas=priority,
        )
        if fees.max_fee_per_gas > max_fee_per_gas:
            if head.nonce not in self._over_cap:
                self._over_cap.add(head.nonce)
                log.warning(
                    "tx %s (nonce %d) is stuck below the market, but its replacement would "
                    "offer %d wei/gas, above the cap (max_fee_per_gas_gwei): not bumped",
                    head.tx_hash,
                    head.nonce,
                    fees.max_fee_per_gas,
                )
            return None
        replacement = self.relayer.replace_fees(head.raw_tx, fees)
        if not await self.store.replace_tx(
            address, head.nonce, head.tx_hash, replacement, chain_id=self.chain_id
        ):
            return None  # decided meanwhile
        self._head = ((head.nonce, replacement.hash), now)
        metrics().txs.labels("replaced", self.network).inc()
        log.warning(
            "tx %s (nonce %d) unmined for %.0fs%s: replaced by %s "
            "(maxFeePerGas %d -> %d, maxPriorityFeePerGas %d -> %d)",
            head.tx_hash,
            head.nonce,
            waited,
            " (stuck: confirmation_timeout_s)" if stuck else " below the market",
            replacement.hash,
            old.max_fee_per_gas,
            fees.max_fee_per_gas,
            old.max_priority_fee_per_gas,
            fees.max_priority_fee_per_gas,
        )
        try:
            await self.chain.send_raw_transaction(replacement.raw)
        except ChainRejected as exc:
            if not _already_there(exc):
                log.warning(
                    "replacement %s refused (will re-send): %s", replacement.hash, exc.message
                )
        return replacement.hash

    async def broadcast_unconfirmed_quietly(self, *, resend_sent: bool) -> BroadcastResult | None:
        """`broadcast_unconfirmed`, logging instead of raising when the node cannot be reached."""
        try:
            return await self.broadcast_unconfirmed(resend_sent=resend_sent)
        except ChainUnavailable as exc:
            log.warning("chain unreachable, broadcast postponed: %s", exc)
            return None


def _already_there(error: ChainRejected) -> bool:
    message = error.message.lower()
    return any(phrase in message for phrase in _ALREADY_THERE)
