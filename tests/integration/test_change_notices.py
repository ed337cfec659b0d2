"""Payment change notices: what wakes long-polls, event streams and /settle without polling
(issue 8 item 6). Both adapters; PostgreSQL across stores (as across processes) and across
a lost LISTEN connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import UUID

import asyncpg

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.models import NewPayment, Token
from payfirst.domain.statuses import PaymentStatus
from payfirst.ports.store import Store


class Heard:
    """The ids a watcher was told of, with a way to wait for one."""

    def __init__(self) -> None:
        self.ids: list[UUID | None] = []
        self._changed = asyncio.Event()

    def __call__(self, payment_id: UUID | None) -> None:
        self.ids.append(payment_id)
        self._changed.set()

    async def wait_for(self, payment_id: UUID | None, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while payment_id not in self.ids:
                self._changed.clear()
                await self._changed.wait()


async def test_a_status_change_is_heard_with_its_payment_id(
    store: Store,
    make_token: Callable[..., Token],
    make_payment: Callable[..., NewPayment],
) -> None:
    token = make_token()
    await store.upsert_token(token)
    heard = Heard()
    await store.watch_payment_changes(heard)
    payment = make_payment(token)
    await store.queue_payment(payment)
    assert await store.fail_payment(payment.id, PaymentStatus.FAILED, "test")
    await heard.wait_for(payment.id)


async def test_postgres_tells_other_stores_and_recovers_a_lost_listener(
    pg_store: PostgresStore,
    pg_dsn: str,
    make_token: Callable[..., Token],
    make_payment: Callable[..., NewPayment],
) -> None:
    token = make_token()
    await pg_store.upsert_token(token)
    other = await PostgresStore.connect(pg_dsn, schema=pg_store.schema, migrate=False)
    try:
        heard = Heard()
        await other.watch_payment_changes(heard)
        first = make_payment(token)
        await pg_store.queue_payment(first)
        await pg_store.fail_payment(first.id, PaymentStatus.FAILED, "test")
        await heard.wait_for(first.id)
        # A database restart, as the listener sees it: its backend is terminated.
        admin = await asyncpg.connect(pg_dsn)
        try:
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid() "
                "AND pid = ANY($1::int[])",
                [other._listener.get_server_pid()] if other._listener else [],
            )
        finally:
            await admin.close()
        assert terminated == 1
        # Everyone is told to re-read (notices sent meanwhile are lost), then it listens again.
        await heard.wait_for(None)
        second = make_payment(token)
        await pg_store.queue_payment(second)
        await pg_store.fail_payment(second.id, PaymentStatus.FAILED, "test")
        await heard.wait_for(second.id)
    finally:
        await other.close()
