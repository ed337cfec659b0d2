"""The node goes away while the worker is sending, and comes back: nothing is lost, nothing
is duplicated, and the request path keeps answering 202 throughout (SPEC §2 rules 4, 5).

The worker runs in process with its RpcClient pointed at a TCP proxy in front of anvil.
The proxy is cut at the worst moments: right after anvil accepted the payments' broadcast
(the worker never hears the answer), and later right after anvil accepted a batchMint. In
between, while the node is unreachable, more payments are queued."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import pytest
import pytest_asyncio

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.evm import calls
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.relayer_loops import RelayerLoops
from tests.e2e.harness import Harness, assert_delivered_exactly_once
from tests.e2e.tcp_proxy import TcpProxy, stable_port
from tests.fixtures.chain import SharedChain, TrackedRpc
from tests.fixtures.store import fetch_raw

FAST_SETTINGS = {
    "payment_batch_interval_ms": 200,
    "confirmation_interval_ms": 200,
    "mint_interval_ms": 200,
}
BEFORE_OUTAGE = [(1, 1), (2, 2), (3, 3), (1, 2), (2, 3), (3, 1)]  # (payer index, quantity)
DURING_OUTAGE = [(4, 1), (5, 2), (6, 3), (4, 3), (5, 1), (6, 2)]
# The batchMint selector as it appears, hex-encoded, inside a raw transaction.
BATCH_MINT_MARKER = calls.batch_mint([], [])[2:10].encode()


@dataclass
class Outage:
    h: Harness
    proxy: TcpProxy
    batched: bool


@pytest_asyncio.fixture(params=["direct", "batched"])
async def outage(
    pg_store: PostgresStore, shared_chain: SharedChain, request: pytest.FixtureRequest
) -> AsyncIterator[Outage]:
    """Settlement one tx per payment, or batched through the dev chain's BatchSettler."""
    chain, deployment = await shared_chain.checkout()
    await pg_store.upsert_token(deployment.to_token())
    for name, value in FAST_SETTINGS.items():
        await pg_store.set_setting(name, value)
    anvil = urlsplit(deployment.rpc_url)
    assert anvil.hostname is not None and anvil.port is not None
    proxy = TcpProxy(anvil.hostname, anvil.port, stable_port())
    await proxy.start()
    rpc = TrackedRpc(deployment.rpc_url)  # the test's own view of the chain: never cut
    worker_rpc = RpcClient(proxy.url, timeout=5)
    settler = deployment.settler if request.param == "batched" else None
    if request.param == "batched":
        assert settler, "the dev chain deployed no BatchSettler"
    loops = RelayerLoops(
        pg_store,
        EvmChain(worker_rpc),
        Relayer.from_key(ANVIL_KEYS[0], deployment.chain_id),
        settler=settler,
    )
    # The API talks to the chain through the proxy too (only /health would use it).
    services = Services(
        store=pg_store, chain=EvmChain(worker_rpc), on_payment_queued=loops.payment_queued.set
    )
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(services)), base_url="http://127.0.0.1"
    )
    try:
        yield Outage(
            Harness(chain, deployment, pg_store, rpc, http, loops), proxy, settler is not None
        )
    finally:
        await loops.stop()
        await proxy.stop()
        await http.aclose()
        await worker_rpc.aclose()
        await rpc.aclose()
        await shared_chain.checkin(rpc)


async def statuses(h: Harness, ids: list[UUID]) -> set[str]:
    rows = await fetch_raw(
        h.store, "SELECT status FROM payment_queue WHERE id = ANY($1::uuid[])", ids
    )
    assert len(rows) == len(ids)
    return {r["status"] for r in rows}


async def buy_all(h: Harness, orders: list[tuple[int, int]]) -> list[UUID]:
    answers = await asyncio.gather(*(h.buy(h.payer(i), q) for i, q in orders))
    assert [a.status_code for a in answers] == [202] * len(orders), [a.text for a in answers]
    return [UUID(a.json()["paymentQueueId"]) for a in answers]


async def failed_again(h: Harness, times: int, max_wait: float = 15) -> None:
    """Waits until the worker's loops have failed `times` more times against the node."""
    target = h.worker.outage.failures + times
    deadline = time.monotonic() + max_wait
    while h.worker.outage.failures < target:
        assert time.monotonic() < deadline, "the worker never tried the dead node"
        await asyncio.sleep(0.05)


async def test_node_unreachable_while_sending_then_back(outage: Outage) -> None:
    h, proxy = outage.h, outage.proxy
    d = h.deployment
    orders = BEFORE_OUTAGE + DURING_OUTAGE
    payers = {i: h.payer(i) for i, _ in orders}
    usdc_before = {i: await h.usdc_balance(p.address) for i, p in payers.items()}
    token_usdc_before = await h.usdc_balance(d.token)
    relayer_nonce_before = await h.rpc.get_transaction_count(d.relayer_address, "latest")

    # Outage 1: anvil takes the payments' broadcast, its answer is lost, the node vanishes.
    # (Queued before the worker starts, so they go out in one batch.)
    first = await buy_all(h, BEFORE_OUTAGE)
    proxy.cut_on(b"eth_sendRawTransaction")
    await h.worker.start()
    await proxy.wait_cut(max_wait=15)
    assert not proxy.running
    first_rows = await fetch_raw(
        h.store, "SELECT tx_hash FROM payment_queue WHERE id = ANY($1::uuid[])", first
    )
    for row in first_rows:  # the node has them, the worker does not know it
        assert await h.rpc.get_transaction(row["tx_hash"]) is not None
    assert await statuses(h, first) == {"processing"}
    if outage.batched:
        assert len({row["tx_hash"] for row in first_rows}) < len(first), "not batched"

    # While the node is down, the API still answers 202 at once.
    started = time.monotonic()
    second = await buy_all(h, DURING_OUTAGE)
    assert time.monotonic() - started < 5, "the request path waited on the chain"
    await failed_again(h, 2)  # the loops fail against the dead node for a while
    assert not proxy.running
    assert await statuses(h, second) == {"pending"}
    assert await statuses(h, first) == {"processing"}

    # Back up; outage 2: anvil takes a batchMint, its answer is lost, the node vanishes.
    proxy.cut_on(BATCH_MINT_MARKER)
    await proxy.start()
    await proxy.wait_cut(max_wait=15)
    mint_rows = await fetch_raw(
        h.store, "SELECT DISTINCT tx_hash FROM mint_queue WHERE status = 'processing'"
    )
    assert mint_rows, "the cut batchMint left no processing mint items"
    for row in mint_rows:
        assert await h.rpc.get_transaction(row["tx_hash"]) is not None
    await failed_again(h, 2)
    await proxy.start()

    await h.settled(max_wait=30)
    await h.worker.stop()
    assert proxy.cuts == 2

    ids = first + second
    assert await statuses(h, ids) == {"completed"}
    await assert_delivered_exactly_once(
        h,
        {pid: (payers[i], q) for pid, (i, q) in zip(ids, orders, strict=True)},
        {payers[i].address: before for i, before in usdc_before.items()},
        token_usdc_before,
        relayer_nonce_before,
    )
