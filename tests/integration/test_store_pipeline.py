"""The Store port's pipeline methods (sender, confirmer, mint loop, broadcaster, operators); plus
claims racing on PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.models import MintItem, NewPayment, Payment, SignedTx, Token
from payfirst.domain.statuses import MintStatus, PaymentStatus
from payfirst.pipeline.mint_ids import mint_ids
from payfirst.ports.store import Store, UnconfirmedTx
from tests.fixtures.store import (
    execute_raw,
    fetch_raw,
    make_payment,
    make_token,
    queue_payments,
    random_address,
    register_token,
    stored_payment,
)

#: The chain of the tokens `make_token` builds, so of their payments.
CHAIN = 31337

# helpers


def _tx(text: str) -> SignedTx:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return SignedTx(raw="0x02f8" + digest, hash="0x" + digest)


def sign_payment(payment: Payment, nonce: int) -> SignedTx:
    """A made-up signed tx, distinct per (payment, nonce)."""
    return _tx(f"payment {payment.id} nonce {nonce}")


def sign_mint(items: list[MintItem], nonce: int) -> SignedTx:
    return _tx(f"mint {[str(m.id) for m in items]} nonce {nonce}")


class Recorder:
    """A sign callback that records its calls and can be told to fail at the n-th call."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[UUID, int]] = []
        self.fail_at = fail_at

    def __call__(self, payment: Payment, nonce: int) -> SignedTx:
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("signer exploded")
        self.calls.append((payment.id, nonce))
        return sign_payment(payment, nonce)


def with_valid_before(new: NewPayment, valid_before: int) -> NewPayment:
    return replace(new, authorization=replace(new.authorization, valid_before=valid_before))


async def _reserved(store: Store, token: Token) -> int:
    stored = await store.get_token(token.address)
    assert stored is not None
    return stored.reserved_count


async def _sent_payment(store: Store, token: Token, relayer: str, quantity: int = 1) -> Payment:
    """A payment queued, claimed by `relayer` and marked sent."""
    (new,) = await queue_payments(store, token, 1, quantity)
    claimed = await store.claim_payments(relayer, 1, sign_payment, chain_id=CHAIN)
    assert [p.id for p in claimed] == [new.id]
    assert claimed[0].tx_hash is not None
    await store.mark_sent([claimed[0].tx_hash])
    return await stored_payment(store, new.id)


async def _completed_payment(
    store: Store, token: Token, relayer: str, quantity: int
) -> tuple[Payment, list[MintItem]]:
    payment = await _sent_payment(store, token, relayer, quantity)
    assert payment.tx_hash is not None
    ids = mint_ids(payment.payer, payment.id, quantity)
    assert await store.complete_payment(payment.id, payment.tx_hash, ids)
    return await stored_payment(store, payment.id), await store.get_mint_items(payment.id)


async def _mint_rows(store: Store) -> int:
    rows = await fetch_raw(store, "SELECT count(*) AS n FROM mint_queue")
    return int(rows[0]["n"])


def _ids(items: Sequence[Payment | MintItem]) -> list[UUID]:
    return [i.id for i in items]


# claim_payments


async def test_claim_assigns_consecutive_nonces_and_persists_the_tx(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    await store.set_relayer_nonce(relayer, 7, chain_id=CHAIN)
    queued = await queue_payments(store, token, 3)
    recorder = Recorder()
    claimed = await store.claim_payments(relayer, 10, recorder, chain_id=CHAIN)
    assert _ids(claimed) == [n.id for n in queued]  # oldest first
    assert [p.tx_nonce for p in claimed] == [7, 8, 9]
    assert recorder.calls == [(n.id, 7 + i) for i, n in enumerate(queued)]
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 10
    for payment in claimed:
        assert payment.tx_nonce is not None
        expected = sign_payment(payment, payment.tx_nonce)
        assert payment.status is PaymentStatus.PROCESSING
        assert payment.relayer == relayer
        assert (payment.raw_tx, payment.tx_hash) == (expected.raw, expected.hash)
        assert (
            await stored_payment(store, payment.id) == payment
        )  # what it returned is what it stored
        assert payment.processed_at is None


async def test_claim_creates_a_missing_relayer_at_nonce_zero(store: Store) -> None:
    token = await register_token(store)
    await queue_payments(store, token, 2)
    relayer = random_address()
    claimed = await store.claim_payments(relayer, 5, sign_payment, chain_id=CHAIN)
    assert [p.tx_nonce for p in claimed] == [0, 1]
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 2


async def test_claim_with_nothing_pending_writes_nothing(store: Store) -> None:
    relayer = random_address()
    recorder = Recorder()
    assert await store.claim_payments(relayer, 5, recorder, chain_id=CHAIN) == []
    assert recorder.calls == []
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) is None


async def test_claim_writes_nothing_when_sign_raises(store: Store) -> None:
    token = await register_token(store)
    queued = await queue_payments(store, token, 3)
    relayer = random_address()
    await store.set_relayer_nonce(relayer, 4, chain_id=CHAIN)
    with pytest.raises(RuntimeError, match="signer exploded"):
        await store.claim_payments(relayer, 10, Recorder(fail_at=2), chain_id=CHAIN)
    for new in queued:
        payment = await stored_payment(store, new.id)
        assert payment.status is PaymentStatus.PENDING
        assert (payment.tx_nonce, payment.relayer, payment.raw_tx, payment.tx_hash) == (
            None,
            None,
            None,
            None,
        )
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 4
    # A missing relayer row is not left behind either.
    other = random_address()
    with pytest.raises(RuntimeError):
        await store.claim_payments(other, 10, Recorder(fail_at=0), chain_id=CHAIN)
    assert await store.get_relayer_nonce(other, chain_id=CHAIN) is None
    # And the store is still usable: the next claim starts where the relayer was.
    claimed = await store.claim_payments(relayer, 10, sign_payment, chain_id=CHAIN)
    assert [p.tx_nonce for p in claimed] == [4, 5, 6]


async def test_claim_respects_limit_and_skips_non_pending(store: Store) -> None:
    token = await register_token(store)
    queued = await queue_payments(store, token, 6)
    await store.fail_payment(queued[2].id, PaymentStatus.FAILED, "expired")
    relayer = random_address()
    first = await store.claim_payments(relayer, 2, sign_payment, chain_id=CHAIN)
    assert _ids(first) == [queued[0].id, queued[1].id]
    rest = await store.claim_payments(relayer, 10, sign_payment, chain_id=CHAIN)
    assert _ids(rest) == [queued[3].id, queued[4].id, queued[5].id]
    assert [p.tx_nonce for p in first + rest] == [0, 1, 2, 3, 4]
    assert await store.claim_payments(relayer, 10, sign_payment, chain_id=CHAIN) == []
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 5
    assert (await stored_payment(store, queued[2].id)).status is PaymentStatus.FAILED
    assert (await stored_payment(store, queued[2].id)).tx_nonce is None


# list_payments


async def test_list_payments_oldest_first_and_limit(store: Store) -> None:
    token = await register_token(store)
    queued = await queue_payments(store, token, 4)
    listed = await store.list_payments(PaymentStatus.PENDING, 10, chain_id=CHAIN)
    assert _ids(listed) == [n.id for n in queued]
    assert _ids(await store.list_payments(PaymentStatus.PENDING, 2, chain_id=CHAIN)) == [
        queued[0].id,
        queued[1].id,
    ]
    assert await store.list_payments(PaymentStatus.SENT, 10, chain_id=CHAIN) == []


async def test_list_sent_payments_by_processed_at(store: Store) -> None:
    token = await register_token(store)
    queued = await queue_payments(store, token, 3)
    relayer = random_address()
    claimed = await store.claim_payments(relayer, 3, sign_payment, chain_id=CHAIN)
    # Sent in reverse order of creation: the list follows the sending.
    for payment in reversed(claimed):
        assert payment.tx_hash is not None
        await store.mark_sent([payment.tx_hash])
        await asyncio.sleep(0.01)
    listed = await store.list_payments(PaymentStatus.SENT, 10, chain_id=CHAIN)
    assert _ids(listed) == [n.id for n in reversed(queued)]
    processed = [p.processed_at for p in listed]
    assert all(t is not None for t in processed)
    assert processed == sorted(processed)  # type: ignore[type-var]


async def test_list_payments_expiring_before(store: Store) -> None:
    token = await register_token(store)
    soon = with_valid_before(make_payment(token), 1_000)
    later = with_valid_before(make_payment(token), 2_000)
    never = with_valid_before(make_payment(token), 2**256 - 1)  # uint256 max: stored capped
    for new in (soon, later, never):
        await store.queue_payment(new)
    assert (await stored_payment(store, never.id)).authorization.valid_before == 2**256 - 1
    assert (
        _ids(
            await store.list_payments(
                PaymentStatus.PENDING, 10, expiring_before=1_000, chain_id=CHAIN
            )
        )
        == []
    )
    assert _ids(
        await store.list_payments(PaymentStatus.PENDING, 10, expiring_before=1_001, chain_id=CHAIN)
    ) == [soon.id]
    assert _ids(
        await store.list_payments(PaymentStatus.PENDING, 10, expiring_before=5_000, chain_id=CHAIN)
    ) == [
        soon.id,
        later.id,
    ]
    everything = await store.list_payments(
        PaymentStatus.PENDING, 10, expiring_before=2**300, chain_id=CHAIN
    )
    assert _ids(everything) == [soon.id, later.id]
    # Only payments in the asked status.
    await store.fail_payment(soon.id, PaymentStatus.FAILED, "expired")
    assert _ids(
        await store.list_payments(PaymentStatus.PENDING, 10, expiring_before=5_000, chain_id=CHAIN)
    ) == [later.id]


# mark_sent


async def test_mark_sent_moves_only_processing_payments(store: Store) -> None:
    token = await register_token(store)
    await queue_payments(store, token, 3)
    relayer = random_address()
    a, b, c = await store.claim_payments(relayer, 3, sign_payment, chain_id=CHAIN)
    assert a.tx_hash and b.tx_hash and c.tx_hash
    await store.fail_payment(c.id, PaymentStatus.CONFIRMATION_FAILED, "gone")
    await store.mark_sent([a.tx_hash, c.tx_hash, "0x" + "99" * 32])
    sent_a = await stored_payment(store, a.id)
    assert sent_a.status is PaymentStatus.SENT
    assert sent_a.processed_at is not None
    assert (await stored_payment(store, b.id)).status is PaymentStatus.PROCESSING
    assert (await stored_payment(store, b.id)).processed_at is None
    assert (await stored_payment(store, c.id)).status is PaymentStatus.CONFIRMATION_FAILED
    # Again: nothing changes, not even processed_at.
    await asyncio.sleep(0.01)
    await store.mark_sent([a.tx_hash])
    assert (await stored_payment(store, a.id)).processed_at == sent_a.processed_at
    await store.mark_sent([])


async def test_mark_sent_moves_processing_mint_items(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    _, items = await _completed_payment(store, token, relayer, 3)
    claimed = await store.claim_mint_items(relayer, _ids(items[:2]), sign_mint, chain_id=CHAIN)
    tx_hash = claimed[0].tx_hash
    assert tx_hash is not None
    before = {m.id: m for m in await store.get_mint_items(items[0].payment_id)}
    await asyncio.sleep(0.01)
    await store.mark_sent([tx_hash])
    after = {m.id: m for m in await store.get_mint_items(items[0].payment_id)}
    for item in items[:2]:
        assert after[item.id].status is MintStatus.SENT
        assert after[item.id].updated_at > before[item.id].updated_at
    assert after[items[2].id].status is MintStatus.PENDING
    assert after[items[2].id] == before[items[2].id]


# complete_payment


async def test_complete_payment_creates_exactly_the_mint_items(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    payment = await _sent_payment(store, token, relayer, quantity=3)
    ids = mint_ids(payment.payer, payment.id, 3)
    settled_by = "0x" + "ee" * 32  # e.g. another tx that used the authorization
    assert await store.complete_payment(payment.id, settled_by, ids) is True
    done = await stored_payment(store, payment.id)
    assert done.status is PaymentStatus.COMPLETED
    assert done.tx_hash == settled_by
    assert done.processed_at is not None
    items = await store.get_mint_items(payment.id)
    assert [m.mint_id for m in items] == ids  # in mint-index order
    assert done.result == {"queueIds": [str(m.id) for m in items], "quantity": 3}
    for item in items:
        assert item.payment_id == payment.id
        assert item.payer == payment.payer
        assert item.token_address == token.address
        assert item.payment_tx_hash == settled_by
        assert item.status is MintStatus.PENDING
        assert (item.tx_hash, item.tx_nonce, item.relayer, item.raw_tx) == (None, None, None, None)
        assert item.attempts == 0
        assert item.error_message is None
    assert len({m.id for m in items}) == 3
    # A second call changes nothing.
    assert await store.complete_payment(payment.id, settled_by, ids) is False
    assert await store.complete_payment(payment.id, "0x" + "aa" * 32, ids[:1]) is False
    assert await _mint_rows(store) == 3
    assert await stored_payment(store, payment.id) == done


async def test_complete_payment_from_processing(store: Store) -> None:
    token = await register_token(store)
    (new,) = await queue_payments(store, token, 1, quantity=2)
    (claimed,) = await store.claim_payments(random_address(), 1, sign_payment, chain_id=CHAIN)
    assert claimed.tx_hash is not None
    ids = mint_ids(new.payer, new.id, 2)
    assert await store.complete_payment(new.id, claimed.tx_hash, ids) is True
    assert len(await store.get_mint_items(new.id)) == 2


async def test_complete_payment_refuses_pending_and_terminal(store: Store) -> None:
    token = await register_token(store)
    pending, failed = await queue_payments(store, token, 2)
    await store.fail_payment(failed.id, PaymentStatus.CONFIRMATION_FAILED, "reverted")
    for new in (pending, failed):
        ids = mint_ids(new.payer, new.id, 1)
        assert await store.complete_payment(new.id, "0x" + "ab" * 32, ids) is False
    assert await store.complete_payment(uuid4(), "0x" + "ab" * 32, []) is False
    assert await _mint_rows(store) == 0
    assert (await stored_payment(store, pending.id)).status is PaymentStatus.PENDING
    assert (await stored_payment(store, failed.id)).status is PaymentStatus.CONFIRMATION_FAILED


async def test_complete_payment_rolls_back_when_before_commit_raises(store: Store) -> None:
    token = await register_token(store)
    payment = await _sent_payment(store, token, random_address(), quantity=2)
    assert payment.tx_hash is not None
    ids = mint_ids(payment.payer, payment.id, 2)
    calls: list[int] = []

    def crash() -> None:
        calls.append(1)
        raise RuntimeError("killed in the callback")

    with pytest.raises(RuntimeError, match="killed in the callback"):
        await store.complete_payment(payment.id, payment.tx_hash, ids, before_commit=crash)
    assert calls == [1]
    assert await stored_payment(store, payment.id) == payment  # still sent, no result
    assert await store.get_mint_items(payment.id) == []
    assert await _mint_rows(store) == 0
    # The restart completes it for real.
    assert await store.complete_payment(
        payment.id, payment.tx_hash, ids, before_commit=lambda: calls.append(2)
    )
    assert calls == [1, 2]
    assert len(await store.get_mint_items(payment.id)) == 2


async def test_complete_payment_duplicate_mint_id_is_refused_and_rolled_back(store: Store) -> None:
    """A completion the database refuses (here a mint id already used) changes nothing: the
    payment stays `sent`, logged for the operator, and holds back no other payment."""
    token = await register_token(store)
    relayer = random_address()
    _, items = await _completed_payment(store, token, relayer, 1)
    second = await _sent_payment(store, token, relayer, quantity=2)
    assert second.tx_hash is not None
    clashing = [mint_ids(second.payer, second.id, 1)[0], items[0].mint_id]
    assert await store.complete_payment(second.id, second.tx_hash, clashing) is False
    assert await stored_payment(store, second.id) == second
    assert await store.get_mint_items(second.id) == []
    assert await _mint_rows(store) == 1


# fail_payment and requeue_payment


async def test_fail_payment_releases_supply_once(store: Store) -> None:
    token = await register_token(store, max_mint_count=10)
    relayer = random_address()
    sent = await _sent_payment(store, token, relayer, quantity=4)
    (pending,) = await queue_payments(store, token, 1, quantity=3)
    assert await _reserved(store, token) == 7
    assert await store.fail_payment(pending.id, PaymentStatus.FAILED, "expired") is True
    assert await _reserved(store, token) == 4
    assert await store.fail_payment(pending.id, PaymentStatus.FAILED, "expired") is False
    assert await store.fail_payment(pending.id, PaymentStatus.CONFIRMATION_FAILED, "again") is False
    assert await _reserved(store, token) == 4
    failed = await stored_payment(store, pending.id)
    assert failed.status is PaymentStatus.FAILED
    assert failed.error == "expired"
    assert await store.fail_payment(sent.id, PaymentStatus.CONFIRMATION_FAILED, "reverted")
    assert await _reserved(store, token) == 0
    reverted = await stored_payment(store, sent.id)
    assert reverted.status is PaymentStatus.CONFIRMATION_FAILED
    assert reverted.error == "reverted"
    assert reverted.raw_tx == sent.raw_tx  # the signed tx stays for the broadcaster
    assert await store.fail_payment(uuid4(), PaymentStatus.FAILED, "unknown") is False


async def test_fail_payment_leaves_completed_alone(store: Store) -> None:
    token = await register_token(store, max_mint_count=10)
    payment, _ = await _completed_payment(store, token, random_address(), 2)
    assert await store.fail_payment(payment.id, PaymentStatus.CONFIRMATION_FAILED, "x") is False
    assert (await stored_payment(store, payment.id)).status is PaymentStatus.COMPLETED
    assert await _reserved(store, token) == 2


async def test_fail_payment_rejects_a_non_failure_status(store: Store) -> None:
    token = await register_token(store)
    (new,) = await queue_payments(store, token, 1)
    with pytest.raises(ValueError, match="completed"):
        await store.fail_payment(new.id, PaymentStatus.COMPLETED, "no")
    assert (await stored_payment(store, new.id)).status is PaymentStatus.PENDING


async def test_requeue_clears_the_tx_fields(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    sent = await _sent_payment(store, token, relayer)
    assert await store.requeue_payment(sent.id, "tx dropped") is True
    again = await stored_payment(store, sent.id)
    assert again.status is PaymentStatus.PENDING
    assert (again.tx_hash, again.tx_nonce, again.relayer, again.raw_tx, again.processed_at) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert again.error == "tx dropped"
    assert await store.requeue_payment(sent.id, "twice") is False  # pending: nothing to do
    assert (await stored_payment(store, sent.id)).error == "tx dropped"
    # It is claimed anew under a fresh nonce.
    (reclaimed,) = await store.claim_payments(relayer, 5, sign_payment, chain_id=CHAIN)
    assert reclaimed.id == sent.id
    assert reclaimed.tx_nonce == 1
    # A processing one can be requeued; a terminal one cannot.
    assert await store.requeue_payment(sent.id, "dropped again") is True
    await store.fail_payment(sent.id, PaymentStatus.FAILED, "expired")
    assert await store.requeue_payment(sent.id, "no") is False
    assert await store.requeue_payment(uuid4(), "no") is False


# mint items


async def test_claim_mint_items_one_nonce_for_the_batch(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    payment, items = await _completed_payment(store, token, relayer, 3)
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 1
    calls: list[tuple[list[UUID], int]] = []

    def sign(batch: list[MintItem], nonce: int) -> SignedTx:
        calls.append((_ids(batch), nonce))
        return sign_mint(batch, nonce)

    claimed = await store.claim_mint_items(relayer, _ids(items), sign, chain_id=CHAIN)
    assert calls == [(_ids(items), 1)]
    expected = sign_mint(items, 1)
    assert _ids(claimed) == _ids(items)
    for item in claimed:
        assert item.status is MintStatus.PROCESSING
        assert (item.tx_nonce, item.relayer, item.raw_tx, item.tx_hash) == (
            1,
            relayer,
            expected.raw,
            expected.hash,
        )
    assert await store.get_mint_items(payment.id) == claimed
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 2
    # Nothing pending among them any more: nothing signed, nothing written.
    assert await store.claim_mint_items(relayer, _ids(items), sign, chain_id=CHAIN) == []
    assert await store.claim_mint_items(relayer, [], sign, chain_id=CHAIN) == []
    assert len(calls) == 1
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 2


async def test_claim_mint_items_takes_only_the_pending_ones(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    _, items = await _completed_payment(store, token, relayer, 3)
    await store.complete_mint_items([items[1].id], None)
    claimed = await store.claim_mint_items(
        relayer, [*_ids(items), uuid4()], sign_mint, chain_id=CHAIN
    )
    assert _ids(claimed) == [items[0].id, items[2].id]


async def test_claim_mint_items_writes_nothing_when_sign_raises(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    payment, items = await _completed_payment(store, token, relayer, 2)

    def explode(batch: list[MintItem], nonce: int) -> SignedTx:
        raise RuntimeError("signer exploded")

    with pytest.raises(RuntimeError):
        await store.claim_mint_items(relayer, _ids(items), explode, chain_id=CHAIN)
    assert await store.get_mint_items(payment.id) == items
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 1


async def test_complete_mint_items(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    payment, items = await _completed_payment(store, token, relayer, 3)
    claimed = await store.claim_mint_items(relayer, _ids(items[:2]), sign_mint, chain_id=CHAIN)
    mint_tx = claimed[0].tx_hash
    await store.complete_mint_items([items[2].id], None)  # hasMinted said so: no tx of ours
    await store.complete_mint_items([items[0].id], mint_tx)
    await store.complete_mint_items([items[1].id], "0x" + "cd" * 32)
    done = {m.id: m for m in await store.get_mint_items(payment.id)}
    assert all(m.status is MintStatus.COMPLETED for m in done.values())
    assert done[items[0].id].tx_hash == mint_tx
    assert done[items[1].id].tx_hash == "0x" + "cd" * 32
    assert done[items[2].id].tx_hash is None
    # Terminal items stay as they are.
    await store.complete_mint_items(_ids(items), "0x" + "00" * 32)
    assert {m.id: m for m in await store.get_mint_items(payment.id)} == done
    await store.complete_mint_items([], None)


async def test_retry_mint_items_then_fail_at_max_attempts(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    payment, items = await _completed_payment(store, token, relayer, 2)
    first = await store.claim_mint_items(relayer, _ids(items), sign_mint, chain_id=CHAIN)
    await store.mark_sent([first[0].tx_hash or ""])
    await store.retry_mint_items(_ids(items), "mint tx reverted", max_attempts=2)
    retried = await store.get_mint_items(payment.id)
    for item in retried:
        assert item.status is MintStatus.PENDING
        assert item.attempts == 1
        assert item.error_message == "mint tx reverted"
        assert (item.tx_hash, item.tx_nonce, item.relayer, item.raw_tx) == (None, None, None, None)
    second = await store.claim_mint_items(relayer, _ids(items), sign_mint, chain_id=CHAIN)
    assert second[0].tx_nonce == first[0].tx_nonce + 1  # type: ignore[operator]
    await store.retry_mint_items(_ids(items), "mint tx dropped", max_attempts=2)
    failed = await store.get_mint_items(payment.id)
    for item in failed:
        assert item.status is MintStatus.FAILED
        assert item.attempts == 2
        assert item.error_message == "mint tx dropped"
        assert item.tx_hash == second[0].tx_hash  # what was tried last is kept
    # Terminal: a further retry changes nothing.
    await store.retry_mint_items(_ids(items), "again", max_attempts=2)
    assert await store.get_mint_items(payment.id) == failed
    assert await store.pending_mint_items(10, chain_id=CHAIN) == []


async def test_list_mint_items_by_status_oldest_first(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    _, a = await _completed_payment(store, token, relayer, 2)
    _, b = await _completed_payment(store, token, relayer, 1)
    assert _ids(await store.list_mint_items(MintStatus.PENDING, 10, chain_id=CHAIN)) == _ids(a + b)
    assert _ids(await store.list_mint_items(MintStatus.PENDING, 2, chain_id=CHAIN)) == _ids(a)
    claimed_b = await store.claim_mint_items(relayer, _ids(b), sign_mint, chain_id=CHAIN)
    await asyncio.sleep(0.01)
    claimed_a = await store.claim_mint_items(relayer, _ids(a), sign_mint, chain_id=CHAIN)
    assert _ids(await store.list_mint_items(MintStatus.PROCESSING, 10, chain_id=CHAIN)) == _ids(
        claimed_b + claimed_a
    )
    assert await store.list_mint_items(MintStatus.SENT, 10, chain_id=CHAIN) == []


async def test_pending_mint_items_of_one_token(store: Store) -> None:
    one = await register_token(store)
    two = await register_token(store)
    relayer = random_address()
    _, first = await _completed_payment(store, one, relayer, 2)
    _, second = await _completed_payment(store, two, relayer, 2)
    _, third = await _completed_payment(store, one, relayer, 2)
    assert _ids(await store.pending_mint_items(10, chain_id=CHAIN)) == _ids(first + third)
    assert _ids(await store.pending_mint_items(3, chain_id=CHAIN)) == _ids(first + third[:1])
    # Once token one's items are claimed, token two's turn comes.
    await store.claim_mint_items(relayer, _ids(first + third), sign_mint, chain_id=CHAIN)
    assert _ids(await store.pending_mint_items(10, chain_id=CHAIN)) == _ids(second)
    await store.claim_mint_items(relayer, _ids(second), sign_mint, chain_id=CHAIN)
    assert await store.pending_mint_items(10, chain_id=CHAIN) == []


async def test_claim_mint_items_refuses_several_tokens(store: Store) -> None:
    one = await register_token(store)
    two = await register_token(store)
    relayer = random_address()
    _, a = await _completed_payment(store, one, relayer, 1)
    _, b = await _completed_payment(store, two, relayer, 1)
    with pytest.raises(ValueError, match="several tokens"):
        await store.claim_mint_items(relayer, _ids(a + b), sign_mint, chain_id=CHAIN)
    assert [
        m.status for m in await store.list_mint_items(MintStatus.PENDING, 10, chain_id=CHAIN)
    ] == [
        MintStatus.PENDING,
        MintStatus.PENDING,
    ]


# relayer unconfirmed txs (the broadcaster's)


async def test_unconfirmed_txs_union_order_and_sent_flag(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    # nonce 0: a payment, sent then completed; its 2 mint items go out at nonce 1.
    completed, items = await _completed_payment(store, token, relayer, 2)
    mint_batch = await store.claim_mint_items(relayer, _ids(items), sign_mint, chain_id=CHAIN)
    # nonce 2: a payment still processing; nonce 3: one failed after being signed.
    await queue_payments(store, token, 2)
    processing, failed = await store.claim_payments(relayer, 2, sign_payment, chain_id=CHAIN)
    await store.fail_payment(failed.id, PaymentStatus.CONFIRMATION_FAILED, "expired")
    # Another relayer's tx is not this relayer's.
    await _sent_payment(store, token, random_address())
    # nonce 4 then requeued: its tx is gone, it is not among the unconfirmed txs.
    requeued = await _sent_payment(store, token, relayer)
    await store.requeue_payment(requeued.id, "dropped")

    def expect(nonce: int, tx_hash: str | None, raw_tx: str | None, sent: bool) -> UnconfirmedTx:
        assert tx_hash is not None and raw_tx is not None
        return UnconfirmedTx(nonce=nonce, tx_hash=tx_hash, raw_tx=raw_tx, sent=sent)

    assert completed.raw_tx is not None
    paid = sign_payment(completed, 0)
    mint = mint_batch[0]
    txs = await store.unconfirmed_txs(relayer, 0, chain_id=CHAIN)
    assert txs == [
        expect(0, paid.hash, paid.raw, True),
        expect(1, mint.tx_hash, mint.raw_tx, False),
        expect(2, processing.tx_hash, processing.raw_tx, False),
        expect(3, failed.tx_hash, failed.raw_tx, True),
    ]
    assert (
        await store.unconfirmed_txs(relayer, 2, chain_id=CHAIN) == txs[1:]
    )  # nonce 1 is still processing
    assert (
        await store.unconfirmed_txs(relayer, 4, chain_id=CHAIN) == txs[1:3]
    )  # processing: whatever the nonce
    assert await store.unconfirmed_txs(random_address(), 0, chain_id=CHAIN) == []
    await store.mark_sent([mint.tx_hash or "", processing.tx_hash or ""])
    assert [tx.sent for tx in await store.unconfirmed_txs(relayer, 0, chain_id=CHAIN)] == [True] * 4


async def test_sync_relayer_nonce_takes_the_max(store: Store) -> None:
    relayer = random_address()
    assert await store.sync_relayer_nonce(relayer, 5, chain_id=CHAIN) == 5  # created
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 5
    assert await store.sync_relayer_nonce(relayer, 3, chain_id=CHAIN) == 5  # stored is ahead: kept
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 5
    assert (
        await store.sync_relayer_nonce(relayer, 9, chain_id=CHAIN) == 9
    )  # chain is ahead: follow it
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 9
    other = random_address()
    assert await store.sync_relayer_nonce(other, 0, chain_id=CHAIN) == 0
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 9


# operators


async def test_payment_stats_empty(store: Store) -> None:
    stats = await store.payment_stats()
    assert stats == {
        "payments": {s.value: 0 for s in PaymentStatus},
        "mints": {s.value: 0 for s in MintStatus},
        "oldest_sent_age_s": None,
        "completed_last_minute": 0,
        "mints_completed_last_minute": 0,
    }


async def test_payment_stats_counts(store: Store) -> None:
    token = await register_token(store)
    relayer = random_address()
    _, items = await _completed_payment(store, token, relayer, 3)
    await _completed_payment(store, token, relayer, 1)
    sent = await _sent_payment(store, token, relayer)
    await queue_payments(store, token, 3)
    await store.claim_payments(
        relayer, 1, sign_payment, chain_id=CHAIN
    )  # one processing, two pending
    (failed,) = await queue_payments(store, token, 1)
    await store.fail_payment(failed.id, PaymentStatus.FAILED, "expired")
    await store.complete_mint_items(_ids(items[:2]), None)
    # The sent payment went out two minutes ago.
    two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)
    await execute_raw(
        store,
        "UPDATE payment_queue SET processed_at = $1 WHERE id = $2",
        two_minutes_ago,
        sent.id,
    )
    stats = await store.payment_stats()
    assert stats["payments"] == {
        "pending": 2,
        "processing": 1,
        "sent": 1,
        "completed": 2,
        "failed": 1,
        "confirmation_failed": 0,
        "awaiting_approval": 0,
    }
    assert stats["mints"] == {
        "pending": 2,
        "processing": 0,
        "sent": 0,
        "completed": 2,
        "failed": 0,
    }
    assert isinstance(stats["oldest_sent_age_s"], float)
    assert 115 <= stats["oldest_sent_age_s"] <= 180
    assert stats["completed_last_minute"] == 2
    assert stats["mints_completed_last_minute"] == 2
    # Completions older than a minute are not counted.
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await execute_raw(store, "UPDATE payment_queue SET updated_at = $1", an_hour_ago)
    await execute_raw(store, "UPDATE mint_queue SET updated_at = $1", an_hour_ago)
    stats = await store.payment_stats()
    assert stats["completed_last_minute"] == 0
    assert stats["mints_completed_last_minute"] == 0


# PostgreSQL: claims racing on one relayer


async def test_concurrent_claims_never_share_a_payment_or_a_nonce(
    pg_store: PostgresStore,
) -> None:
    token = make_token(max_mint_count=1000)
    await pg_store.upsert_token(token)
    queued = await queue_payments(pg_store, token, 40)
    relayer = random_address()

    async def claim() -> list[Payment]:
        def sign(payment: Payment, nonce: int) -> SignedTx:
            return sign_payment(payment, nonce)

        return await pg_store.claim_payments(relayer, 10, sign, chain_id=CHAIN)

    batches = await asyncio.gather(*(claim() for _ in range(4)))
    claimed = [p for batch in batches for p in batch]
    assert sorted(len(b) for b in batches) == [10, 10, 10, 10]
    assert {p.id for p in claimed} == {n.id for n in queued}
    assert sorted(p.tx_nonce for p in claimed if p.tx_nonce is not None) == list(range(40))
    for batch in batches:  # each claim's nonces are one consecutive run
        nonces = [p.tx_nonce for p in batch if p.tx_nonce is not None]
        assert nonces == list(range(nonces[0], nonces[0] + 10))
    rows = await fetch_raw(
        pg_store, "SELECT id, nonce, status FROM payment_queue WHERE relayer = $1", relayer
    )
    assert len(rows) == 40
    assert sorted(r["nonce"] for r in rows) == list(range(40))
    assert {r["status"] for r in rows} == {"processing"}
    assert await pg_store.get_relayer_nonce(relayer, chain_id=CHAIN) == 40


async def test_concurrent_payment_and_mint_claims_share_nonces_serially(
    pg_store: PostgresStore,
) -> None:
    token = make_token(max_mint_count=1000)
    await pg_store.upsert_token(token)
    relayer = random_address()
    minted: list[MintItem] = []
    for _ in range(4):  # nonces 0..3, 2 mint items each
        _, items = await _completed_payment(pg_store, token, relayer, 2)
        minted += items
    await queue_payments(pg_store, token, 20)
    claims: list[Awaitable[Sequence[Payment | MintItem]]] = []
    for i in range(4):  # interleaved: payments, mints, payments, mints, ...
        claims.append(pg_store.claim_payments(relayer, 5, sign_payment, chain_id=CHAIN))
        claims.append(
            pg_store.claim_mint_items(
                relayer, _ids(minted[2 * i : 2 * i + 2]), sign_mint, chain_id=CHAIN
            )
        )
    results = await asyncio.gather(*claims)
    claimed = [x for batch in results for x in batch]
    assert len(claimed) == 20 + 8
    nonces = sorted({x.tx_nonce for x in claimed if x.tx_nonce is not None})
    assert nonces == list(range(4, 4 + 20 + 4))
    txs = await pg_store.unconfirmed_txs(relayer, 4, chain_id=CHAIN)
    assert [tx.nonce for tx in txs] == nonces
    assert len({tx.tx_hash for tx in txs}) == len(txs)
    assert await pg_store.get_relayer_nonce(relayer, chain_id=CHAIN) == 28
