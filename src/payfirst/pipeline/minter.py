"""The mint loop: pending mint items -> one signed `batchMint` per token (persisted before
broadcast, like payments) -> sent. Items `hasMinted()` already reports are marked
completed without a transaction. Only payments that were confirmed ever have mint items."""

from __future__ import annotations

import logging
from uuid import UUID

from payfirst.adapters import contracts
from payfirst.domain.models import MintItem, SignedTx
from payfirst.pipeline.confirmer import has_minted
from payfirst.pipeline.outbox import Outbox
from payfirst.pipeline.relayer import GAS_BATCH_MINT_BASE, GAS_BATCH_MINT_PER_ITEM, current_fees

log = logging.getLogger("payfirst.minter")

# batchMint txs one tick may sign before broadcasting them together.
MAX_TXS_PER_TICK = 20


class Minter:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.store = outbox.store

    async def run_once(self, batch_size: int) -> int:
        """Up to MAX_TXS_PER_TICK `batchMint` txs of `batch_size` items each, broadcast
        together; returns how many items it signed or found already minted."""
        fees = await current_fees(self.outbox.rpc)
        relayer = self.outbox.relayer

        def sign(batch: list[MintItem], nonce: int) -> SignedTx:
            data = contracts.batch_mint([m.payer for m in batch], [m.mint_id for m in batch])
            gas = GAS_BATCH_MINT_BASE + GAS_BATCH_MINT_PER_ITEM * len(batch)
            return relayer.sign_call(batch[0].token_address, data, nonce, gas, fees)

        handled = 0
        async with self.outbox.lock:
            await self.outbox.sync_nonce()
        for _ in range(MAX_TXS_PER_TICK):
            items = await self.store.pending_mint_items(batch_size)
            if not items:
                break
            todo = await self._skip_minted(items)  # chain reads outside the lock
            handled += len(items) - len(todo)
            if not todo:
                continue
            async with self.outbox.lock:
                claimed = await self.store.claim_mint_items(relayer.address, todo, sign)
            if not claimed:
                break  # another worker took them
            handled += len(claimed)
            log.info("🪙 batchMint of %d items signed (tx %s)", len(claimed), claimed[0].tx_hash)
        if handled:
            async with self.outbox.lock:
                await self.outbox.flush(resend_sent=False)
        return handled

    async def _skip_minted(self, items: list[MintItem]) -> list[UUID]:
        """Completes the items the contract says are minted; returns the others' ids."""
        minted = await has_minted(self.outbox.rpc, items)
        already = [m.id for m, yes in zip(items, minted, strict=True) if yes]
        if already:
            await self.store.complete_mint_items(already, None)
            log.info("🪙 %d mint items were already minted on chain", len(already))
        return [m.id for m, yes in zip(items, minted, strict=True) if not yes]
