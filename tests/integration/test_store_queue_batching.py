"""PostgreSQL coalesces the payments queued in the same event-loop turn into one round
trip; each must still be decided exactly as on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import asyncpg
import pytest

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import NewPayment, Token
from tests.fixtures.store import fetch_raw, random_address


async def test_one_turn_mixed_outcomes(
    pg_store: PostgresStore,
    make_token: Callable[..., Token],
    make_payment: Callable[..., NewPayment],
) -> None:
    token = make_token(max_mint_count=3)
    await pg_store.upsert_token(token)
    first = make_payment(token, quantity=2)
    same_again = first  # identical authorization in the same batch: same id, no 2nd charge
    reused = replace(
        make_payment(token, payer=first.payer, nonce=first.authorization.nonce, quantity=1),
    )
    fits = make_payment(token, quantity=1)
    too_many = make_payment(token, quantity=1)  # the cap (3) is reached by then
    unknown = make_payment(replace(token, address=random_address()), quantity=1)

    results = await asyncio.gather(
        *(pg_store.queue_payment(p) for p in (first, same_again, reused, fits, too_many, unknown)),
        return_exceptions=True,
    )
    created, duplicate, clash, fitted, sold_out, missing = results
    assert not isinstance(created, BaseException) and created.created
    assert not isinstance(duplicate, BaseException)
    assert (duplicate.payment_id, duplicate.created) == (created.payment_id, False)
    assert isinstance(clash, PaymentRejected)
    assert clash.reason == "invalid_exact_evm_nonce_already_used"
    assert not isinstance(fitted, BaseException) and fitted.created
    assert isinstance(sold_out, PaymentRejected) and sold_out.reason == "sold_out"
    assert isinstance(missing, PaymentRejected) and missing.reason == "unknown_token"
    rows = await fetch_raw(pg_store, "SELECT id FROM payment_queue ORDER BY created_at")
    assert {r["id"] for r in rows} == {first.id, fits.id}
    stored = await pg_store.get_token(token.address)
    assert stored is not None and stored.reserved_count == 3


async def test_a_failing_payment_does_not_fail_its_batch(
    pg_store: PostgresStore,
    make_token: Callable[..., Token],
    make_payment: Callable[..., NewPayment],
) -> None:
    token = make_token()
    await pg_store.upsert_token(token)
    good = [make_payment(token) for _ in range(5)]
    poison = replace(make_payment(token), quantity=0)  # violates CHECK (quantity > 0)
    results = await asyncio.gather(
        *(pg_store.queue_payment(p) for p in [*good[:2], poison, *good[2:]]),
        return_exceptions=True,
    )
    assert isinstance(results[2], asyncpg.CheckViolationError)
    assert all(
        not isinstance(r, BaseException) and r.created for i, r in enumerate(results) if i != 2
    )
    rows = await fetch_raw(pg_store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 5


@pytest.mark.parametrize("count", [1, 200])
async def test_many_in_one_turn_all_queued(
    pg_store: PostgresStore,
    make_token: Callable[..., Token],
    make_payment: Callable[..., NewPayment],
    count: int,
) -> None:
    token = make_token(max_mint_count=1000)
    await pg_store.upsert_token(token)
    payments = [make_payment(token) for _ in range(count)]
    results = await asyncio.gather(*(pg_store.queue_payment(p) for p in payments))
    assert [r.payment_id for r in results] == [p.id for p in payments]
    stored = await pg_store.get_token(token.address)
    assert stored is not None and stored.reserved_count == count
