"""The mint loop: pending mint items -> one signed `batchMint` per token (persisted before
broadcast, like payments) -> sent. Items `hasMinted()` already reports are marked
completed without a transaction. Only payments that were confirmed ever have mint items."""

from __future__ import annotations

import logging
from uuid import UUID

from payfirst.domain.models import MintItem, SignedTx
from payfirst.evm import calls
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.confirmer import has_minted
from payfirst.pipeline.relayer import GAS_BATCH_MINT_BASE, GAS_BATCH_MINT_PER_ITEM, current_fees

log = logging.getLogger("payfirst.minter")

# batchMint txs one tick may sign before broadcasting them together.
MAX_TXS_PER_TICK = 20


class Minter:
    def __init__(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster
        self.store = broadcaster.store
        self._depth = 0  # the confirmation depth of the current tick

    async def run_once(self, limit: int, depth: int = 0) -> int:
        """Up to MAX_TXS_PER_TICK `batchMint` txs of up to `limit` items each, broadcast
        together; returns how many items it signed or found already minted (at the
        confirmation `depth`)."""
        fees = await current_fees(self.broadcaster.chain)
        self._depth = depth
        relayer = self.broadcaster.relayer

        def sign(tx_items: list[MintItem], nonce: int) -> SignedTx:
            data = calls.batch_mint([m.payer for m in tx_items], [m.mint_id for m in tx_items])
            gas = GAS_BATCH_MINT_BASE + GAS_BATCH_MINT_PER_ITEM * len(tx_items)
            return relayer.sign_call(tx_items[0].token_address, data, nonce, gas, fees)

        handled = 0
        async with self.broadcaster.lock:
            await self.broadcaster.sync_nonce()
        for _ in range(MAX_TXS_PER_TICK):
            items = await self.store.pending_mint_items(limit, chain_id=self.broadcaster.chain_id)
            if not items:
                break
            completed, todo = await self._skip_minted(items)  # chain reads outside the lock
            handled += completed
            if not todo:
                if completed:
                    continue
                break  # minted above the depth only: the confirmation depth decides them
            async with self.broadcaster.lock:
                claimed = await self.store.claim_mint_items(
                    relayer.address, todo, sign, chain_id=self.broadcaster.chain_id
                )
            if not claimed:
                break  # another worker took them
            handled += len(claimed)
            log.info("batchMint of %d items signed (tx %s)", len(claimed), claimed[0].tx_hash)
        if handled:
            async with self.broadcaster.lock:
                await self.broadcaster.broadcast_unconfirmed(resend_sent=False)
        return handled

    async def _skip_minted(self, items: list[MintItem]) -> tuple[int, list[UUID]]:
        """Completes the items the contract says are minted at the confirmation depth;
        returns how many, and the ids of those not minted at all. An item minted above the depth only
        is left pending: a reorg may still undo that mint, and minting it again now would
        revert the whole batchMint."""
        chain = self.broadcaster.chain
        minted_now = await has_minted(chain, items)
        deep = [False] * len(items)
        if any(minted_now):
            block = max(0, await chain.block_number() - self._depth)
            deep = await has_minted(chain, items, block)
        already = [m.id for m, yes in zip(items, deep, strict=True) if yes]
        if already:
            await self.store.complete_mint_items(already, None)
            log.info("%d mint items were already minted on chain", len(already))
        return len(already), [m.id for m, yes in zip(items, minted_now, strict=True) if not yes]
