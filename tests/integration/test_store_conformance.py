"""The Store port's contract."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from payfirst.adapters.migrate import load_migrations
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Payment
from payfirst.domain.settings import SettingError
from payfirst.domain.statuses import MintStatus, PaymentStatus, PaymentType
from payfirst.ports.store import Store
from tests.fixtures.store import (
    IntegrityErrors,
    execute_raw,
    fetch_raw,
    make_payment,
    make_token,
    random_address,
)

#: The chain of the tokens `make_token` builds, so of their payments.
CHAIN = 31337


async def _migrate(store: Store) -> list[int]:
    assert isinstance(store, PostgresStore)
    return await store.migrate()


async def _payment_rows(store: Store) -> int:
    rows = await fetch_raw(store, "SELECT count(*) AS n FROM payment_queue")
    return int(rows[0]["n"])


async def _insert_mint_item(store: Store, payment: Payment, mint_id: str) -> None:
    await execute_raw(
        store,
        "INSERT INTO mint_queue (id, payment_id, payer, token_address, mint_id, "
        "payment_tx_hash, status) VALUES ($1, $2, $3, $4, $5, $6, 'pending')",
        uuid4(),
        payment.id,
        payment.payer,
        payment.pay_to,
        mint_id,
        "0x" + "11" * 32,
    )


# migrations


async def test_migrations_are_idempotent(store: Store) -> None:
    assert await _migrate(store) == []
    assert await _migrate(store) == []
    rows = await fetch_raw(store, "SELECT version FROM schema_migrations ORDER BY version")
    expected = [m.version for m in load_migrations()]
    assert [int(r["version"]) for r in rows] == expected
    await store.ping()


# tokens


async def test_token_upsert_get_list(store: Store) -> None:
    token = make_token(price_per_mint=2**70 + 1, mint_amount=10**30)
    assert await store.get_token(token.address) is None
    await store.upsert_token(token)
    assert await store.get_token(token.address) == token
    other = make_token(symbol="OTHER")
    await store.upsert_token(other)
    listed = await store.list_tokens()
    assert {t.address for t in listed} == {token.address, other.address}


async def test_token_upsert_keeps_reserved_count(store: Store) -> None:
    token = make_token(max_mint_count=10)
    await store.upsert_token(token)
    await store.queue_payment(make_payment(token, quantity=3))
    await store.upsert_token(replace(token, name="Renamed", max_mint_count=20, reserved_count=0))
    stored = await store.get_token(token.address)
    assert stored is not None
    assert stored.name == "Renamed"
    assert stored.max_mint_count == 20
    assert stored.reserved_count == 3


async def test_a_token_is_never_moved_to_another_chain(store: Store) -> None:
    """Mint items find their chain through their token: re-registering its address on
    another chain would hand them to that chain's confirmer. Refused, nothing changed."""
    token = make_token()
    await store.upsert_token(token)
    with pytest.raises(ValueError, match="registered on another chain"):
        await store.upsert_token(replace(token, chain_id=8453, name="Moved"))
    assert await store.get_token(token.address) == token
    await store.upsert_token(replace(token, name="Renamed"))  # the same chain: updated
    stored = await store.get_token(token.address)
    assert stored is not None and (stored.name, stored.chain_id) == ("Renamed", CHAIN)


# settings and relayers


async def test_settings_rows_set_read_back_and_unset(store: Store) -> None:
    """The store keeps only what was set (the defaults are the domain's)."""
    assert await store.get_settings() == {}
    await store.set_setting("payment_batch_size", 7)
    await store.set_setting("payment_batch_size", 8)
    await store.set_setting("max_fee_per_gas_gwei", 1_000_000)
    assert await store.get_settings() == {"payment_batch_size": 8, "max_fee_per_gas_gwei": 10**6}
    assert await store.unset_setting("payment_batch_size")
    assert not await store.unset_setting("payment_batch_size")
    assert await store.get_settings() == {"max_fee_per_gas_gwei": 10**6}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("payment_batch_size", 0, "payment_batch_size must be at least 1, not 0"),
        ("mint_interval_ms", 0, "mint_interval_ms must be at least 50"),
        ("confirmation_depth", -2, "confirmation_depth must be at least -1"),
        ("payment_tx_batching", 2, "payment_tx_batching must be 0 (off) or 1 (on)"),
        ("something_new", 1, "unknown setting 'something_new'"),
    ],
)
async def test_set_setting_refuses_a_bad_value_and_writes_nothing(
    store: Store, name: str, value: int, message: str
) -> None:
    with pytest.raises(SettingError, match=re.escape(message)):
        await store.set_setting(name, value)
    assert await store.get_settings() == {}


async def test_relayer_nonce(store: Store) -> None:
    relayer = random_address()
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) is None
    await store.set_relayer_nonce(relayer, 0, chain_id=CHAIN)
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 0
    await store.set_relayer_nonce(relayer, 41, chain_id=CHAIN)
    assert await store.get_relayer_nonce(relayer, chain_id=CHAIN) == 41
    assert await store.get_relayer_nonce(random_address(), chain_id=CHAIN) is None


# queue_payment


async def test_queue_payment_creates_pending_and_reserves(store: Store) -> None:
    token = make_token(max_mint_count=10)
    await store.upsert_token(token)
    new = make_payment(token, quantity=4, metadata={"note": "hello"})
    queued = await store.queue_payment(new)
    assert queued.payment_id == new.id
    assert queued.created is True
    stored_token = await store.get_token(token.address)
    assert stored_token is not None
    assert stored_token.reserved_count == 4
    assert stored_token.remaining == 6
    payment = await store.get_payment(new.id)
    assert payment is not None
    assert payment.status is PaymentStatus.PENDING


async def test_get_payment_returns_all_fields(store: Store) -> None:
    token = make_token()
    await store.upsert_token(token)
    new = make_payment(token, quantity=2, metadata={"agent": "a1", "n": [1, 2]})
    before = datetime.now(UTC) - timedelta(seconds=5)
    await store.queue_payment(new)
    payment = await store.get_payment(new.id)
    assert payment is not None
    assert payment.id == new.id
    assert payment.payment_type is PaymentType.MINT
    assert payment.payer == new.payer
    assert payment.amount == new.amount
    assert payment.payment_asset == new.payment_asset
    assert payment.pay_to == new.pay_to
    assert payment.quantity == 2
    assert payment.authorization == new.authorization
    assert payment.metadata == {"agent": "a1", "n": [1, 2]}
    assert payment.status is PaymentStatus.PENDING
    assert payment.tx_hash is None
    assert payment.tx_nonce is None
    assert payment.relayer is None
    assert payment.raw_tx is None
    assert payment.error is None
    assert payment.processed_at is None
    assert payment.result is None
    assert payment.created_at.tzinfo is not None
    assert before <= payment.created_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert await store.get_payment(uuid4()) is None


async def test_identical_requeue_returns_same_id(store: Store) -> None:
    token = make_token(max_mint_count=10)
    await store.upsert_token(token)
    first = make_payment(token, quantity=2)
    assert (await store.queue_payment(first)).created is True
    again = replace(first, id=uuid4())  # the API mints a fresh id for every request
    queued = await store.queue_payment(again)
    assert queued.payment_id == first.id
    assert queued.created is False
    stored_token = await store.get_token(token.address)
    assert stored_token is not None
    assert stored_token.reserved_count == 2
    assert await _payment_rows(store) == 1


async def test_same_nonce_different_authorization_is_rejected(store: Store) -> None:
    token = make_token(max_mint_count=10)
    await store.upsert_token(token)
    first = make_payment(token, quantity=1)
    await store.queue_payment(first)
    forged = make_payment(token, payer=first.payer, nonce=first.authorization.nonce, quantity=2)
    with pytest.raises(PaymentRejected) as info:
        await store.queue_payment(forged)
    assert info.value.reason == "invalid_exact_evm_nonce_already_used"
    stored_token = await store.get_token(token.address)
    assert stored_token is not None
    assert stored_token.reserved_count == 1
    assert await _payment_rows(store) == 1
    assert await store.get_payment(forged.id) is None


@pytest.mark.parametrize(
    "other_purchase",
    [
        pytest.param({"payment_type": PaymentType.SETTLE}, id="mint-then-settle"),
        pytest.param({"quantity": 2}, id="other-quantity"),
        pytest.param({"pay_to": "0x" + "11" * 20}, id="other-token"),
        pytest.param({"payment_asset": "0x" + "22" * 20}, id="other-asset"),
    ],
)
async def test_same_authorization_for_another_purchase_is_rejected(
    store: Store, other_purchase: dict[str, Any]
) -> None:
    """Issue 8 item 3: (payer, nonce) matches an existing payment only when it is the same
    purchase; a header copied onto another route or order buys nothing."""
    token = make_token(max_mint_count=10)
    await store.upsert_token(token)
    first = make_payment(token, quantity=1)
    assert (await store.queue_payment(first)).created
    copied = replace(first, id=uuid4(), **other_purchase)
    with pytest.raises(PaymentRejected) as info:
        await store.queue_payment(copied)
    assert info.value.reason == "invalid_exact_evm_nonce_already_used"
    assert await _payment_rows(store) == 1
    stored_token = await store.get_token(token.address)
    assert stored_token is not None
    assert stored_token.reserved_count == 1


async def test_sold_out_writes_nothing(store: Store) -> None:
    token = make_token(max_mint_count=5)
    await store.upsert_token(token)
    await store.queue_payment(make_payment(token, quantity=4))
    too_many = make_payment(token, quantity=2)
    with pytest.raises(PaymentRejected) as info:
        await store.queue_payment(too_many)
    assert info.value.reason == "sold_out"
    stored_token = await store.get_token(token.address)
    assert stored_token is not None
    assert stored_token.reserved_count == 4
    assert await store.get_payment(too_many.id) is None
    assert await _payment_rows(store) == 1
    # The last one still fits exactly.
    assert (await store.queue_payment(make_payment(token, quantity=1))).created is True
    stored_token = await store.get_token(token.address)
    assert stored_token is not None
    assert stored_token.reserved_count == 5


async def test_unknown_token_is_404(store: Store) -> None:
    token = make_token()
    new = make_payment(token)
    with pytest.raises(PaymentRejected) as info:
        await store.queue_payment(new)
    assert info.value.reason == "unknown_token"
    assert await _payment_rows(store) == 0


async def test_huge_amounts_round_trip_exactly(store: Store) -> None:
    huge = 2**255 + 12345678901234567890
    token = make_token(price_per_mint=2**64 + 1, mint_amount=10**77)
    await store.upsert_token(token)
    stored_token = await store.get_token(token.address)
    assert stored_token is not None
    assert stored_token.price_per_mint == 2**64 + 1
    assert stored_token.mint_amount == 10**77
    new = make_payment(token, amount=huge)
    await store.queue_payment(new)
    payment = await store.get_payment(new.id)
    assert payment is not None
    assert payment.amount == huge
    assert payment.authorization.value == huge


async def test_counts_by_status(store: Store) -> None:
    assert await store.count_payments_by_status() == {s.value: 0 for s in PaymentStatus}
    assert await store.count_mints_by_status() == {s.value: 0 for s in MintStatus}
    token = make_token()
    await store.upsert_token(token)
    payments = [make_payment(token) for _ in range(3)]
    for new in payments:
        await store.queue_payment(new)
    await execute_raw(
        store, "UPDATE payment_queue SET status = 'completed' WHERE payer = $1", payments[0].payer
    )
    counts = await store.count_payments_by_status()
    assert counts["pending"] == 2
    assert counts["completed"] == 1
    assert counts["failed"] == 0
    completed = await store.get_payment(payments[0].id)
    assert completed is not None
    await _insert_mint_item(store, completed, "0x" + "01" * 32)
    await _insert_mint_item(store, completed, "0x" + "02" * 32)
    mints = await store.count_mints_by_status()
    assert mints["pending"] == 2
    assert mints["completed"] == 0


# constraints


async def test_status_check_rejects_unknown_status(store: Store) -> None:
    token = make_token()
    await store.upsert_token(token)
    new = make_payment(token)
    await store.queue_payment(new)
    with pytest.raises(IntegrityErrors):
        await execute_raw(
            store, "UPDATE payment_queue SET status = 'lost' WHERE payer = $1", new.payer
        )
    payment = await store.get_payment(new.id)
    assert payment is not None
    assert payment.status is PaymentStatus.PENDING


async def test_reserved_count_check_rejects_overselling(store: Store) -> None:
    token = make_token(max_mint_count=3)
    await store.upsert_token(token)
    with pytest.raises(IntegrityErrors):
        await execute_raw(
            store, "UPDATE tokens SET reserved_count = 4 WHERE address = $1", token.address
        )


async def test_unique_mint_id_rejects_duplicate(store: Store) -> None:
    token = make_token()
    await store.upsert_token(token)
    new = make_payment(token)
    await store.queue_payment(new)
    payment = await store.get_payment(new.id)
    assert payment is not None
    mint_id = "0x" + "ab" * 32
    await _insert_mint_item(store, payment, mint_id)
    with pytest.raises(IntegrityErrors):
        await _insert_mint_item(store, payment, mint_id)
    assert (await store.count_mints_by_status())["pending"] == 1
