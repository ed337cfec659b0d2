"""The relayer's outbox: every transaction payfirst signed and persisted, broadcast in
nonce order until the chain has consumed its nonce.

A signed transaction is never dropped, even when its payment has already ended: an
unmined transaction that vanished from the node's pool would leave a nonce gap and
strand every later one, so it is re-sent (it reverts harmlessly if its authorization
expired) until the relayer's on-chain nonce passes it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from payfirst.adapters.chain_rpc import ChainUnavailable, RpcClient, RpcError
from payfirst.pipeline import faults
from payfirst.pipeline.relayer import Relayer
from payfirst.ports.store import Store

log = logging.getLogger("payfirst.outbox")

# Errors meaning the node already has the tx, or its nonce is used (mined, or consumed by
# another tx): either way there is nothing more to send, the confirmer decides the rest.
_ALREADY_THERE = ("already known", "known transaction", "nonce too low", "already imported")


@dataclass(frozen=True, slots=True)
class FlushResult:
    accepted: int
    failed: int


class Outbox:
    def __init__(self, store: Store, rpc: RpcClient, relayer: Relayer) -> None:
        self.store = store
        self.rpc = rpc
        self.relayer = relayer
        # Claims and broadcasts of one relayer take turns inside this process, so
        # transactions leave in nonce order.
        self.lock = asyncio.Lock()

    async def sync_nonce(self) -> int:
        """Never sign a nonce the chain already knows used: the relayer key may have been
        used elsewhere. Returns the next nonce. Call with `lock` held."""
        address = self.relayer.address
        chain_next = await self.rpc.get_transaction_count(address, "pending")
        return await self.store.sync_relayer_nonce(address, chain_next)

    async def flush(self, *, resend_sent: bool) -> FlushResult:
        """Broadcast the relayer's unconsumed transactions in nonce order: those not yet
        marked sent, and with `resend_sent` also the sent ones still unmined. Marks the
        ones the node took as sent. Call with `lock` held."""
        chain_nonce = await self.rpc.get_transaction_count(self.relayer.address, "latest")
        txs = await self.store.unconfirmed_txs(self.relayer.address, chain_nonce)
        if not resend_sent:
            # The head of the line (the next nonce the chain expects) goes out again too:
            # a node that lost it would otherwise hold every later tx back until the
            # confirmer's re-send. Sending known bytes again is harmless.
            txs = [tx for tx in txs if not tx.sent or tx.nonce == chain_nonce]
        if not any(not tx.sent for tx in txs) and not resend_sent:
            return FlushResult(0, 0)
        if not txs:
            return FlushResult(0, 0)
        results = await self.rpc.batch(
            [("eth_sendRawTransaction", [tx.raw_tx]) for tx in txs], return_errors=True
        )
        faults.crash_point(faults.AFTER_BROADCAST)
        accepted: list[str] = []
        failed = 0
        for tx, result in zip(txs, results, strict=True):
            if isinstance(result, RpcError) and not _already_there(result):
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
                log.info(
                    "📤 sent tx (relayer %s nonce %d, tx %s)"
                    if not isinstance(result, RpcError)
                    else "📤 tx already with the node (relayer %s nonce %d, tx %s)",
                    self.relayer.address,
                    tx.nonce,
                    tx.tx_hash,
                )
        if accepted:
            await self.store.mark_sent(accepted)
        return FlushResult(len(accepted), failed)

    async def flush_quietly(self, *, resend_sent: bool) -> FlushResult | None:
        """`flush`, logging instead of raising when the node cannot be reached."""
        try:
            return await self.flush(resend_sent=resend_sent)
        except ChainUnavailable as exc:
            log.warning("chain unreachable, broadcast postponed: %s", exc)
            return None


def _already_there(error: RpcError) -> bool:
    message = error.message.lower()
    return any(phrase in message for phrase in _ALREADY_THERE)
