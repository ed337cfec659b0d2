"""An in-process payfirst whose relayer is the network's treasury (so it runs the payout
loop, as the dev instance does), providers with API keys, and money collected for them by
real payments to the treasury settled on the shared anvil chain.

Which payments a provider is credited for is decided when they are accepted; the tests
make the treasury's payments a provider's with a test-only trigger (as
tests/e2e/test_ledger_check.py does): the money itself moves on chain, the ledger credits
it at completion exactly as for any collected payment."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest_asyncio

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.domain.accounts import Account, Role
from payfirst.domain.ledger import fee_of
from payfirst.pipeline.payouts import TRANSFER_TOPIC
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.relayer_loops import RelayerLoops
from payfirst.usecases.accounts import Accounts, IssuedKey
from tests.e2e.harness import (
    CONFIRMATION_INTERVAL_MS,
    SETTLE_PAY_TO,
    SETTLE_PRICE,
    Harness,
    check_invariants,
    request_v2,
    requirements_v2,
)
from tests.fixtures.chain import SharedChain, TrackedRpc
from tests.fixtures.store import execute_raw, fetch_raw, random_address

FEE_BPS = 250
#: A provider's credit for one payment of SETTLE_PRICE.
CREDIT = SETTLE_PRICE - fee_of(SETTLE_PRICE, FEE_BPS)
PAYOUT_INTERVAL_MS = 200
WAIT_S = 60.0


@dataclass
class Who:
    account: Account
    issued: IssuedKey

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issued.text}"}


@dataclass
class PayoutEnv:
    h: Harness
    treasury: str
    worker_rpc: RpcClient

    @property
    def store(self) -> PostgresStore:
        return self.h.store

    async def account(self, role: Role, name: str, **terms: Any) -> Who:
        account, issued = await Accounts(self.store).create_account(
            role, name, fee_bps=FEE_BPS if role is Role.PROVIDER else None, **terms
        )
        return Who(account, issued)

    async def provider(self, name: str = "provider") -> tuple[Who, str]:
        """A provider whose payouts go to a fresh address (returned)."""
        payee = random_address()
        return await self.account(Role.PROVIDER, name, payout_address=payee), payee

    async def collect(self, provider: UUID, payers: list[int]) -> None:
        """One payment of SETTLE_PRICE to the treasury from each payer (anvil key index),
        credited to `provider`, settled on chain and completed."""
        await execute_raw(self.store, collect_sql(self.treasury, provider))
        try:
            for index in payers:
                body = request_v2(
                    self.h.payer(index), requirements_v2(self.h, pay_to=self.treasury)
                )
                answer = (await self.h.http.post("/settle", json=body)).json()
                assert answer["success"] is True, answer
            await self.h.settled()
        finally:
            await execute_raw(self.store, UNCOLLECT)

    async def call(
        self, method: str, path: str, who: Who | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = who.headers if who else {}
        return await self.h.http.request(method, path, headers=headers, **kwargs)

    async def payout_status(self, payout_id: str) -> str:
        rows = await fetch_raw(
            self.store, "SELECT status FROM payouts WHERE id = $1", UUID(payout_id)
        )
        return str(rows[0]["status"])

    async def decided(self, payout_id: str, max_wait: float = WAIT_S) -> str:
        """Wait until the payout is completed or failed; its status."""
        await wait_for(
            lambda: self._final(payout_id), max_wait, f"payout {payout_id} to be decided"
        )
        return await self.payout_status(payout_id)

    async def _final(self, payout_id: str) -> bool:
        return await self.payout_status(payout_id) in ("completed", "failed")

    async def transfers_to(self, payee: str) -> list[dict[str, Any]]:
        """Every Transfer(treasury -> payee) log of the asset on chain."""
        logs: list[dict[str, Any]] = await self.h.rpc.call(
            "eth_getLogs",
            {
                "address": self.h.deployment.usdc,
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [TRANSFER_TOPIC, topic(self.treasury), topic(payee)],
            },
        )
        return logs


def topic(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


def collect_sql(treasury: str, provider: UUID) -> str:
    return f"""
CREATE FUNCTION test_collect_for_provider() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF lower(NEW.token_address) = '{treasury.lower()}' THEN
        NEW.provider_id := '{provider}';
        NEW.fee_bps := {FEE_BPS};
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER test_collect_for_provider BEFORE INSERT ON payment_queue
    FOR EACH ROW EXECUTE FUNCTION test_collect_for_provider();
"""


UNCOLLECT = """
DROP TRIGGER test_collect_for_provider ON payment_queue;
DROP FUNCTION test_collect_for_provider();
"""


async def wait_for(
    condition: Callable[[], Awaitable[bool]], max_wait: float, what: str, poll: float = 0.1
) -> None:
    deadline = time.monotonic() + max_wait
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {max_wait}s waiting for {what}")
        await asyncio.sleep(poll)


async def check_payout_invariants(store: PostgresStore, rpc: RpcClient, usdc: str) -> None:
    """Every completed payout has exactly one ledger transaction, and no other payout has
    one; no payout is paid twice on chain (its Transfer logs from its relayer to its payee
    of its amount number at most the completed payouts of that kind)."""
    misrecorded = await fetch_raw(
        store,
        "SELECT p.id, p.status, count(t.id) AS recorded FROM payouts p"
        " LEFT JOIN ledger_transactions t ON t.payout_id = p.id"
        " GROUP BY p.id, p.status"
        " HAVING count(t.id) <> CASE WHEN p.status = 'completed' THEN 1 ELSE 0 END",
    )
    assert misrecorded == [], f"payouts the ledger records wrongly: {misrecorded}"
    signed = await fetch_raw(
        store,
        "SELECT relayer, to_address, amount, count(*) FILTER (WHERE status = 'completed')"
        " AS completed, count(*) AS n FROM payouts WHERE relayer IS NOT NULL"
        " GROUP BY relayer, to_address, amount",
    )
    for row in signed:
        logs = await rpc.call(
            "eth_getLogs",
            {
                "address": usdc,
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [TRANSFER_TOPIC, topic(row["relayer"]), topic(row["to_address"])],
            },
        )
        paid = [entry for entry in logs if int(entry["data"], 16) == int(row["amount"])]
        assert len(paid) <= int(row["n"]), f"paid more often than signed: {row}"
        assert len(paid) >= int(row["completed"]), f"completed but not on chain: {row}"


@contextlib.asynccontextmanager
async def payout_stack(
    store: PostgresStore, shared_chain: SharedChain, *, worker_rpc_url: str | None = None
) -> AsyncIterator[PayoutEnv]:
    """The API and the treasury relayer's loops (its RPC through `worker_rpc_url` when
    given, e.g. a proxy that lies), on the test's schema and the shared chain."""
    chain, deployment = await shared_chain.checkout()
    await store.upsert_token(deployment.to_token())
    await store.set_setting("confirmation_interval_ms", CONFIRMATION_INTERVAL_MS)
    await store.set_setting("payout_interval_ms", PAYOUT_INTERVAL_MS)
    rpc = TrackedRpc(deployment.rpc_url)
    worker_rpc = RpcClient(worker_rpc_url or deployment.rpc_url, timeout=5)
    relayer = Relayer.from_key(ANVIL_KEYS[0], deployment.chain_id)
    treasury = relayer.address
    worker = RelayerLoops(
        store, EvmChain(worker_rpc), relayer, settler=deployment.settler, treasury=treasury
    )
    services = Services(
        store=store,
        chain=EvmChain(rpc),
        on_payment_queued=worker.payment_queued.set,
        chain_id=deployment.chain_id,
        signers=(treasury,),
        settle_timeout_s=20,
        settle_pay_to=SETTLE_PAY_TO | {treasury},
    )
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(services)), base_url="http://127.0.0.1"
    )
    try:
        await worker.start()
        yield PayoutEnv(Harness(chain, deployment, store, rpc, http, worker), treasury, worker_rpc)
        await worker.stop()
        await check_invariants(store, rpc)
        await check_payout_invariants(store, rpc, deployment.usdc)
    finally:
        await worker.stop()
        await http.aclose()
        await worker_rpc.aclose()
        await rpc.aclose()
        await shared_chain.checkin(rpc)


@pytest_asyncio.fixture
async def payout_env(
    pg_store: PostgresStore, shared_chain: SharedChain
) -> AsyncIterator[PayoutEnv]:
    async with payout_stack(pg_store, shared_chain) as env:
        yield env
