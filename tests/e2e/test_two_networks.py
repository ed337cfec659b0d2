"""Two networks served by one payfirst instance: two anvil chains (A: anvil's 31337, the
legacy PAYFIRST_RPC_URL chain; B: a chain run as Base Sepolia, from a networks file), one
store, one API, one worker per network, wired by the composition root (app.open_networks).

Both chains deploy the same contracts from the same account, so DemoUSDC has the SAME
address on both: only the routing by network can tell the chains apart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio

from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import NetworkRuntime, build_app, open_networks
from payfirst.client.signing import Payer
from payfirst.config import Config
from payfirst.domain.errors import ConfigError
from payfirst.domain.statuses import MintStatus, PaymentStatus
from payfirst.pipeline.worker import Worker
from payfirst.x402 import PaymentRequiredV2, PaymentRequirementsV2, decode_header
from tests.e2e.harness import SELLER, erc20_balance, request_v2

CHAIN_A = 31337
CHAIN_B = 84532  # run as Base Sepolia: a known network, configured by the networks file
RELAYER_A = ANVIL_KEYS[0]
RELAYER_B = ANVIL_KEYS[8]
PAYER = Payer(ANVIL_KEYS[1])
AMOUNT = 25_000
WAIT_S = 30.0


@dataclass
class TwoNetworks:
    a: Deployment
    b: Deployment
    store: PostgresStore
    networks: list[NetworkRuntime]
    http: httpx.AsyncClient

    def network(self, chain_id: int) -> NetworkRuntime:
        return next(n for n in self.networks if n.chain_id == chain_id)


def _networks_file(tmp_path: Path, b: Deployment) -> Path:
    key_file = tmp_path / "relayer-b.keys"
    key_file.write_text(RELAYER_B + "\n")
    path = tmp_path / "networks.toml"
    path.write_text(
        f"""
[[network]]
id = "base-sepolia"
rpc_urls = ["{b.rpc_url}"]
relayer_key_file = "{key_file}"
confirmation_depth = 1
settler_address = "{b.settler}"

[[network.asset]]
address = "{b.usdc}"
name = "{b.usdc_name}"
version = "{b.usdc_version}"
decimals = 6
"""
    )
    return path


@pytest_asyncio.fixture
async def two(pg_store: PostgresStore, pg_dsn: str, tmp_path: Path) -> AsyncIterator[TwoNetworks]:
    chain_a, chain_b = DevChain(), DevChain()
    # Its own store object on the test schema: adopting the default network changes the
    # store object, and the session's is shared with other tests.
    store = await PostgresStore.connect(pg_dsn, schema=pg_store.schema, migrate=False)
    workers: list[Worker] = []
    networks: list[NetworkRuntime] = []
    try:
        a, b = await asyncio.gather(chain_a.start(), chain_b.start(chain_id=CHAIN_B))
        await store.upsert_token(a.to_token())
        await store.set_setting("confirmation_interval_ms", 200)
        config = Config(
            rpc_url=a.rpc_url,
            relayer_keys=(RELAYER_A,),
            networks_file=_networks_file(tmp_path, b),
        )
        networks = await open_networks(config, store, a.rpc_url, a)
        workers = [n.worker(store) for n in networks]

        def wake() -> None:
            for worker in workers:
                worker.wake()

        services = Services(
            store=store,
            chain=networks[0].chain,
            networks=tuple(n.served() for n in networks),
            on_payment_queued=wake,
            settle_timeout_s=WAIT_S,
            settle_pay_to=frozenset({SELLER}),
        )
        for worker in workers:
            await worker.start()
        transport = httpx.ASGITransport(app=build_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield TwoNetworks(a, b, store, networks, http)
    finally:
        for worker in workers:
            await worker.stop()
        for network in networks:
            await network.rpc.aclose()
        await store.close()
        await asyncio.gather(chain_a.stop(), chain_b.stop())


def _requirements(usdc: str, network: str) -> PaymentRequirementsV2:
    return PaymentRequirementsV2(
        scheme="exact",
        network=network,
        amount=str(AMOUNT),
        asset=usdc,
        pay_to=SELLER,
        max_timeout_seconds=120,
        extra={"name": "USDC", "version": "2"},
    )


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _buy_mint(two: TwoNetworks) -> UUID:
    token = two.a.token
    offer = await two.http.post(f"/api/mint/{token}", json={"quantity": 1})
    assert offer.status_code == 402, offer.text
    required = PaymentRequiredV2.model_validate(decode_header(offer.headers["PAYMENT-REQUIRED"]))
    assert required.accepts[0].network == f"eip155:{CHAIN_A}"
    header = PAYER.pay_v2(required.accepts[0], required.resource)
    answer = await two.http.post(
        f"/api/mint/{token}", json={"quantity": 1}, headers={"PAYMENT-SIGNATURE": header}
    )
    assert answer.status_code == 202, answer.text
    return UUID(answer.json()["paymentQueueId"])


async def test_supported_lists_every_served_network(two: TwoNetworks) -> None:
    body = (await two.http.get("/supported")).json()
    kinds = {(k["x402Version"], k["network"]) for k in body["kinds"]}
    assert kinds == {
        (2, f"eip155:{CHAIN_A}"),
        (1, f"eip155:{CHAIN_A}"),  # anvil has no v1 name
        (2, f"eip155:{CHAIN_B}"),
        (1, "base-sepolia"),
    }
    assert all(k["scheme"] == "exact" for k in body["kinds"])
    assert sorted(body["signers"]["eip155:*"]) == sorted(
        {Payer(RELAYER_A).address, Payer(RELAYER_B).address}
    )
    health = (await two.http.get("/health")).json()
    assert {name: report["chainId"] for name, report in health["networks"].items()} == {
        f"eip155:{CHAIN_A}": CHAIN_A,
        f"eip155:{CHAIN_B}": CHAIN_B,
    }


async def test_each_payment_settles_on_its_own_network(two: TwoNetworks) -> None:
    rpc_a, rpc_b = two.network(CHAIN_A).rpc, two.network(CHAIN_B).rpc
    relayer_a, relayer_b = Payer(RELAYER_A).address, Payer(RELAYER_B).address
    assert two.a.usdc == two.b.usdc  # same address on both chains
    seller_a = await erc20_balance(rpc_a, two.a.usdc, SELLER)
    seller_b = await erc20_balance(rpc_b, two.b.usdc, SELLER)
    nonces_before = {
        (chain, relayer): await rpc.get_transaction_count(relayer, "latest")
        for chain, rpc in ((CHAIN_A, rpc_a), (CHAIN_B, rpc_b))
        for relayer in (relayer_a, relayer_b)
    }

    # A facilitator settlement on B, named by its x402 v1 name.
    body = request_v2(PAYER, _requirements(two.b.usdc, "base-sepolia"))
    answer = (await two.http.post("/settle", json=body)).json()
    assert answer["success"], answer
    receipt = await rpc_b.get_transaction_receipt(answer["transaction"])
    assert receipt is not None and int(receipt["status"], 16) == 1
    assert receipt["from"].lower() == relayer_b.lower()  # B's relayer
    assert await rpc_a.get_transaction_receipt(answer["transaction"]) is None
    assert await erc20_balance(rpc_b, two.b.usdc, SELLER) == seller_b + AMOUNT
    assert await erc20_balance(rpc_a, two.a.usdc, SELLER) == seller_a

    # A mint of A's token settles (and mints) on A.
    payment_id = await _buy_mint(two)

    async def minted() -> bool:
        payment = await two.store.get_payment(payment_id)
        items = await two.store.get_mint_items(payment_id)
        return (
            payment is not None
            and payment.status is PaymentStatus.COMPLETED
            and bool(items)
            and all(i.status is MintStatus.COMPLETED for i in items)
        )

    await _until(minted, "the mint on chain A")
    payment = await two.store.get_payment(payment_id)
    assert payment is not None and payment.chain_id == CHAIN_A and payment.tx_hash
    mint_receipt = await rpc_a.get_transaction_receipt(payment.tx_hash)
    assert mint_receipt is not None and mint_receipt["from"].lower() == relayer_a.lower()
    assert await rpc_b.get_transaction_receipt(payment.tx_hash) is None

    # Each relayer's nonce moved on its own chain only, and the store tracks each per chain.
    nonces_after = {
        (chain, relayer): await rpc.get_transaction_count(relayer, "latest")
        for chain, rpc in ((CHAIN_A, rpc_a), (CHAIN_B, rpc_b))
        for relayer in (relayer_a, relayer_b)
    }
    assert nonces_after[(CHAIN_A, relayer_a)] == nonces_before[(CHAIN_A, relayer_a)] + 2
    assert nonces_after[(CHAIN_B, relayer_b)] == nonces_before[(CHAIN_B, relayer_b)] + 1
    assert nonces_after[(CHAIN_A, relayer_b)] == nonces_before[(CHAIN_A, relayer_b)]
    assert nonces_after[(CHAIN_B, relayer_a)] == nonces_before[(CHAIN_B, relayer_a)]
    assert (
        await two.store.get_relayer_nonce(relayer_a, chain_id=CHAIN_A)
        == (nonces_after[(CHAIN_A, relayer_a)])
    )
    assert (
        await two.store.get_relayer_nonce(relayer_b, chain_id=CHAIN_B)
        == (nonces_after[(CHAIN_B, relayer_b)])
    )
    assert await two.store.get_relayer_nonce(relayer_b, chain_id=CHAIN_A) is None


@pytest.mark.parametrize(
    ("network", "asset_of"),
    [
        ("eip155:8453", lambda d: d.usdc),  # Base: known, but not configured here
        ("eip155:84532", lambda d: "0x" + "ab" * 20),  # served, but not its asset
    ],
)
async def test_a_network_or_asset_not_served_is_refused(
    two: TwoNetworks, network: str, asset_of: Callable[[Deployment], str]
) -> None:
    body: dict[str, Any] = request_v2(PAYER, _requirements(asset_of(two.b), network))
    answer = (await two.http.post("/verify", json=body)).json()
    assert answer["isValid"] is False
    expected = "invalid_network" if network == "eip155:8453" else "invalid_payment_requirements"
    assert answer["invalidReason"] == expected, answer


async def test_start_up_refuses_a_network_whose_rpc_is_another_chain(
    two: TwoNetworks, tmp_path: Path
) -> None:
    key_file = tmp_path / "relayer.keys"
    key_file.write_text(RELAYER_B + "\n")
    wrong = tmp_path / "wrong.toml"
    # Base, but its RPC URL is chain A's.
    wrong.write_text(
        f'[[network]]\nid = "base"\nrpc_urls = ["{two.a.rpc_url}"]\n'
        f'relayer_key_file = "{key_file}"\n'
    )
    with pytest.raises(ConfigError, match=r"eip155:8453: the RPC at .* serves another chain"):
        await open_networks(Config(networks_file=wrong), two.store, None, None)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no network is served"):
        await open_networks(Config(networks_file=empty), two.store, None, None)
