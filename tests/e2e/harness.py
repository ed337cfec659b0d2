"""An in-process payfirst (API + worker) on real PostgreSQL and the shared anvil chain, and the
SPEC §2 invariants, checked against the database and the chain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest_asyncio
from eth_utils.crypto import keccak

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.client.signing import Payer
from payfirst.domain.statuses import MintStatus, PaymentStatus
from payfirst.evm import abi, calls
from payfirst.pipeline.mint_ids import mint_ids
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.relayer_loops import RelayerLoops
from payfirst.ports.store import Store
from payfirst.x402 import (
    PaymentPayloadV2,
    PaymentRequiredV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    decode_header,
    wire,
)
from tests.fixtures.chain import SharedChain, TrackedRpc
from tests.fixtures.store import fetch_raw

MINTED_TOPIC = "0x" + keccak(text="Minted(bytes32,address,uint256)").hex()
AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()

# The pay-to addresses the test facilitator settles for (PAYFIRST_SETTLE_PAY_TO).
SELLER = "0x000000000000000000000000000000000000bEEF"
SHOP = "0x5000000000000000000000000000000000000005"
SETTLE_PAY_TO = frozenset({SELLER, SHOP})
SETTLE_PRICE = 25_000  # 0.025 USDC
CONFIRMATION_INTERVAL_MS = 200


def requirements_v2(
    h: Harness, amount: int = SETTLE_PRICE, *, pay_to: str = SELLER
) -> PaymentRequirementsV2:
    """What a resource server selling for `amount` to `pay_to` asks for (v2)."""
    return PaymentRequirementsV2(
        scheme="exact",
        network="eip155:31337",
        amount=str(amount),
        asset=h.deployment.usdc,
        pay_to=pay_to,
        max_timeout_seconds=120,
        extra={"name": "USDC", "version": "2"},
    )


def request_v2(payer: Payer, requirements: PaymentRequirementsV2) -> dict[str, Any]:
    """A /verify or /settle body: `payer`'s signed payment for `requirements`."""
    payload = PaymentPayloadV2(accepted=requirements, payload=payer.authorize(requirements))
    return {
        "x402Version": 2,
        "paymentPayload": wire(payload),
        "paymentRequirements": wire(requirements),
    }


@dataclass
class Harness:
    chain: DevChain
    deployment: Deployment
    store: PostgresStore
    rpc: RpcClient
    http: httpx.AsyncClient
    worker: RelayerLoops

    def payer(self, index: int) -> Payer:
        return Payer(ANVIL_KEYS[index])

    async def payment_header(
        self, payer: Payer, quantity: int = 1, *, version: int = 2, token: str | None = None
    ) -> tuple[str, str]:
        """Ask for the requirements (402) and sign them, as a client would."""
        token = token or self.deployment.token
        answer = await self.http.post(f"/api/mint/{token}", json={"quantity": quantity})
        assert answer.status_code == 402, answer.text
        if version == 1:
            req1 = PaymentRequirementsV1.model_validate(answer.json()["accepts"][0])
            return "X-PAYMENT", payer.pay_v1(req1)
        required = PaymentRequiredV2.model_validate(
            decode_header(answer.headers["PAYMENT-REQUIRED"])
        )
        return "PAYMENT-SIGNATURE", payer.pay_v2(required.accepts[0], required.resource)

    async def buy(
        self, payer: Payer, quantity: int = 1, *, version: int = 2, token: str | None = None
    ) -> httpx.Response:
        token = token or self.deployment.token
        header = await self.payment_header(payer, quantity, version=version, token=token)
        return await self.http.post(
            f"/api/mint/{token}", json={"quantity": quantity}, headers=[header]
        )

    async def settled(self, max_wait: float = 30.0) -> None:
        """Wait until every payment and mint item is in a terminal state."""
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            try:
                open_items = await fetch_raw(
                    self.store,
                    "SELECT (SELECT count(*) FROM payment_queue WHERE status NOT IN "
                    "('completed','failed','confirmation_failed')) + (SELECT count(*) FROM "
                    "mint_queue WHERE status NOT IN ('completed','failed')) AS n",
                )
            except (
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
                OSError,
            ):
                # A pooled connection the fault suite's database restart cut: ask again.
                await asyncio.sleep(0.1)
                continue
            if open_items[0]["n"] == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"not settled after {max_wait}s: {await self.store.payment_stats()}")

    async def usdc_balance(self, address: str) -> int:
        return await erc20_balance(self.rpc, self.deployment.usdc, address)

    async def token_balance(self, address: str) -> int:
        return await erc20_balance(self.rpc, self.deployment.token, address)


async def erc20_balance(rpc: RpcClient, token: str, address: str) -> int:
    raw = await rpc.eth_call(token, calls.balance_of(address))
    return int(abi.decode_result(["uint256"], raw)[0])


async def check_invariants(store: Store, rpc: RpcClient) -> None:
    """SPEC §2 rules 1-3 and supply accounting, by the database and by the chain."""
    unpaid = await fetch_raw(
        store,
        "SELECT m.mint_id, p.status FROM mint_queue m JOIN payment_queue p ON p.id = m.payment_id"
        " WHERE p.status <> 'completed'",
    )
    assert unpaid == [], f"mint items of payments not completed: {unpaid}"
    twice = await fetch_raw(
        store, "SELECT mint_id FROM mint_queue GROUP BY mint_id HAVING count(*) > 1"
    )
    assert twice == [], f"mint ids queued twice: {twice}"
    queued_twice = await fetch_raw(
        store,
        "SELECT payer, auth_nonce FROM payment_queue GROUP BY payer, auth_nonce HAVING count(*) > 1",
    )
    assert queued_twice == [], f"authorizations queued twice: {queued_twice}"
    # The ledger records a payment once, in the transaction that completes it: never a
    # payment not completed (nothing credited before confirmation), never one twice.
    misrecorded = await fetch_raw(
        store,
        "SELECT p.id, p.status, count(t.id) AS recorded FROM payment_queue p"
        " LEFT JOIN ledger_transactions t ON t.payment_id = p.id AND t.kind = 'payment'"
        " GROUP BY p.id, p.status"
        " HAVING count(t.id) <> CASE WHEN p.status = 'completed' THEN 1 ELSE 0 END",
    )
    assert misrecorded == [], f"payments the ledger records wrongly: {misrecorded}"
    reserved = await fetch_raw(
        store,
        "SELECT t.address, t.reserved_count, coalesce(sum(p.quantity), 0) AS held"
        " FROM tokens t LEFT JOIN payment_queue p ON p.token_address = t.address"
        " AND p.status NOT IN ('failed', 'confirmation_failed')"
        " GROUP BY t.address, t.reserved_count",
    )
    for row in reserved:
        assert row["reserved_count"] == row["held"], f"supply accounting off: {row}"
    tokens = await fetch_raw(store, "SELECT DISTINCT token_address FROM mint_queue")
    for row in tokens:
        logs = await rpc.call(
            "eth_getLogs",
            {
                "address": row["token_address"],
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [MINTED_TOPIC],
            },
        )
        minted = [log["topics"][1] for log in logs]
        assert len(minted) == len(set(minted)), "a mint id was minted twice on chain"
        completed = await fetch_raw(
            store,
            "SELECT mint_id FROM mint_queue WHERE status = 'completed' AND token_address = $1",
            row["token_address"],
        )
        assert {r["mint_id"] for r in completed} <= set(minted), "completed mint not on chain"
        all_ids = await fetch_raw(
            store, "SELECT mint_id FROM mint_queue WHERE token_address = $1", row["token_address"]
        )
        assert set(minted) <= {r["mint_id"] for r in all_ids}, "minted on chain, unknown to DB"
    completed_payments = await fetch_raw(
        store,
        "SELECT payer, auth_nonce, payment_asset FROM payment_queue WHERE status = 'completed'",
    )
    for p in completed_payments:
        used = await rpc.call(
            "eth_getLogs",
            {
                "address": p["payment_asset"],
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [
                    AUTHORIZATION_USED_TOPIC,
                    "0x" + p["payer"][2:].lower().rjust(64, "0"),
                    p["auth_nonce"],
                ],
            },
        )
        assert len(used) == 1, f"completed payment not settled on chain: {p}"


@pytest_asyncio.fixture
async def harness(pg_store: PostgresStore, shared_chain: SharedChain) -> AsyncIterator[Harness]:
    chain, deployment = await shared_chain.checkout()
    await pg_store.upsert_token(deployment.to_token())
    # A receipt counts once a block is built on it (every 0.5 s on the dev chain): check for
    # that often, not every 2 s (the default), or each payment takes seconds more.
    await pg_store.set_setting("confirmation_interval_ms", CONFIRMATION_INTERVAL_MS)
    rpc = TrackedRpc(deployment.rpc_url)
    # Batched settlement through the dev chain's BatchSettler (setting payment_tx_batching).
    worker = RelayerLoops(
        pg_store,
        EvmChain(rpc),
        Relayer.from_key(ANVIL_KEYS[0], deployment.chain_id),
        settler=deployment.settler,
        # The relayer is the treasury (below), as on the dev instance: it runs the payouts.
        treasury=Relayer.from_key(ANVIL_KEYS[0], deployment.chain_id).address,
    )
    services = Services(
        store=pg_store,
        chain=EvmChain(rpc),
        on_payment_queued=worker.payment_queued.set,
        chain_id=deployment.chain_id,
        signers=(worker.broadcaster.relayer.address,),
        settle_timeout_s=20,
        settle_pay_to=SETTLE_PAY_TO,
        # The platform's treasury, as on the dev instance: the relayer's address. Paid
        # endpoints default their payTo to it (the platform collects for the provider).
        treasury_address=worker.broadcaster.relayer.address,
    )
    transport = httpx.ASGITransport(app=build_app(services))
    http = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")
    try:
        await worker.start()
        yield Harness(chain, deployment, pg_store, rpc, http, worker)
        await worker.stop()
        await check_invariants(pg_store, rpc)
    finally:
        await worker.stop()
        await http.aclose()
        await rpc.aclose()
        await shared_chain.checkin(rpc)


def row_count(rows: list[dict[str, Any]]) -> int:
    return int(rows[0]["n"])


async def assert_delivered_exactly_once(
    h: Harness,
    orders: dict[UUID, tuple[Payer, int]],
    usdc_before: dict[str, int],
    token_usdc_before: int,
    relayer_nonce_before: int,
) -> None:
    """Every ordered payment is completed with exactly its mint items, each minted once on
    chain; each payer was debited once and holds what it bought; the token contract got
    the sum; every tx the relayer got mined is one the database records (nothing was
    signed twice: re-sending the same bytes does not consume a nonce); the invariants."""
    d = h.deployment
    expected_ids: set[str] = set()
    bought: dict[str, int] = {}
    for payment_id, (payer, quantity) in orders.items():
        payment = await h.store.get_payment(payment_id)
        assert payment is not None and payment.status is PaymentStatus.COMPLETED, payment
        ids = mint_ids(payer.address, payment_id, quantity)
        items = await h.store.get_mint_items(payment_id)
        assert sorted(m.mint_id for m in items) == sorted(ids)
        assert {m.status for m in items} == {MintStatus.COMPLETED}
        expected_ids.update(ids)
        bought[payer.address] = bought.get(payer.address, 0) + quantity
    logs = await h.rpc.call(
        "eth_getLogs",
        {"address": d.token, "fromBlock": "0x0", "toBlock": "latest", "topics": [MINTED_TOPIC]},
    )
    minted = [entry["topics"][1] for entry in logs]
    assert len(minted) == len(set(minted)), "a mint id was minted twice"
    assert set(minted) == expected_ids
    for address, quantity in bought.items():
        debited = usdc_before[address] - await h.usdc_balance(address)
        assert debited == quantity * d.price_per_mint, f"{address} debited {debited}"
        assert await h.token_balance(address) == quantity * d.mint_amount
    total = sum(bought.values())
    assert await h.usdc_balance(d.token) - token_usdc_before == total * d.price_per_mint
    relayer_nonce_after = await h.rpc.get_transaction_count(d.relayer_address, "latest")
    known = await fetch_raw(
        h.store,
        "SELECT (SELECT count(DISTINCT tx_hash) FROM payment_queue)"
        " + (SELECT count(DISTINCT tx_hash) FROM mint_queue) AS n",
    )
    assert relayer_nonce_after - relayer_nonce_before == int(known[0]["n"])
    await check_invariants(h.store, h.rpc)
