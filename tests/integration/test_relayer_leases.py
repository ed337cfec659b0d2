"""Relayer leases and new-payment wake-ups, on both adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.models import NewPayment, Token
from payfirst.ports.store import Store
from tests.fixtures.store import random_address

#: The chain of the tokens `make_token` builds, so of their payments.
CHAIN = 31337

ALICE, BOB = "worker-alice", "worker-bob"


async def test_a_lease_has_one_holder_until_it_expires(store: Store) -> None:
    relayer = random_address()
    assert await store.acquire_relayer_lease(relayer, ALICE, 30, chain_id=CHAIN)
    assert not await store.acquire_relayer_lease(relayer, BOB, 30, chain_id=CHAIN)
    assert await store.acquire_relayer_lease(relayer, ALICE, 0.2, chain_id=CHAIN)  # renewal
    assert not await store.acquire_relayer_lease(relayer, BOB, 30, chain_id=CHAIN)
    await asyncio.sleep(0.3)
    assert await store.acquire_relayer_lease(relayer, BOB, 30, chain_id=CHAIN)  # taken over
    assert not await store.acquire_relayer_lease(relayer, ALICE, 30, chain_id=CHAIN)


async def test_release_frees_the_key_only_for_its_holder(store: Store) -> None:
    relayer = random_address()
    assert await store.acquire_relayer_lease(relayer, ALICE, 30, chain_id=CHAIN)
    await store.release_relayer_lease(relayer, BOB, chain_id=CHAIN)  # not BOB's: no effect
    assert not await store.acquire_relayer_lease(relayer, BOB, 30, chain_id=CHAIN)
    await store.release_relayer_lease(relayer, ALICE, chain_id=CHAIN)
    assert await store.acquire_relayer_lease(relayer, BOB, 30, chain_id=CHAIN)


async def test_leases_of_different_keys_are_independent(store: Store) -> None:
    one, two = random_address(), random_address()
    assert await store.acquire_relayer_lease(one, ALICE, 30, chain_id=CHAIN)
    assert await store.acquire_relayer_lease(two, BOB, 30, chain_id=CHAIN)


async def test_watchers_hear_of_new_payments(
    store: Store,
    make_token: Callable[..., Token],
    make_payment: Callable[..., NewPayment],
) -> None:
    token = make_token()
    await store.upsert_token(token)
    heard = asyncio.Event()
    await store.watch_new_payments(heard.set)
    await store.queue_payment(make_payment(token))
    await asyncio.wait_for(heard.wait(), 5)


async def test_postgres_wakes_watchers_of_other_processes(
    pg_store: PostgresStore,
    pg_dsn: str,
    make_token: Callable[..., Token],
    make_payment: Callable[..., NewPayment],
) -> None:
    """Another store on the same database (as another process would have) is told."""
    token = make_token()
    await pg_store.upsert_token(token)
    other = await PostgresStore.connect(pg_dsn, schema=pg_store.schema, migrate=False)
    try:
        heard = asyncio.Event()
        await other.watch_new_payments(heard.set)
        await pg_store.queue_payment(make_payment(token))
        await asyncio.wait_for(heard.wait(), 5)
    finally:
        await other.close()
