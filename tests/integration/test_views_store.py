"""What providers read, on PostgreSQL (payfirst.usecases.views over the store): each sees its
own payments and ledger entries only, newest first, a page at a time with no duplicate and
no gap, however rows tie on their time and whatever is inserted meanwhile; cursors are
refused with other filters or when tampered with; the queries read the 0012 and ledger
indexes."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.adapters.sql import QUERIES
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.ledger import PLATFORM, AccountKind, fee_of
from payfirst.domain.models import Payment, SignedTx, Token
from payfirst.domain.networks import BASE
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus
from payfirst.pipeline.relayer import Relayer
from payfirst.ports.store import EntryRow, EntryScope, PaymentRow, PaymentScope
from payfirst.usecases.accounts import Accounts
from payfirst.usecases.deps import ServedNetworks
from payfirst.usecases.views import (
    AssetInfo,
    EntryFilters,
    PaymentFilters,
    ProviderViews,
    ViewPage,
    check_statuses,
    check_time,
    decode_cursor,
    encode_cursor,
)
from tests.fixtures.store import (
    execute_raw,
    fetch_raw,
    make_payment,
    random_address,
    register_token,
)

CHAIN = 31337
RELAYER = Relayer.from_key(ANVIL_KEYS[0], CHAIN)
FEE_BPS = 250
#: The payments' creation times: groups of three share one, so pages split ties.
BASE_TIME = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class World:
    store: PostgresStore
    views: ProviderViews
    token: Token
    operator: Account
    a: Account
    b: Account
    a_collected: UUID  # endpoint of A whose payments the platform collects for A
    a_direct: UUID  # endpoint of A paid directly to A's address
    b_endpoint: UUID
    payments: dict[str, list[UUID]]  # a_collected, a_direct, b, other


async def _account(store: PostgresStore, role: Role, name: str) -> Account:
    account, _ = await Accounts(store).create_account(role, name)
    return account


async def _endpoint(store: PostgresStore, provider: Account, token: Token, resource: str) -> UUID:
    endpoint_id = uuid4()
    await execute_raw(
        store,
        "INSERT INTO endpoints (id, provider_id, method, resource, amount, asset, chain_id, pay_to)"
        " VALUES ($1, $2, 'GET', $3, 1000, $4, $5, $6)",
        endpoint_id,
        provider.id,
        resource,
        token.payment_asset,
        CHAIN,
        random_address(),
    )
    return endpoint_id


async def _queue(
    store: PostgresStore,
    token: Token,
    count: int,
    *,
    provider: Account | None = None,
    endpoint: UUID | None = None,
) -> list[UUID]:
    """`count` payments queued as the accept path queues them, with the endpoint paid for
    and, when the platform collects, the provider and its fee."""
    ids = []
    for _ in range(count):
        new = dataclasses.replace(
            make_payment(token),
            endpoint_id=endpoint,
            provider_id=None if provider is None else provider.id,
            fee_bps=None if provider is None else FEE_BPS,
        )
        assert (await store.queue_payment(new)).created
        ids.append(new.id)
    return ids


@pytest.fixture
async def world(own_store: PostgresStore) -> World:
    # A schema of its own: nothing of it (endpoints, payouts) outlives the test.
    store = own_store
    token = await register_token(store)
    operator = await _account(store, Role.OPERATOR, "ops")
    a = await _account(store, Role.PROVIDER, "provider a")
    b = await _account(store, Role.PROVIDER, "provider b")
    a_collected = await _endpoint(store, a, token, "/a/collected")
    a_direct = await _endpoint(store, a, token, "/a/direct")
    b_endpoint = await _endpoint(store, b, token, "/b")
    payments = {
        "a_collected": await _queue(store, token, 5, provider=a, endpoint=a_collected),
        "a_direct": await _queue(store, token, 3, endpoint=a_direct),
        "b": await _queue(store, token, 4, provider=b, endpoint=b_endpoint),
        "other": await _queue(store, token, 2),
    }
    every = [p for ids in payments.values() for p in ids]
    for i, payment_id in enumerate(every):
        await execute_raw(
            store,
            "UPDATE payment_queue SET created_at = $2 WHERE id = $1",
            payment_id,
            BASE_TIME + timedelta(seconds=i // 3),
        )
    return World(
        store,
        ProviderViews(store),
        token,
        operator,
        a,
        b,
        a_collected,
        a_direct,
        b_endpoint,
        payments,
    )


async def _newest_first(store: PostgresStore, ids: list[UUID]) -> list[UUID]:
    rows = await fetch_raw(
        store,
        "SELECT id FROM payment_queue WHERE id = ANY($1) ORDER BY created_at DESC, id DESC",
        ids,
    )
    return [r["id"] for r in rows]


async def _all_pages(
    views: ProviderViews, scope: PaymentScope, limit: int
) -> list[ViewPage[PaymentRow]]:
    pages = [await views.payments(scope, limit)]
    while pages[-1].next_cursor is not None:
        pages.append(await views.payments(scope, limit, pages[-1].next_cursor))
        assert len(pages) < 100
    return pages


def _ids(pages: list[ViewPage[PaymentRow]]) -> list[UUID]:
    return [p.id for page in pages for p in page.items]


async def test_a_provider_reads_its_payments_newest_first_a_page_at_a_time(world: World) -> None:
    w = world
    scope = await w.views.payment_scope(w.a, PaymentFilters())
    mine = w.payments["a_collected"] + w.payments["a_direct"]
    pages = await _all_pages(w.views, scope, 3)
    assert [len(p.items) for p in pages] == [3, 3, 2]
    assert _ids(pages) == await _newest_first(w.store, mine)
    # Every page size, ties of created_at split anywhere: the same rows, once each.
    for limit in (1, 2, 4, 7, 8, 100):
        assert _ids(await _all_pages(w.views, scope, limit)) == _ids(pages)
    row = pages[0].items[0]
    assert row.provider_id in (None, w.a.id) and row.status is PaymentStatus.PENDING


async def test_providers_never_see_each_others_payments(world: World) -> None:
    w = world
    b_scope = await w.views.payment_scope(w.b, PaymentFilters())
    assert set(_ids(await _all_pages(w.views, b_scope, 2))) == set(w.payments["b"])
    # B's endpoint as A's filter: nothing. A naming B: 404, like an account that is not.
    a_on_b = await w.views.payment_scope(w.a, PaymentFilters(endpoint_id=w.b_endpoint))
    assert (await w.views.payments(a_on_b, 100)).items == []
    with pytest.raises(PaymentRejected) as refused:
        await w.views.payment_scope(w.a, PaymentFilters(provider_id=w.b.id))
    assert refused.value.reason is Reason.UNKNOWN_ACCOUNT
    for payment_id in w.payments["b"] + w.payments["other"]:
        with pytest.raises(PaymentRejected) as missing:
            await w.views.payment(w.a, payment_id)
        assert missing.value.reason is Reason.UNKNOWN_PAYMENT
    for payment_id in w.payments["a_collected"] + w.payments["a_direct"]:
        assert (await w.views.payment(w.a, payment_id)).id == payment_id
        with pytest.raises(PaymentRejected):
            await w.views.payment(w.b, payment_id)


async def test_the_operator_reads_every_payment_or_one_providers(world: World) -> None:
    w = world
    everyone = await w.views.payment_scope(w.operator, PaymentFilters())
    every = [p for ids in w.payments.values() for p in ids]
    assert _ids(await _all_pages(w.views, everyone, 4)) == await _newest_first(w.store, every)
    for provider, expected in ((w.a, ["a_collected", "a_direct"]), (w.b, ["b"])):
        scope = await w.views.payment_scope(w.operator, PaymentFilters(provider_id=provider.id))
        ids = [p for name in expected for p in w.payments[name]]
        assert _ids(await _all_pages(w.views, scope, 3)) == await _newest_first(w.store, ids)
    with pytest.raises(PaymentRejected) as refused:
        await w.views.payment_scope(w.operator, PaymentFilters(provider_id=uuid4()))
    assert refused.value.reason is Reason.UNKNOWN_ACCOUNT
    assert (await w.views.payment(w.operator, w.payments["other"][0])).provider_id is None


async def test_filters_by_status_time_and_endpoint(world: World) -> None:
    w = world
    collected = w.payments["a_collected"]
    await execute_raw(
        w.store,
        "UPDATE payment_queue SET status = 'failed', error = 'no funds' WHERE id = ANY($1)",
        collected[:2],
    )

    async def listed(**filters: Any) -> set[UUID]:
        scope = await w.views.payment_scope(w.a, PaymentFilters(**filters))
        return set(_ids(await _all_pages(w.views, scope, 2)))

    failed = check_statuses(["failed"])
    assert await listed(statuses=failed) == set(collected[:2])
    both = check_statuses(["failed,pending"])
    assert await listed(statuses=both) == set(collected + w.payments["a_direct"])
    assert await listed(statuses=check_statuses(["completed"])) == set()
    assert await listed(endpoint_id=w.a_direct) == set(w.payments["a_direct"])
    assert await listed(endpoint_id=w.a_collected, statuses=failed) == set(collected[:2])
    # Times: payment i was created at BASE_TIME + i // 3 s; since inclusive, until exclusive.
    since, until = BASE_TIME + timedelta(seconds=1), BASE_TIME + timedelta(seconds=3)
    expected = await fetch_raw(
        w.store,
        "SELECT id FROM payment_queue WHERE id = ANY($1) AND created_at >= $2 AND created_at < $3",
        collected + w.payments["a_direct"],
        since,
        until,
    )
    assert len(expected) == 5  # payments 3..7 of the 8
    assert await listed(since=since, until=until) == {r["id"] for r in expected}
    with pytest.raises(PaymentRejected):
        await w.views.payment_scope(w.a, PaymentFilters(since=until, until=since))


async def test_pages_hold_no_duplicate_and_no_gap_while_payments_arrive(world: World) -> None:
    w = world
    scope = await w.views.payment_scope(w.a, PaymentFilters())
    before = await _newest_first(w.store, w.payments["a_collected"] + w.payments["a_direct"])
    first = await w.views.payments(scope, 3)
    # New payments (created now: newer than every listed one) for both of A's endpoints.
    arrived = await _queue(w.store, w.token, 2, provider=w.a, endpoint=w.a_collected)
    arrived += await _queue(w.store, w.token, 2, endpoint=w.a_direct)
    pages = [first]
    while pages[-1].next_cursor is not None:
        pages.append(await w.views.payments(scope, 3, pages[-1].next_cursor))
        if len(pages) == 2:
            arrived += await _queue(w.store, w.token, 1, provider=w.a, endpoint=w.a_collected)
    assert _ids(pages) == before
    fresh = _ids(await _all_pages(w.views, scope, 3))
    assert fresh == await _newest_first(w.store, before + arrived)


async def test_a_cursor_is_refused_with_other_filters_or_tampered_with(world: World) -> None:
    w = world
    scope = await w.views.payment_scope(w.a, PaymentFilters())
    cursor = (await w.views.payments(scope, 2)).next_cursor
    assert cursor is not None
    other = await w.views.payment_scope(w.a, PaymentFilters(statuses=check_statuses(["pending"])))
    b_scope = await w.views.payment_scope(w.b, PaymentFilters())
    entries = await w.views.entry_scope(w.a, EntryFilters())
    forged = encode_cursor("p", other, BASE_TIME, uuid4(), 0)
    bad = [cursor[:-1], cursor + "A", cursor[::-1], "", "!!!!", "x" * 500, forged, "cA", "=="]
    for candidate in bad:
        with pytest.raises(PaymentRejected) as refused:
            await w.views.payments(scope, 2, candidate)
        assert refused.value.reason is Reason.INVALID_REQUEST, candidate
    for wrong_scope in (other, b_scope):
        with pytest.raises(PaymentRejected):
            await w.views.payments(wrong_scope, 2, cursor)
    with pytest.raises(PaymentRejected):
        await w.views.entries(entries, 2, cursor)
    # A well-formed cursor made by hand only moves within the caller's own rows.
    far = encode_cursor("p", b_scope, datetime(9999, 1, 1, tzinfo=UTC), uuid4(), 0)
    assert {p.id for p in (await w.views.payments(b_scope, 100, far)).items} == set(w.payments["b"])
    at, row, pos = decode_cursor("p", scope, cursor)
    assert at.tzinfo is not None and isinstance(row, UUID) and pos == 0


async def test_an_export_reads_every_row_a_page_at_a_time(world: World) -> None:
    w = world
    scope = await w.views.payment_scope(w.a, PaymentFilters())
    expected = await _newest_first(w.store, w.payments["a_collected"] + w.payments["a_direct"])
    pages = [[p.id for p in rows] async for rows in await w.views.export_payments(scope, page=3)]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [p for rows in pages for p in rows] == expected
    exactly = ProviderViews(w.store, export_limit=8)  # as many as match: all of them
    assert [p.id async for rows in await exactly.export_payments(scope) for p in rows] == expected
    await _complete_all(w.store)
    entry_scope = await w.views.entry_scope(w.operator, EntryFilters())
    exported = [e async for rows in await w.views.export_entries(entry_scope, page=4) for e in rows]
    assert exported == await _all_entries(w.views, entry_scope, 100)


async def test_an_export_of_more_than_its_limit_is_refused_before_any_row(world: World) -> None:
    """An export is never cut short without a word: more rows than the limit is 400 (narrow
    with since/until), checked before the first row is read."""
    w = world
    small = ProviderViews(w.store, export_limit=7)
    scope = await small.payment_scope(w.a, PaymentFilters())  # 8 payments
    with pytest.raises(PaymentRejected) as refused:
        await small.export_payments(scope)
    assert refused.value.reason is Reason.INVALID_REQUEST
    assert "since" in refused.value.message
    narrower = await small.payment_scope(
        w.a, PaymentFilters(until=BASE_TIME + timedelta(seconds=2))
    )
    rows = [p async for page in await small.export_payments(narrower) for p in page]
    assert 0 < len(rows) <= 7
    await _complete_all(w.store)
    entries = await small.entry_scope(w.operator, EntryFilters())
    with pytest.raises(PaymentRejected):
        await small.export_entries(entries)
    assert await w.store.count_view_entries(entries, 3) == 3
    assert await w.store.count_view_payments(scope, 100) == 8
    assert await w.store.count_view_payments(scope, 5) == 5


def _sign_each(payment: Payment, nonce: int) -> SignedTx:
    digest = hashlib.sha256(f"{payment.id} {nonce}".encode()).hexdigest()
    return SignedTx(raw="0x02f8" + digest, hash="0x" + digest)


async def _complete_all(store: PostgresStore) -> None:
    claimed = await store.claim_payments(RELAYER.address, 100, _sign_each, chain_id=CHAIN)
    await store.mark_sent([p.tx_hash for p in claimed if p.tx_hash])
    await store.complete_payments([(p.id, p.tx_hash or "", []) for p in claimed])


async def _all_entries(views: ProviderViews, scope: EntryScope, limit: int) -> list[EntryRow]:
    page = await views.entries(scope, limit)
    rows = list(page.items)
    while page.next_cursor is not None:
        page = await views.entries(scope, limit, page.next_cursor)
        rows += page.items
    return rows


async def test_a_provider_reads_the_entries_of_its_own_ledger_accounts(world: World) -> None:
    w = world
    await _complete_all(w.store)
    scope = await w.views.entry_scope(w.a, EntryFilters())
    # One completion tick writes every entry at the same time: pages split the tie.
    rows = await _all_entries(w.views, scope, 2)
    amount = w.token.price_per_mint
    assert len(rows) == 5
    assert {r.payment_id for r in rows} == set(w.payments["a_collected"])
    assert {(r.account_kind, r.owner, r.amount) for r in rows} == {
        (AccountKind.PROVIDER, str(w.a.id), amount - fee_of(amount, FEE_BPS))
    }
    keys = [(r.created_at, r.transaction_id, r.position) for r in rows]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    for limit in (1, 3, 100):
        assert await _all_entries(w.views, scope, limit) == rows
    # B's payment as A's filter: nothing.
    b_payment = w.payments["b"][0]
    on_b = await w.views.entry_scope(w.a, EntryFilters(payment_id=b_payment))
    assert (await w.views.entries(on_b, 10)).items == []
    with pytest.raises(PaymentRejected):
        await w.views.entry_scope(w.a, EntryFilters(account_kind=AccountKind.FEES))
    with pytest.raises(PaymentRejected):
        await w.views.entry_scope(w.a, EntryFilters(provider_id=w.b.id))


async def test_the_operator_reads_every_entry_or_one_kinds_or_one_payments(world: World) -> None:
    w = world
    await _complete_all(w.store)
    every = await _all_entries(w.views, await w.views.entry_scope(w.operator, EntryFilters()), 4)
    total = await fetch_raw(w.store, "SELECT count(*) AS n FROM ledger_entries")
    assert len(every) == total[0]["n"] and sum(r.amount for r in every) == 0
    fees_scope = await w.views.entry_scope(w.operator, EntryFilters(account_kind=AccountKind.FEES))
    fees = await _all_entries(w.views, fees_scope, 3)
    assert {r.owner for r in fees} == {PLATFORM} and len(fees) == 9  # A's 5 and B's 4
    b_scope = await w.views.entry_scope(w.operator, EntryFilters(provider_id=w.b.id))
    assert {r.payment_id for r in await _all_entries(w.views, b_scope, 3)} == set(w.payments["b"])
    one = w.payments["other"][0]
    of_one = await w.views.entry_scope(w.operator, EntryFilters(payment_id=one))
    entries = await _all_entries(w.views, of_one, 10)
    assert [r.amount for r in entries] == [w.token.price_per_mint, -w.token.price_per_mint]
    assert [r.position for r in entries] == [1, 0]


async def test_decimals_come_from_the_network_the_tokens_or_nobody(world: World) -> None:
    w = world

    async def tokens() -> list[Token]:
        return await w.store.list_tokens()

    decimals = await AssetInfo(ServedNetworks([]), tokens).decimals()
    base_usdc = BASE.assets[0].address
    assert decimals(BASE.chain_id, base_usdc.lower()) == 6
    assert decimals(CHAIN, w.token.payment_asset) == w.token.asset_decimals
    assert decimals(CHAIN, random_address()) is None
    assert decimals(None, w.token.payment_asset) is None  # no single served network


def test_times_are_rfc3339_with_an_offset() -> None:
    assert check_time("2026-06-01T12:00:00Z", "since") == BASE_TIME
    assert check_time("2026-06-01T14:00:00.5+02:00", "since") == BASE_TIME + timedelta(
        microseconds=500_000
    )
    assert check_time("2026-06-01T12:00:00 00:00", "since") == BASE_TIME  # an unencoded +
    for bad in ("2026-06-01", "2026-06-01T12:00:00", "2026-13-01T12:00:00Z", "yesterday", ""):
        with pytest.raises(PaymentRejected):
            check_time(bad, "since")


# --- the indexes ---------------------------------------------------------------------------

_NO_KEY: tuple[None, None] = (None, None)
_PLANS: list[tuple[str, str, tuple[Any, ...]]] = [
    (
        "view_payments_of_provider",
        "idx_payment_queue_provider_created",
        (uuid4(), *_NO_KEY, ["completed"], None, None, 50),
    ),
    (
        "view_payments_of_provider",
        "idx_payment_queue_endpoint_created",
        (uuid4(), BASE_TIME, uuid4(), None, BASE_TIME, None, 50),
    ),
    (
        "view_payments_of_endpoint",
        "idx_payment_queue_endpoint_created",
        (uuid4(), uuid4(), *_NO_KEY, None, None, None, 50),
    ),
    (
        "view_entries_of_owner",
        "idx_ledger_entries_account",
        ("provider", str(uuid4()), None, None, None, None, None, None, 50),
    ),
]


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::text[]"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize(("query", "index", "args"), _PLANS, ids=[f"{q}-{i}" for q, i, _ in _PLANS])
async def test_the_views_read_through_their_indexes(
    world: World, query: str, index: str, args: tuple[Any, ...], generic: bool
) -> None:
    """With sequential scans priced out, a query that can use its index does; both with the
    parameters known (a custom plan) and not (the generic plan a prepared statement may
    settle on)."""
    async with world.store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        if generic:
            # A named prepared statement, planned without its parameters' values.
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE view_probe AS {QUERIES[query]}")
            try:
                values = ", ".join(_literal(a) for a in args)
                rows = await conn.fetch(f"EXPLAIN EXECUTE view_probe({values})")
            finally:
                await conn.execute("DEALLOCATE view_probe")
        else:
            rows = await conn.fetch(f"EXPLAIN {QUERIES[query]}", *args)
    plan = "\n".join(r[0] for r in rows)
    if generic:
        assert "$1" in plan, plan  # the plan does not know the values
    assert index in plan, plan
    assert "Seq Scan on payment_queue" not in plan, plan
    assert "Seq Scan on ledger_entries" not in plan, plan
