"""Paid endpoints in PostgreSQL: round trips of the registry, pages, disabling, the Bazaar
page, and what a payment to an endpoint records when it is queued (payfirst_queue_payments_v3;
v2 kept for the previous release)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.accounts import Role
from payfirst.domain.endpoints import Endpoint, Pricing
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Authorization, NewPayment
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentType
from payfirst.usecases.accounts import Accounts
from tests.fixtures.store import fetch_raw, random_address, random_nonce

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def provider(store: PostgresStore, name: str = "shop") -> UUID:
    account, _ = await Accounts(store).create_account(Role.PROVIDER, name)
    return account.id


def endpoint(provider_id: UUID, n: int = 0, **overrides: object) -> Endpoint:
    at = T0 + timedelta(seconds=n)
    fields: dict[str, object] = {
        "id": uuid4(),
        "provider_id": provider_id,
        "method": "GET",
        "resource": f"https://api.example.com/r{n}",
        "pricing": Pricing.PER_UNIT,
        "amount": 10**70,
        "unit_param": "n",
        "max_units": 7,
        "asset": random_address(),
        "chain_id": 84532,
        "pay_to": random_address(),
        "description": "résumé of the weather",
        "mime_type": "application/json",
        "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "output_schema": None,
        "discoverable": True,
        "max_timeout_seconds": 60,
        "created_at": at,
        "updated_at": at,
    }
    fields.update(overrides)
    return Endpoint(**fields)  # type: ignore[arg-type]


async def test_an_endpoint_is_kept_as_registered(pg_store: PostgresStore) -> None:
    e = endpoint(await provider(pg_store))
    await pg_store.create_endpoint(e)
    assert await pg_store.get_endpoint(e.id) == e
    assert await pg_store.get_endpoint(uuid4()) is None


async def test_an_endpoint_of_no_account_is_refused(pg_store: PostgresStore) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pg_store.create_endpoint(endpoint(uuid4()))
    assert await fetch_raw(pg_store, "SELECT id FROM endpoints") == []


async def test_the_table_refuses_terms_the_registry_never_writes(pg_store: PostgresStore) -> None:
    owner = await provider(pg_store)
    bad = [
        endpoint(owner, amount=0),
        endpoint(owner, method="TRACE"),
        endpoint(owner, pricing=Pricing.FIXED),  # with unit_param and max_units
        endpoint(owner, max_timeout_seconds=0),
    ]
    for e in bad:
        with pytest.raises(asyncpg.CheckViolationError):
            await pg_store.create_endpoint(e)
    assert await fetch_raw(pg_store, "SELECT id FROM endpoints") == []


async def test_endpoints_are_listed_by_provider_a_page_at_a_time(pg_store: PostgresStore) -> None:
    mine, theirs = await provider(pg_store, "mine"), await provider(pg_store, "theirs")
    own = [endpoint(mine, n) for n in range(5)]
    for e in [*own, endpoint(theirs, 10)]:
        await pg_store.create_endpoint(e)
    await pg_store.disable_endpoint(own[2].id, T0 + timedelta(days=1))
    enabled = [e.id for e in own if e.id != own[2].id]
    first = await pg_store.list_endpoints(2, provider_id=mine)  # type: ignore[arg-type]
    assert [e.id for e in first] == enabled[:2]
    rest = await pg_store.list_endpoints(10, provider_id=mine, after=first[-1].id)
    assert [e.id for e in rest] == enabled[2:]
    everything = await pg_store.list_endpoints(
        10,
        provider_id=mine,
        include_disabled=True,
    )
    assert [e.id for e in everything] == [e.id for e in own]
    assert len(await pg_store.list_endpoints(10, include_disabled=True)) == 6
    assert await pg_store.list_endpoints(10, after=uuid4()) == []
    # Another provider's endpoint is no place in this one's list: nothing after it.
    theirs_first = endpoint(theirs, -1)
    await pg_store.create_endpoint(theirs_first)
    assert await pg_store.list_endpoints(10, provider_id=mine, after=theirs_first.id) == []
    everyone = await pg_store.list_endpoints(10, after=theirs_first.id, include_disabled=True)
    assert len(everyone) == 6


async def test_an_endpoint_is_created_only_under_the_providers_limit(
    pg_store: PostgresStore,
) -> None:
    owner, other = await provider(pg_store, "owner"), await provider(pg_store, "other")
    made = [endpoint(owner, n) for n in range(3)]
    for e in made:
        assert await pg_store.create_endpoint(e, limit=3)
    assert not await pg_store.create_endpoint(endpoint(owner, 5), limit=3)
    assert await pg_store.create_endpoint(endpoint(other, 6), limit=3)
    assert await pg_store.create_endpoint(endpoint(owner, 7))  # no limit
    await pg_store.disable_endpoint(made[0].id, T0 + timedelta(days=1))
    await pg_store.disable_endpoint(made[1].id, T0 + timedelta(days=1))
    assert await pg_store.create_endpoint(endpoint(owner, 8), limit=3)
    rows = await fetch_raw(pg_store, "SELECT provider_id FROM endpoints")
    assert sum(r["provider_id"] == owner for r in rows) == 5


async def test_concurrent_registrations_never_pass_the_limit(pg_store: PostgresStore) -> None:
    owner = await provider(pg_store)
    created = await asyncio.gather(
        *(pg_store.create_endpoint(endpoint(owner, n), limit=4) for n in range(10))
    )
    assert sorted(created) == [False] * 6 + [True] * 4
    assert len(await fetch_raw(pg_store, "SELECT id FROM endpoints")) == 4


async def test_an_update_replaces_the_terms_and_keeps_the_rest(pg_store: PostgresStore) -> None:
    e = endpoint(await provider(pg_store))
    await pg_store.create_endpoint(e)
    later = T0 + timedelta(hours=1)
    changed = replace(
        e,
        provider_id=uuid4(),  # never changed by an update
        created_at=later,
        pricing=Pricing.FIXED,
        unit_param=None,
        max_units=None,
        amount=5,
        input_schema=None,
        discoverable=False,
        updated_at=later,
    )
    stored = await pg_store.update_endpoint(changed)
    assert stored == replace(changed, provider_id=e.provider_id, created_at=e.created_at)
    assert await pg_store.get_endpoint(e.id) == stored
    assert await pg_store.update_endpoint(replace(e, id=uuid4())) is None


async def test_disabling_keeps_the_first_time(pg_store: PostgresStore) -> None:
    e = endpoint(await provider(pg_store))
    await pg_store.create_endpoint(e)
    first = await pg_store.disable_endpoint(e.id, T0 + timedelta(days=1))
    assert first is not None and first.disabled_at == T0 + timedelta(days=1)
    again = await pg_store.disable_endpoint(e.id, T0 + timedelta(days=2))
    assert again == first
    assert await pg_store.disable_endpoint(uuid4(), T0) is None


async def test_the_bazaar_page_holds_enabled_discoverable_ones_only(
    pg_store: PostgresStore,
) -> None:
    owner = await provider(pg_store)
    listed = [endpoint(owner, n) for n in range(3)]
    hidden = endpoint(owner, 5, discoverable=False)
    disabled = endpoint(owner, 6)
    for e in [*listed, hidden, disabled]:
        await pg_store.create_endpoint(e)
    await pg_store.disable_endpoint(disabled.id, T0 + timedelta(days=1))
    page, total = await pg_store.discoverable_endpoints(2, 0)
    assert ([e.id for e in page], total) == ([listed[0].id, listed[1].id], 3)
    page, total = await pg_store.discoverable_endpoints(2, 2)
    assert ([e.id for e in page], total) == ([listed[2].id], 3)
    assert await pg_store.discoverable_endpoints(2, 10) == ([], 3)


def settle_payment(**overrides: object) -> NewPayment:
    payer, pay_to = random_address(), random_address()
    authorization = Authorization(
        from_=payer,
        to=pay_to,
        value=25_000,
        valid_after=0,
        valid_before=2**48,
        nonce=random_nonce(),
        signature="0x" + "ab" * 65,
    )
    fields: dict[str, object] = {
        "id": uuid4(),
        "payment_type": PaymentType.SETTLE,
        "payer": payer,
        "amount": 25_000,
        "payment_asset": random_address(),
        "pay_to": pay_to,
        "quantity": 1,
        "authorization": authorization,
        "chain_id": 84532,
    }
    fields.update(overrides)
    return NewPayment(**fields)  # type: ignore[arg-type]


async def test_a_payment_for_an_endpoint_records_it_with_the_provider_and_fee(
    pg_store: PostgresStore,
) -> None:
    endpoint_id, provider_id = uuid4(), uuid4()
    collected = settle_payment(endpoint_id=endpoint_id, provider_id=provider_id, fee_bps=250)
    direct = settle_payment(endpoint_id=endpoint_id)
    plain = settle_payment()
    # One event-loop turn: the three go in one call of the v3 function.
    queued = await asyncio.gather(*(pg_store.queue_payment(p) for p in (collected, direct, plain)))
    assert all(q.created for q in queued)
    rows = await fetch_raw(
        pg_store, "SELECT id, endpoint_id, provider_id, fee_bps FROM payment_queue"
    )
    got = {r["id"]: (r["endpoint_id"], r["provider_id"], r["fee_bps"]) for r in rows}
    assert got == {
        collected.id: (endpoint_id, provider_id, 250),
        direct.id: (endpoint_id, None, None),
        plain.id: (None, None, None),
    }
    # A payment read back names the endpoint it paid for.
    for new, paid_for in ((collected, endpoint_id), (plain, None)):
        found = await pg_store.find_payment(new.payer, new.authorization.nonce)
        assert found is not None and found.endpoint_id == paid_for
        got_back = await pg_store.get_payment(new.id)
        assert got_back is not None and got_back.endpoint_id == paid_for


async def test_an_authorization_is_the_same_purchase_only_for_the_same_endpoint(
    pg_store: PostgresStore,
) -> None:
    first = settle_payment(endpoint_id=uuid4())
    assert (await pg_store.queue_payment(first)).created
    again = await pg_store.queue_payment(replace(first, id=uuid4()))
    assert (again.payment_id, again.created) == (first.id, False)
    for other in (uuid4(), None):
        with pytest.raises(PaymentRejected) as refused:
            await pg_store.queue_payment(replace(first, id=uuid4(), endpoint_id=other))
        assert refused.value.reason is Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED
    assert len(await fetch_raw(pg_store, "SELECT id FROM payment_queue")) == 1


async def test_the_previous_release_still_queues_through_v2(pg_store: PostgresStore) -> None:
    p = settle_payment()
    rows = await fetch_raw(
        pg_store,
        "SELECT outcome FROM payfirst_queue_payments_v2($1::uuid[], $2::text[], $3::text[],"
        " $4::numeric[], $5::text[], $6::text[], $7::integer[], $8::jsonb[], $9::text[],"
        " $10::jsonb[], $11::bigint[], $12::text[], $13::bigint[])",
        [p.id],
        [p.payment_type.value],
        [p.payer],
        [p.amount],
        [p.payment_asset],
        [p.pay_to],
        [1],
        [p.authorization.to_json()],
        [p.authorization.nonce],
        [{}],
        [2**40],
        [None],
        [84532],
    )
    assert [r["outcome"] for r in rows] == ["created"]
