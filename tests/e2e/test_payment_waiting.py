"""Waiting for a payment without polling: `?wait=` long-poll, server-sent events, and the
bound on waiters (issue 8 item 6). Real PostgreSQL and anvil."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest_asyncio

from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.domain.models import Payment
from payfirst.domain.statuses import PaymentStatus
from tests.e2e.harness import Harness

# A bound for answers that must come at once or on a change; waits are 60 s, so an answer
# held for the whole wait (the bug) fails the test instead of passing slowly.
PROMPT_S = 10.0


class CountingStore(PostgresStore):
    """The real store, counting payment reads (to tell waiting from polling)."""

    reads = 0

    async def get_payment(self, payment_id: UUID) -> Payment | None:
        CountingStore.reads += 1
        return await super().get_payment(payment_id)


@pytest_asyncio.fixture
async def waiting_app(harness: Harness) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    store = harness.store
    counting = CountingStore(store.pool, store.schema, store._dsn, store._server_settings)
    svc = Services(store=counting, chain=EvmChain(harness.rpc), chain_id=31337, max_waiters=2)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(svc)), base_url="http://127.0.0.1"
    ) as http:
        yield svc, http
    counting._closing = True  # close its own LISTEN connection; the pool is the harness's
    if counting._listener is not None:
        await counting._listener.close()


async def until(condition: Any, timeout_s: float = PROMPT_S) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (a condition of the app, not an event)
            await asyncio.sleep(0.01)


async def queued_payment(harness: Harness) -> UUID:
    """A payment that stays pending: the worker is stopped."""
    await harness.worker.stop()
    answer = await harness.buy(harness.payer(2))
    assert answer.status_code == 202
    return UUID(answer.json()["paymentQueueId"])


async def test_a_finished_payment_is_answered_at_once(
    harness: Harness, waiting_app: tuple[Services, httpx.AsyncClient]
) -> None:
    """Before: ?wait=30 on a completed payment answered after the whole 30 s."""
    _, http = waiting_app
    answer = await harness.buy(harness.payer(1))
    await harness.settled()
    payment_id = answer.json()["paymentQueueId"]
    async with asyncio.timeout(PROMPT_S):
        view = (await http.get(f"/api/payment/{payment_id}?wait=60")).json()
    assert view["status"] == "completed"
    assert {m["status"] for m in view["mints"]} == {"completed"}


async def test_a_waiter_sleeps_until_a_change_notice_wakes_it(
    harness: Harness, waiting_app: tuple[Services, httpx.AsyncClient]
) -> None:
    svc, http = waiting_app
    payment_id = await queued_payment(harness)
    CountingStore.reads = 0
    # Nothing changes: the answer comes at the deadline, after reads at arrival only.
    view = (await http.get(f"/api/payment/{payment_id}?wait=1")).json()
    assert view["status"] == "pending"
    assert CountingStore.reads == 2  # the first read and the one after registering
    waiting = asyncio.create_task(http.get(f"/api/payment/{payment_id}?wait=60"))
    await until(lambda: svc.waiters.count == 1)
    # Another process (here: the store directly) changes it: the waiter wakes at once.
    await harness.store.fail_payment(payment_id, PaymentStatus.FAILED, "test", only_from=None)
    async with asyncio.timeout(PROMPT_S):
        answer = await waiting
    assert answer.json()["status"] == "failed"
    assert svc.waiters.count == 0


async def test_waiters_are_bounded(
    harness: Harness, waiting_app: tuple[Services, httpx.AsyncClient]
) -> None:
    svc, http = waiting_app
    payment_id = await queued_payment(harness)
    held = [asyncio.create_task(http.get(f"/api/payment/{payment_id}?wait=60")) for _ in range(2)]
    await until(lambda: svc.waiters.count == 2)
    async with asyncio.timeout(PROMPT_S):
        over = await http.get(f"/api/payment/{payment_id}?wait=60")
    assert over.status_code == 200
    assert over.headers["Retry-After"] == "2"
    assert over.json()["status"] == "pending"
    streamed = await http.get(f"/api/payment/{payment_id}/events")
    assert streamed.status_code == 503
    await harness.store.fail_payment(payment_id, PaymentStatus.FAILED, "test")
    async with asyncio.timeout(PROMPT_S):
        answers = await asyncio.gather(*held)
    assert [a.json()["status"] for a in answers] == ["failed", "failed"]


async def test_server_sent_events_follow_a_payment_to_its_mints(
    harness: Harness, waiting_app: tuple[Services, httpx.AsyncClient]
) -> None:
    _, http = waiting_app
    payment_id = await queued_payment(harness)
    streaming = asyncio.create_task(http.get(f"/api/payment/{payment_id}/events"))
    await harness.worker.start()
    harness.worker.payment_queued.set()
    async with asyncio.timeout(60):
        answer = await streaming
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line.removeprefix("data: "))
        for line in answer.text.splitlines()
        if line.startswith("data: ")
    ]
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pending"
    assert statuses[-1] == "completed"
    assert {m["status"] for m in events[-1]["mints"]} == {"completed"}
    assert len(events) == len({json.dumps(e, sort_keys=True) for e in events})  # each a change
