"""queue_payment under concurrency on PostgreSQL: the cap and the (payer, nonce) key hold."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from uuid import uuid4

import asyncpg

from payfirst.adapters.migrate import load_migrations
from payfirst.adapters.store_factory import open_store
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import NewPayment
from payfirst.ports.store import QueuedPayment
from tests.fixtures.store import fetch_raw, make_payment, make_token


async def test_concurrent_buyers_never_oversell(pg_store: PostgresStore) -> None:
    token = make_token(max_mint_count=100)
    await pg_store.upsert_token(token)
    for _ in range(9):  # 90 of 100 sold: 10 left
        await pg_store.queue_payment(make_payment(token, quantity=10))
    # 50 buyers race for the last 10 mints, one each.
    buyers = [make_payment(token, quantity=1) for _ in range(50)]

    async def buy(new: NewPayment) -> QueuedPayment | PaymentRejected:
        try:
            return await pg_store.queue_payment(new)
        except PaymentRejected as exc:
            return exc

    results = await asyncio.gather(*(buy(b) for b in buyers))
    accepted = [r for r in results if isinstance(r, QueuedPayment)]
    rejected = [r for r in results if isinstance(r, PaymentRejected)]
    assert len(accepted) == 10
    assert len(rejected) == 40
    assert {r.reason for r in rejected} == {"sold_out"}
    stored = await pg_store.get_token(token.address)
    assert stored is not None
    assert stored.reserved_count == stored.max_mint_count == 100
    ids = {b.id for b in buyers}
    rows = await fetch_raw(pg_store, "SELECT id FROM payment_queue")
    assert len([r for r in rows if r["id"] in ids]) == 10
    assert len(rows) == 19


async def test_concurrent_identical_requests_queue_once(pg_store: PostgresStore) -> None:
    token = make_token(max_mint_count=100)
    await pg_store.upsert_token(token)
    original = make_payment(token, quantity=3)
    # Every request arrives with its own fresh id; the (payer, nonce) key makes them one.
    copies = [replace(original, id=uuid4()) for _ in range(20)]
    results = await asyncio.gather(*(pg_store.queue_payment(c) for c in copies))
    assert len({r.payment_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    rows = await fetch_raw(pg_store, "SELECT id FROM payment_queue")
    assert len(rows) == 1
    assert rows[0]["id"] == results[0].payment_id
    stored = await pg_store.get_token(token.address)
    assert stored is not None
    assert stored.reserved_count == 3


async def test_processes_starting_at_once_migrate_once(pg_dsn: str) -> None:
    schema = f"payfirst_migrate_{secrets.token_hex(4)}"
    stores = await asyncio.gather(
        *(
            PostgresStore.connect(pg_dsn, schema=schema, min_size=1, max_size=2, migrate=False)
            for _ in range(5)
        )
    )
    try:
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        versions = [m.version for m in load_migrations()]
        # Each version is applied by exactly one of them (not necessarily the same one).
        assert sorted(v for one in applied for v in one) == versions
        rows = await fetch_raw(stores[0], "SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
        assert await stores[4].get_settings() == {}  # the defaults are in code
    finally:
        for s in stores:
            await s.close()
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_open_store_postgres(pg_store: PostgresStore, pg_dsn: str) -> None:
    store = await open_store(pg_dsn)
    try:
        assert isinstance(store, PostgresStore)
        await store.ping()
    finally:
        await store.close()
