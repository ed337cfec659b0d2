"""The Store port's claim for one settle batch tx (`claim_payments_one_tx`: many payments,
ONE signed tx, ONE relayer nonce) and the broadcaster's store methods on shared tx hashes;
plus such claims racing."""

from __future__ import annotations

import asyncio
import hashlib
from uuid import UUID

import pytest

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.models import Payment, SignedTx
from payfirst.domain.statuses import PaymentStatus
from payfirst.pipeline.mint_ids import mint_ids
from payfirst.ports.store import Store, UnconfirmedTx
from tests.fixtures.store import (
    fetch_raw,
    make_token,
    queue_payments,
    random_address,
    register_token,
    stored_payment,
)

#: The chain of the tokens `make_token` builds, so of their payments.
CHAIN = 31337


def sign_batch(payments: list[Payment], nonce: int) -> SignedTx:
    """A made-up signed tx, distinct per (payments, nonce)."""
    digest = hashlib.sha256(f"batch {[str(p.id) for p in payments]} {nonce}".encode()).hexdigest()
    return SignedTx(raw="0x02f8" + digest, hash="0x" + digest)


class BatchRecorder:
    """A batch sign callback that records its calls and can be told to fail."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[tuple[list[UUID], int]] = []
        self.fail = fail

    def __call__(self, payments: list[Payment], nonce: int) -> SignedTx:
        if self.fail:
            raise RuntimeError("signer exploded")
        self.calls.append(([p.id for p in payments], nonce))
        return sign_batch(payments, nonce)


async def test_batch_claim_signs_once_under_one_nonce(store: Store) -> None:
    token = await register_token(store, max_mint_count=1000)
    relayer = random_address()
    await store.set_relayer_nonce(relayer, 7, chain_id=CHAIN)
    queued = await queue_payments(store, token, 4)
    recorder = BatchRecorder()
    claimed = await store.claim_payments_one_tx(relayer, 10, recorder, chain_id=CHAIN)
    assert [p.id for p in claimed] == [n.id for n in queued]  # oldest first
    assert recorder.calls == [([n.id for n in queued], 7)]  # ONE sign call
    expected = sign_batch(claimed, 7)
    for payment in claimed:
        assert payment.status is PaymentStatus.PROCESSING
        assert (payment.tx_nonce, payment.relayer) == (7, relayer)
        assert (payment.raw_tx, payment.tx_hash) == (expected.raw, expected.hash)
        assert (
            await stored_payment(store, payment.id) == payment
        )  # what it returned is what it stored
    assert (
        await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 8
    )  # one nonce for the whole batch


async def test_batch_claim_respects_limit_and_skips_non_pending(store: Store) -> None:
    token = await register_token(store, max_mint_count=1000)
    queued = await queue_payments(store, token, 6)
    await store.fail_payment(queued[1].id, PaymentStatus.FAILED, "expired")
    relayer = random_address()
    first = await store.claim_payments_one_tx(relayer, 2, sign_batch, chain_id=CHAIN)
    assert [p.id for p in first] == [queued[0].id, queued[2].id]
    rest = await store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN)
    assert [p.id for p in rest] == [queued[3].id, queued[4].id, queued[5].id]
    assert {p.tx_nonce for p in first} == {0}
    assert {p.tx_nonce for p in rest} == {1}
    assert len({p.tx_hash for p in first + rest}) == 2
    assert await store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN) == []
    assert await store.claim_payments_one_tx(relayer, 0, sign_batch, chain_id=CHAIN) == []
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 2
    assert (await stored_payment(store, queued[1].id)).tx_nonce is None


async def test_batch_claim_with_nothing_pending_signs_and_writes_nothing(store: Store) -> None:
    relayer = random_address()
    recorder = BatchRecorder()
    assert await store.claim_payments_one_tx(relayer, 5, recorder, chain_id=CHAIN) == []
    assert recorder.calls == []
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) is None


async def test_batch_claim_writes_nothing_when_sign_raises(store: Store) -> None:
    token = await register_token(store, max_mint_count=1000)
    queued = await queue_payments(store, token, 3)
    relayer = random_address()
    with pytest.raises(RuntimeError, match="signer exploded"):
        await store.claim_payments_one_tx(relayer, 10, BatchRecorder(fail=True), chain_id=CHAIN)
    for new in queued:
        payment = await stored_payment(store, new.id)
        assert payment.status is PaymentStatus.PENDING
        assert (payment.tx_nonce, payment.relayer, payment.raw_tx, payment.tx_hash) == (
            None,
            None,
            None,
            None,
        )
    assert (
        await store.get_relayer_nonce(relayer, chain_id=CHAIN) is None
    )  # no relayer row left behind
    claimed = await store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN)
    assert [p.id for p in claimed] == [n.id for n in queued]
    assert {p.tx_nonce for p in claimed} == {0}


async def test_batch_claim_takes_one_asset_at_a_time(store: Store) -> None:
    """One settle tx moves one asset: the oldest pending payment's."""
    first_token = await register_token(store, max_mint_count=1000)
    other_token = await register_token(store, max_mint_count=1000)
    a1 = await queue_payments(store, first_token, 1)
    b1 = await queue_payments(store, other_token, 2)
    a2 = await queue_payments(store, first_token, 1)
    relayer = random_address()
    batch = await store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN)
    assert [p.id for p in batch] == [a1[0].id, a2[0].id]
    assert {p.payment_asset for p in batch} == {first_token.payment_asset}
    batch = await store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN)
    assert [p.id for p in batch] == [n.id for n in b1]
    assert {p.tx_nonce for p in batch} == {1}


async def test_claims_one_by_one_and_batched_share_the_relayer_nonces(store: Store) -> None:
    token = await register_token(store, max_mint_count=1000)
    await queue_payments(store, token, 5)
    relayer = random_address()

    def sign_one(payment: Payment, nonce: int) -> SignedTx:
        return sign_batch([payment], nonce)

    single = await store.claim_payments(relayer, 2, sign_one, chain_id=CHAIN)
    batch = await store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN)
    assert [p.tx_nonce for p in single] == [0, 1]
    assert {p.tx_nonce for p in batch} == {2}
    assert len(batch) == 3
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 3


async def test_shared_tx_hash_unconfirmed_mark_sent_and_completion(store: Store) -> None:
    """`unconfirmed_txs` gives one UnconfirmedTx per nonce, `mark_sent` moves every row of the
    tx, and the rows end one by one (completed or failed) without disturbing the others."""
    token = await register_token(store, max_mint_count=1000)
    queued = await queue_payments(store, token, 3)
    relayer = random_address()
    batch = await store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN)
    tx_hash, raw_tx = batch[0].tx_hash, batch[0].raw_tx
    assert tx_hash is not None and raw_tx is not None
    assert await store.unconfirmed_txs(relayer, 0, chain_id=CHAIN) == [
        UnconfirmedTx(0, tx_hash, raw_tx, sent=False)
    ]

    await store.mark_sent([tx_hash])
    for new in queued:
        payment = await stored_payment(store, new.id)
        assert payment.status is PaymentStatus.SENT
        assert payment.processed_at is not None
    assert await store.unconfirmed_txs(relayer, 0, chain_id=CHAIN) == [
        UnconfirmedTx(0, tx_hash, raw_tx, sent=True)
    ]
    assert (
        await store.unconfirmed_txs(relayer, 1, chain_id=CHAIN) == []
    )  # the chain consumed nonce 0

    # Decided one by one: one settled in the batch, one failed inside it.
    ids = mint_ids(batch[0].payer, batch[0].id, 1)
    assert await store.complete_payment(batch[0].id, tx_hash, ids)
    assert await store.fail_payment(
        batch[1].id,
        PaymentStatus.CONFIRMATION_FAILED,
        "failed inside the batch",
        only_from=PaymentStatus.SENT,
    )
    assert (await stored_payment(store, batch[2].id)).status is PaymentStatus.SENT
    assert await store.unconfirmed_txs(relayer, 0, chain_id=CHAIN) == [
        UnconfirmedTx(0, tx_hash, raw_tx, sent=True)
    ]
    stored = await store.get_token(token.address)
    assert stored is not None and stored.reserved_count == 2  # the failed one released


async def test_mark_sent_after_partial_completion_moves_only_processing_rows(
    store: Store,
) -> None:
    """A crash between broadcast and `sent`: the confirmer may complete one row of the tx
    while the others are still processing; the broadcaster still re-sends (sent=False) and
    mark_sent moves the rest."""
    token = await register_token(store, max_mint_count=1000)
    await queue_payments(store, token, 2)
    relayer = random_address()
    batch = await store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN)
    tx_hash = batch[0].tx_hash
    assert tx_hash is not None
    assert await store.complete_payment(batch[0].id, tx_hash, [])
    (tx,) = await store.unconfirmed_txs(relayer, 0, chain_id=CHAIN)
    assert (tx.tx_hash, tx.sent) == (tx_hash, False)
    await store.mark_sent([tx_hash])
    assert (await stored_payment(store, batch[0].id)).status is PaymentStatus.COMPLETED
    assert (await stored_payment(store, batch[1].id)).status is PaymentStatus.SENT


# PostgreSQL: batch claims racing on one relayer


async def test_concurrent_batch_claims_never_share_a_payment_or_a_nonce(
    pg_store: PostgresStore,
) -> None:
    token = make_token(max_mint_count=1000)
    await pg_store.upsert_token(token)
    queued = await queue_payments(pg_store, token, 40)
    relayer = random_address()
    batches = await asyncio.gather(
        *(pg_store.claim_payments_one_tx(relayer, 10, sign_batch, chain_id=CHAIN) for _ in range(4))
    )
    claimed = [p for batch in batches for p in batch]
    assert sorted(len(b) for b in batches) == [10, 10, 10, 10]
    assert {p.id for p in claimed} == {n.id for n in queued}
    assert sorted({p.tx_nonce for p in claimed if p.tx_nonce is not None}) == [0, 1, 2, 3]
    for batch in batches:  # each claim is one tx under one nonce
        assert len({(p.tx_nonce, p.tx_hash) for p in batch}) == 1
    rows = await fetch_raw(
        pg_store,
        "SELECT nonce, count(DISTINCT tx_hash) AS txs, count(*) AS n FROM payment_queue"
        " WHERE relayer = $1 GROUP BY nonce ORDER BY nonce",
        relayer,
    )
    assert [(r["nonce"], r["txs"], r["n"]) for r in rows] == [(i, 1, 10) for i in range(4)]
    assert await pg_store.get_relayer_nonce(relayer, chain_id=CHAIN) == 4


async def test_sent_payments_come_whole_txs_at_a_time(store: Store) -> None:
    token = await register_token(store, max_mint_count=1000)
    relayer, other = random_address(), random_address()
    await queue_payments(store, token, 7)
    first = await store.claim_payments_one_tx(relayer, 3, BatchRecorder(), chain_id=CHAIN)
    second = await store.claim_payments_one_tx(relayer, 3, BatchRecorder(), chain_id=CHAIN)
    foreign = await store.claim_payments_one_tx(other, 1, BatchRecorder(), chain_id=CHAIN)
    await store.mark_sent(
        [first[0].tx_hash or "", second[0].tx_hash or "", foreign[0].tx_hash or ""]
    )
    oldest_tx = await store.sent_payments(relayer, 1, chain_id=CHAIN)
    assert {p.id for p in oldest_tx} == {p.id for p in first}  # all of the tx, no more
    both = await store.sent_payments(relayer, 5, chain_id=CHAIN)
    assert {p.id for p in both} == {p.id for p in first + second}  # not the other relayer's
    assert all(p.status is PaymentStatus.SENT for p in both)
    assert [p.id for p in await store.sent_payments(other, 5, chain_id=CHAIN)] == [foreign[0].id]


async def test_complete_payments_is_one_transaction(store: Store) -> None:
    token = await register_token(store, max_mint_count=1000)
    relayer = random_address()
    await queue_payments(store, token, 3)
    batch = await store.claim_payments_one_tx(relayer, 3, BatchRecorder(), chain_id=CHAIN)
    tx = batch[0].tx_hash or ""
    await store.mark_sent([tx])
    completions = [(p.id, tx, mint_ids(p.payer, p.id, p.quantity)) for p in batch]

    def crash() -> None:
        raise RuntimeError("power cut before the commit")

    with pytest.raises(RuntimeError):
        await store.complete_payments(completions, before_commit=crash)
    assert [(await stored_payment(store, p.id)).status for p in batch] == [PaymentStatus.SENT] * 3
    assert await fetch_raw(store, "SELECT id FROM mint_queue") == []

    done = await store.complete_payments(completions)
    assert sorted(done) == sorted(p.id for p in batch)
    assert [(await stored_payment(store, p.id)).status for p in batch] == [
        PaymentStatus.COMPLETED
    ] * 3
    rows = await fetch_raw(store, "SELECT count(*) AS n FROM mint_queue")
    assert rows[0]["n"] == sum(p.quantity for p in batch)
    assert await store.complete_payments(completions) == []  # a second time: nothing
    rows = await fetch_raw(store, "SELECT count(*) AS n FROM mint_queue")
    assert rows[0]["n"] == sum(p.quantity for p in batch)
