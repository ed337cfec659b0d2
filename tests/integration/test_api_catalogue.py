"""The server skeleton over real PostgreSQL and a real anvil chain: health, the token
catalogue, the 402 answer of the mint endpoint, and the OpenAPI description."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import Deployment
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.x402 import PaymentRequiredV2, decode_header


@pytest.fixture
async def client(pg_store: PostgresStore, devchain: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    await pg_store.upsert_token(devchain.to_token())
    async with RpcClient(devchain.rpc_url) as chain:
        app = build_app(Services(store=pg_store, chain=EvmChain(chain)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def test_health_reports_database_and_chain(client: httpx.AsyncClient) -> None:
    answer = await client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["chain"]["chainId"] == 31337


async def test_health_degrades_when_the_chain_is_down(pg_store: PostgresStore) -> None:
    async with RpcClient("http://127.0.0.1:9", timeout=0.5) as dead:
        app = build_app(Services(store=pg_store, chain=EvmChain(dead)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            answer = await http.get("/health")
    assert answer.status_code == 503
    assert answer.json()["chain"].startswith("error")


async def test_tokens_list_and_detail(client: httpx.AsyncClient, devchain: Deployment) -> None:
    listed = (await client.get("/api/tokens")).json()["tokens"]
    assert [t["address"] for t in listed] == [devchain.token]
    detail = (await client.get(f"/api/tokens/{devchain.token.lower()}")).json()
    assert detail == listed[0]
    assert detail["pricePerMint"] == str(devchain.price_per_mint)
    assert detail["mintAmount"] == str(devchain.mint_amount)
    assert detail["maxMintCount"] == devchain.max_mint_count
    assert detail["remaining"] == devchain.max_mint_count
    assert detail["network"] == "eip155:31337"
    assert detail["chainId"] == 31337
    assert detail["paymentAsset"] == {
        "address": devchain.usdc,
        "name": "USDC",
        "version": "2",
        "decimals": 6,
    }


async def test_unknown_and_malformed_token(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/api/tokens/0x000000000000000000000000000000000000dEaD")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_token"
    malformed = await client.get("/api/tokens/0x1234")
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "invalid_token_address"


async def test_mint_without_payment_answers_402_v1_and_v2(
    client: httpx.AsyncClient, devchain: Deployment
) -> None:
    answer = await client.post(f"/api/mint/{devchain.token}", json={"quantity": 3})
    assert answer.status_code == 402
    v1 = answer.json()
    assert v1["x402Version"] == 1
    (req1,) = v1["accepts"]
    assert req1["scheme"] == "exact"
    assert req1["maxAmountRequired"] == str(3 * devchain.price_per_mint)
    assert req1["payTo"] == devchain.token
    assert req1["asset"] == devchain.usdc
    assert req1["extra"] == {"name": "USDC", "version": "2"}
    v2 = PaymentRequiredV2.model_validate(decode_header(answer.headers["PAYMENT-REQUIRED"]))
    (req2,) = v2.accepts
    assert req2.network == "eip155:31337"
    assert req2.amount == str(3 * devchain.price_per_mint)
    assert req2.pay_to == devchain.token
    assert v2.resource is not None and v2.resource.url.endswith(f"/api/mint/{devchain.token}")


async def test_batch_mint_form_answers_402_too(
    client: httpx.AsyncClient, devchain: Deployment
) -> None:
    answer = await client.post(
        "/api/x402-batch-mint", json={"tokenAddress": devchain.token, "quantity": 2}
    )
    assert answer.status_code == 402
    assert answer.json()["accepts"][0]["maxAmountRequired"] == str(2 * devchain.price_per_mint)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"quantity": 0}',
        b'{"quantity": -1}',
        b'{"quantity": "2"}',
        b'{"quantity": 1.5}',
        b'{"quantity": true}',
        b'{"quantity": 101}',
    ],
)
async def test_bad_mint_body_is_400(
    client: httpx.AsyncClient, devchain: Deployment, body: bytes
) -> None:
    answer = await client.post(f"/api/mint/{devchain.token}", content=body)
    assert answer.status_code == 400
    assert answer.json()["error"] in ("invalid_request", "invalid_quantity")


async def test_openapi_lists_the_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/api/mint/{token}", "/api/tokens", "/api/tokens/{address}", "/health"):
        assert path in paths
