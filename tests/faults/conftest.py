"""The fault suite's environment: the shared anvil dev chain, the test's PostgreSQL schema, the
API in process, and in-process workers whose RPC goes wherever the case needs (straight to
anvil, through a proxy that lies or that goes down)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

import httpx
import pytest_asyncio

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.relayer_loops import RelayerLoops
from tests.e2e.harness import Harness
from tests.fixtures.chain import SharedChain, TrackedRpc

FAST_SETTINGS = {
    "payment_batch_interval_ms": 200,
    "confirmation_interval_ms": 200,
    "mint_interval_ms": 200,
}
# Every fault case is bounded: waits on conditions end with a failure after this long.
SETTLE_WAIT_S = 90.0


@dataclass
class FaultEnv:
    chain: DevChain
    deployment: Deployment
    store: PostgresStore
    rpc: RpcClient  # the test's own view of the chain (never faulted)
    http: httpx.AsyncClient
    workers: list[RelayerLoops] = field(default_factory=list)
    clients: list[RpcClient] = field(default_factory=list)
    _wake: list[Callable[[], None]] = field(default_factory=list)

    async def start_worker(
        self, rpc_url: str | None = None, *, batched: bool = True
    ) -> RelayerLoops:
        client = RpcClient(rpc_url or self.deployment.rpc_url, timeout=5)
        self.clients.append(client)
        worker = RelayerLoops(
            self.store,
            EvmChain(client),
            Relayer.from_key(ANVIL_KEYS[0], self.deployment.chain_id),
            settler=self.deployment.settler if batched else None,
        )
        self.workers.append(worker)
        self._wake.append(worker.payment_queued.set)
        await worker.start()
        return worker

    @property
    def harness(self) -> Harness:
        worker = self.workers[0] if self.workers else None
        return Harness(self.chain, self.deployment, self.store, self.rpc, self.http, worker)  # type: ignore[arg-type]

    def wake(self) -> None:
        for wake in self._wake:
            wake()

    async def buy_wave(self, orders: list[tuple[int, int]]) -> list[UUID]:
        """Concurrent purchases (payer index, quantity); each must be accepted (202)."""
        h = self.harness
        answers = await asyncio.gather(*(h.buy(h.payer(i), q) for i, q in orders))
        assert [a.status_code for a in answers] == [202] * len(orders), [a.text for a in answers]
        self.wake()
        return [UUID(a.json()["paymentQueueId"]) for a in answers]

    async def settled(self, max_wait: float = SETTLE_WAIT_S) -> None:
        await self.harness.settled(max_wait=max_wait)


async def wait_for(
    condition: Callable[[], Awaitable[bool]], max_wait: float, what: str, poll: float = 0.1
) -> None:
    deadline = time.monotonic() + max_wait
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {max_wait}s waiting for {what}")
        await asyncio.sleep(poll)


@pytest_asyncio.fixture
async def fault_env(pg_store: PostgresStore, shared_chain: SharedChain) -> AsyncIterator[FaultEnv]:
    chain, deployment = await shared_chain.checkout()
    await pg_store.upsert_token(deployment.to_token())
    for name, value in FAST_SETTINGS.items():
        await pg_store.set_setting(name, value)
    rpc = TrackedRpc(deployment.rpc_url)
    env_box: list[FaultEnv] = []
    services = Services(
        store=pg_store,
        chain=EvmChain(rpc),
        on_payment_queued=lambda: env_box[0].wake() if env_box else None,
        chain_id=deployment.chain_id,
    )
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(services)), base_url="http://127.0.0.1"
    )
    env = FaultEnv(chain, deployment, pg_store, rpc, http)
    env_box.append(env)
    try:
        yield env
    finally:
        for worker in env.workers:
            with contextlib.suppress(Exception):
                await worker.stop()
        for client in env.clients:
            await client.aclose()
        await http.aclose()
        await rpc.aclose()
        await shared_chain.checkin(rpc)
