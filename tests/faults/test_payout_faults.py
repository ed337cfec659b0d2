"""Payouts under chain faults are never paid twice: behind an RPC that hides fresh
receipts, and through a reorg that removes the block holding a payout's tx.

The treasury's worker reads the chain through a proxy whose receipts of the newest blocks
answer null while nonces see the head: for a while the payout's nonce is consumed at the
decision block and no receipt of its tx is to be found. Nothing protects a payout from
being paid twice (no authorization), so that absence must never make payfirst sign it
again: it waits, and completes once the receipt shows."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from payfirst.adapters.store_postgres import PostgresStore
from tests.e2e.payout_harness import CREDIT, payout_stack, wait_for
from tests.faults.lagging_rpc import LaggingRpc
from tests.fixtures.chain import SharedChain
from tests.fixtures.store import fetch_raw

#: Receipts of the newest LAG blocks are hidden (~3 s of the dev chain's blocks), far
#: longer than the confirmation depth (1 block): many confirmer ticks see the nonce
#: consumed with no receipt.
LAG = 6
#: The reorg case's confirmation depth: room for a reorg of the newest blocks before it.
DEPTH = 6


async def test_a_hidden_receipt_never_pays_a_payout_twice(
    pg_store: PostgresStore, shared_chain: SharedChain
) -> None:
    _, deployment = await shared_chain.checkout()
    proxy = LaggingRpc(deployment.rpc_url, lag=LAG)
    await proxy.start()
    try:
        async with payout_stack(pg_store, shared_chain, worker_rpc_url=proxy.url) as env:
            provider, payee = await env.provider()
            await env.collect(provider.account.id, [1, 2])
            nonce_before = await env.h.rpc.get_transaction_count(env.treasury, "pending")
            hidden_before = proxy.hidden_receipts

            answer = await env.call("POST", "/v1/payouts", provider, json={})
            assert answer.status_code == 201, answer.text
            payout_id = answer.json()["id"]
            assert await env.decided(payout_id, max_wait=90) == "completed"

            assert proxy.hidden_receipts > hidden_before, "the lie was not exercised"
            assert await env.h.usdc_balance(payee) == 2 * CREDIT
            (transfer,) = await env.transfers_to(payee)
            # One tx signed for it, one nonce used: never signed anew.
            (row,) = await fetch_raw(
                env.store, "SELECT tx_hash, nonce FROM payouts WHERE id = $1", UUID(payout_id)
            )
            assert row["tx_hash"] == transfer["transactionHash"]
            assert row["nonce"] == nonce_before
            assert await env.h.rpc.get_transaction_count(env.treasury, "latest") == (
                nonce_before + 1
            )
    finally:
        await proxy.stop()


async def test_a_payout_whose_receipt_a_reorg_removes_waits_and_is_paid_once(
    pg_store: PostgresStore, shared_chain: SharedChain
) -> None:
    """Its tx mined, then the block dropped by a reorg before the confirmation depth: the
    payout waits, its same signed bytes are sent again, and it completes once."""
    await pg_store.set_setting("confirmation_depth", DEPTH)
    async with payout_stack(pg_store, shared_chain) as env:
        provider, payee = await env.provider()
        await env.collect(provider.account.id, [3])
        nonce_before = await env.h.rpc.get_transaction_count(env.treasury, "pending")
        answer = await env.call("POST", "/v1/payouts", provider, json={})
        assert answer.status_code == 201, answer.text
        payout_id = UUID(answer.json()["id"])
        mined: dict[str, Any] = {}

        async def in_a_block() -> bool:
            (row,) = await fetch_raw(
                env.store, "SELECT status, tx_hash FROM payouts WHERE id = $1", payout_id
            )
            if row["tx_hash"] is None:
                return False
            receipt = await env.h.rpc.get_transaction_receipt(row["tx_hash"])
            if receipt is None:
                return False
            mined.update(receipt, status_in_db=row["status"])
            return True

        await wait_for(in_a_block, 30, "the payout's tx to be mined")
        assert mined["status_in_db"] != "completed"
        head = await env.h.rpc.block_number()
        depth = head - int(mined["blockNumber"], 16) + 1
        assert depth < DEPTH, "mined too long ago to be reorganised before the depth"
        await env.h.rpc.call("anvil_reorg", depth, [])
        again = await env.h.rpc.get_transaction_receipt(mined["transactionHash"])
        assert again is None or again["blockHash"] != mined["blockHash"], "no reorg"

        assert await env.decided(str(payout_id), max_wait=90) == "completed"
        assert await env.h.usdc_balance(payee) == CREDIT
        (transfer,) = await env.transfers_to(payee)
        assert transfer["transactionHash"] == mined["transactionHash"]  # the same bytes
        assert await env.h.rpc.get_transaction_count(env.treasury, "latest") == nonce_before + 1
