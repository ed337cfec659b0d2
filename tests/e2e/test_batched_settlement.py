"""Batched settlement: many payments settle in one BatchSettler transaction under one
relayer nonce, each item able to fail on its own, each payment decided by the
`AuthorizationUsed` logs of that one receipt. Real PostgreSQL, real anvil."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from payfirst.adapters.chain_rpc import RpcError
from payfirst.adapters.devchain import ANVIL_KEYS, send_transaction
from payfirst.domain.statuses import PaymentStatus
from payfirst.evm import abi
from tests.e2e.harness import Harness
from tests.fixtures.store import execute_raw, fetch_raw


async def _queue_held(harness: Harness, count: int, quantity: int = 1) -> list[UUID]:
    """`count` payments queued while the worker is stopped (so one tick sees them all),
    from payers 1..9 in turn. The worker is left stopped."""
    await harness.worker.stop()
    ids = []
    for i in range(count):
        answer = await harness.buy(harness.payer(1 + i % 9), quantity)
        assert answer.status_code == 202, answer.text
        ids.append(UUID(answer.json()["paymentQueueId"]))
    return ids


async def _tx_hashes(harness: Harness, ids: list[UUID]) -> list[str]:
    rows = await fetch_raw(
        harness.store,
        "SELECT DISTINCT tx_hash FROM payment_queue WHERE id = ANY($1::uuid[])",
        ids,
    )
    return [str(r["tx_hash"]) for r in rows]


async def _statuses(harness: Harness, ids: list[UUID]) -> dict[UUID, PaymentStatus]:
    result = {}
    for payment_id in ids:
        payment = await harness.store.get_payment(payment_id)
        assert payment is not None
        result[payment_id] = payment.status
    return result


async def _gas_per_payment(harness: Harness, ids: list[UUID]) -> tuple[float, int]:
    """Total gasUsed of the txs that settled these payments, per payment; and how many
    txs that was."""
    hashes = await _tx_hashes(harness, ids)
    total = 0
    for tx_hash in hashes:
        receipt = await harness.rpc.get_transaction_receipt(tx_hash)
        assert receipt is not None and int(receipt["status"], 16) == 1
        total += int(receipt["gasUsed"], 16)
    return total / len(ids), len(hashes)


async def test_many_payments_settle_in_a_few_txs(harness: Harness) -> None:
    d = harness.deployment
    before = {i: await harness.usdc_balance(harness.payer(i).address) for i in range(1, 10)}
    token_before = await harness.usdc_balance(d.token)
    ids = await _queue_held(harness, 27, quantity=2)
    await harness.worker.start()
    await harness.settled(max_wait=60)

    assert set((await _statuses(harness, ids)).values()) == {PaymentStatus.COMPLETED}
    hashes = await _tx_hashes(harness, ids)
    assert len(hashes) < len(ids)
    assert len(hashes) == 1  # 27 payments fit one batch (payment_batch_size 50)
    receipt = await harness.rpc.get_transaction_receipt(hashes[0])
    assert receipt is not None
    assert abi.checksum(receipt["to"]) == d.settler
    for i in range(1, 10):  # 3 payments of 2 mints each
        assert await harness.usdc_balance(harness.payer(i).address) == before[i] - 6 * (
            d.price_per_mint
        )
        assert await harness.token_balance(harness.payer(i).address) == 6 * d.mint_amount
    assert await harness.usdc_balance(d.token) == token_before + 54 * d.price_per_mint
    nonces = await fetch_raw(
        harness.store,
        "SELECT count(DISTINCT nonce) AS n FROM payment_queue WHERE id = ANY($1::uuid[])",
        ids,
    )
    assert nonces[0]["n"] == 1  # one relayer nonce for the whole batch


async def test_a_bad_item_fails_alone_and_the_rest_settle(harness: Harness) -> None:
    """The poor payer's authorization verifies and its balance covers it when the batch is
    signed, but the USDC leaves in the same block, ahead of the batch: the batch tx
    succeeds, that one item fails inside it (no AuthorizationUsed log): the payment is
    confirmation_failed with its supply released; the others in the same tx complete."""
    d = harness.deployment
    poor = harness.payer(5)
    await harness.worker.stop()
    good_ids = []
    for i in (1, 2, 3, 4, 6, 7):
        answer = await harness.buy(harness.payer(i), 1)
        assert answer.status_code == 202
        good_ids.append(UUID(answer.json()["paymentQueueId"]))
    answer = await harness.buy(poor, 3)
    assert answer.status_code == 202
    poor_id = UUID(answer.json()["paymentQueueId"])
    token = await harness.store.get_token(d.token)
    assert token is not None and token.reserved_count == 6 + 3
    balance = await harness.usdc_balance(poor.address)
    await harness.rpc.call("evm_setIntervalMining", 0)  # the batch waits in the pool
    await harness.rpc.call("evm_setAutomine", False)
    try:
        await harness.worker.start()
        await _until_all_sent(harness, [*good_ids, poor_id])
        drain = abi.encode_call("transfer(address,uint256)", [harness.payer(8).address, balance])
        # A higher tip than the relayer's: mined ahead of the batch in the next block.
        await send_transaction(
            harness.rpc, ANVIL_KEYS[5], d.usdc, drain, gas=100_000, priority_fee=50 * 10**9
        )
        await harness.rpc.call("evm_mine")
    finally:
        await harness.rpc.call("evm_setAutomine", True)
        await harness.rpc.call("evm_setIntervalMining", 1)
    await harness.settled()

    poor_payment = await harness.store.get_payment(poor_id)
    assert poor_payment is not None
    assert poor_payment.status == PaymentStatus.CONFIRMATION_FAILED
    assert poor_payment.error == "authorization failed inside the batch transaction"
    assert await harness.store.get_mint_items(poor_id) == []
    assert await harness.token_balance(poor.address) == 0
    assert set((await _statuses(harness, good_ids)).values()) == {PaymentStatus.COMPLETED}
    # All seven went out in ONE tx, and it succeeded.
    (batch_tx,) = await _tx_hashes(harness, [*good_ids, poor_id])
    receipt = await harness.rpc.get_transaction_receipt(batch_tx)
    assert receipt is not None and int(receipt["status"], 16) == 1
    token = await harness.store.get_token(d.token)
    assert token is not None and token.reserved_count == 6  # the poor payer's 3 released


async def _until_all_sent(harness: Harness, ids: list[UUID]) -> None:
    async with asyncio.timeout(30):
        while set((await _statuses(harness, ids)).values()) != {PaymentStatus.SENT}:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_rebroadcast_batch_settles_once(harness: Harness) -> None:
    """The batch tx re-sent after it was mined (by hand, and by the broadcaster as after a crash
    between broadcast and the `sent` write): the node refuses it, nothing moves twice."""
    d = harness.deployment
    before = {i: await harness.usdc_balance(harness.payer(i).address) for i in range(1, 10)}
    token_before = await harness.usdc_balance(d.token)
    ids = await _queue_held(harness, 9)
    signed = await harness.worker.sender.run_once(50)  # signed, persisted and broadcast
    assert signed == 9
    (tx_hash,) = await _tx_hashes(harness, ids)
    receipt = await harness.rpc.wait_for_receipt(tx_hash)
    assert int(receipt["status"], 16) == 1
    raw = await fetch_raw(
        harness.store, "SELECT DISTINCT raw_tx FROM payment_queue WHERE tx_hash = $1", tx_hash
    )
    assert len(raw) == 1

    # 1. The same bytes again, by hand: the node refuses them (the nonce is used).
    with pytest.raises(RpcError, match=r"(?i)nonce|known"):
        await harness.rpc.send_raw_transaction(str(raw[0]["raw_tx"]))
    # 2. As if the process died after the broadcast, before `sent` was written.
    await execute_raw(
        harness.store,
        "UPDATE payment_queue SET status = 'processing' WHERE tx_hash = $1",
        tx_hash,
    )
    async with harness.worker.broadcaster.lock:
        result = await harness.worker.broadcaster.broadcast_unconfirmed(resend_sent=True)
        again = await harness.worker.broadcaster.broadcast_unconfirmed(resend_sent=True)
    assert (result.accepted, result.failed) == (1, 0)  # "nonce too low": already there
    assert (again.accepted, again.failed) == (0, 0)
    assert set((await _statuses(harness, ids)).values()) == {PaymentStatus.SENT}

    await harness.worker.start()  # recovery re-sends once more; the confirmer decides
    await harness.settled()
    assert set((await _statuses(harness, ids)).values()) == {PaymentStatus.COMPLETED}
    for i in range(1, 10):
        assert await harness.usdc_balance(harness.payer(i).address) == before[i] - d.price_per_mint
    assert await harness.usdc_balance(d.token) == token_before + 9 * d.price_per_mint


async def test_batching_off_sends_one_tx_per_payment(harness: Harness) -> None:
    await harness.store.set_setting("payment_tx_batching", 0)
    ids = await _queue_held(harness, 6)
    await harness.worker.start()
    await harness.settled()
    assert set((await _statuses(harness, ids)).values()) == {PaymentStatus.COMPLETED}
    hashes = await _tx_hashes(harness, ids)
    assert len(hashes) == len(ids)
    for tx_hash in hashes:
        receipt = await harness.rpc.get_transaction_receipt(tx_hash)
        assert receipt is not None
        assert abi.checksum(receipt["to"]) == harness.deployment.usdc


async def test_gas_per_payment_batched_vs_one_by_one(harness: Harness) -> None:
    count = 27
    # Warm-up: the token's first USDC credit costs more; keep it out of both figures.
    ids = await _queue_held(harness, 1)
    await harness.worker.start()
    await harness.settled()

    ids = await _queue_held(harness, count)
    await harness.worker.start()
    await harness.settled(max_wait=60)
    batched, batched_txs = await _gas_per_payment(harness, ids)

    await harness.store.set_setting("payment_tx_batching", 0)
    ids = await _queue_held(harness, count)
    await harness.worker.start()
    await harness.settled(max_wait=60)
    single, single_txs = await _gas_per_payment(harness, ids)

    print(
        f"\ngas per payment: batched {batched:.0f} ({count} payments in {batched_txs} tx), "
        f"one by one {single:.0f} ({single_txs} txs); ratio {batched / single:.2f}"
    )
    assert batched_txs == 1 and single_txs == count
    assert batched < single
