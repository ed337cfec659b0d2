"""A small Starlette API priced with PaymentMiddleware, payfirst as its x402 facilitator
(`POST /verify`, `POST /settle`, reached over the harness's ASGI transport), paid by
PayingClient; USDC really moves on anvil, and only when content is served."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payfirst.client import PaidResponse, PayingClient
from payfirst.evm import abi, calls
from payfirst.provider import EXPOSED_HEADERS, PaymentMiddleware, Price
from payfirst.x402 import (
    PaymentPayloadV2,
    PaymentRequiredV2,
    decode_header,
    encode_header,
    wire,
)
from tests.e2e.harness import AUTHORIZATION_USED_TOPIC, SHOP, Harness

PROVIDER_URL = "http://provider.test"
FACILITATOR_URL = "http://127.0.0.1"  # the harness's payfirst app, through its transport
ELSEWHERE = "0x000000000000000000000000000000000000dEaD"
AMOUNT = 10_000


def price(harness: Harness) -> Price:
    d = harness.deployment
    return Price(
        amount=AMOUNT,
        asset=d.usdc,
        pay_to=SHOP,
        network="eip155:31337",
        asset_name=d.usdc_name,
        asset_version=d.usdc_version,
        description="Today's weather",
    )


def provider(harness: Harness, settle: str = "after") -> Starlette:
    async def weather(request: Request) -> Response:
        return JSONResponse({"weather": "sunny", "payer": request.state.x402.payer})

    async def broken(request: Request) -> Response:
        return JSONResponse({"error": "boom"}, 500)

    return Starlette(
        routes=[Route("/weather", weather), Route("/broken", broken)],
        middleware=[
            Middleware(
                PaymentMiddleware,
                facilitator_url=FACILITATOR_URL,
                http_client=harness.http,  # payfirst's app over httpx.ASGITransport
                routes={"GET /weather": price(harness), "GET /broken": price(harness)},
                settle=settle,
            )
        ],
    )


def paying(harness: Harness, app: Starlette, payer: int = 1, **kw: Any) -> PayingClient:
    return PayingClient(
        harness.payer(payer),
        transport=httpx.ASGITransport(app=app),
        base_url=PROVIDER_URL,
        **kw,
    )


def plain(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PROVIDER_URL)


async def balances(harness: Harness, payer: str) -> tuple[int, int]:
    return await harness.usdc_balance(payer), await harness.usdc_balance(SHOP)


async def authorization_used(harness: Harness, payer: str, nonce: str) -> bool:
    raw = await harness.rpc.eth_call(
        harness.deployment.usdc, calls.authorization_state(payer, nonce)
    )
    return bool(abi.decode_result(["bool"], raw)[0])


def refused_without_content(answer: httpx.Response | PaidResponse) -> None:
    assert answer.status_code == 402, answer.text
    assert "sunny" not in answer.text
    assert answer.json()["error"]
    assert "PAYMENT-REQUIRED" in answer.headers


async def test_unpaid_request_is_402_with_v1_body_and_v2_header(harness: Harness) -> None:
    async with plain(provider(harness)) as http:
        answer = await http.get("/weather")
    assert answer.status_code == 402
    body = answer.json()
    assert body["x402Version"] == 1
    [v1] = body["accepts"]
    assert (v1["scheme"], v1["network"], v1["maxAmountRequired"]) == (
        "exact",
        "eip155:31337",
        str(AMOUNT),
    )
    assert v1["payTo"] == SHOP and v1["asset"] == harness.deployment.usdc
    assert v1["resource"] == f"{PROVIDER_URL}/weather"
    v2 = PaymentRequiredV2.model_validate(decode_header(answer.headers["PAYMENT-REQUIRED"]))
    assert v2.x402_version == 2
    assert (v2.accepts[0].amount, v2.accepts[0].pay_to) == (str(AMOUNT), SHOP)
    assert v2.accepts[0].extra == {"name": "USDC", "version": "2"}
    exposed = answer.headers["Access-Control-Expose-Headers"]
    assert all(name in exposed for name in EXPOSED_HEADERS)


@pytest.mark.parametrize(("version", "settle"), [(2, "after"), (1, "after"), (2, "before")])
async def test_paid_request_is_served_and_settled_on_chain(
    harness: Harness, version: int, settle: str
) -> None:
    buyer = harness.payer(1)
    payer_before, shop_before = await balances(harness, buyer.address)
    async with paying(harness, provider(harness, settle), x402_version=version) as client:
        answer = await client.get("/weather")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"weather": "sunny", "payer": buyer.address}
    header = "PAYMENT-RESPONSE" if version == 2 else "X-PAYMENT-RESPONSE"
    assert header in answer.headers
    settlement = answer.settlement
    assert settlement is not None and settlement.success, settlement
    assert settlement.payer == buyer.address
    assert client.spent(harness.deployment.usdc) == AMOUNT

    receipt = await harness.rpc.call("eth_getTransactionReceipt", settlement.transaction)
    assert receipt is not None and receipt["status"] == "0x1", receipt
    assert answer.payment is not None
    nonce = decode_header(answer.payment.header_value)["payload"]["authorization"]["nonce"]
    used = [
        log
        for log in receipt["logs"]
        if log["topics"][0] == AUTHORIZATION_USED_TOPIC
        and log["address"].lower() == harness.deployment.usdc.lower()
        and log["topics"][2] == nonce
    ]
    assert len(used) == 1, receipt["logs"]
    assert await balances(harness, buyer.address) == (payer_before - AMOUNT, shop_before + AMOUNT)


async def test_handler_answering_500_settles_nothing(harness: Harness) -> None:
    buyer = harness.payer(2)
    before = await balances(harness, buyer.address)
    async with paying(harness, provider(harness), payer=2) as client:
        answer = await client.get("/broken")
    assert answer.status_code == 500
    assert "PAYMENT-RESPONSE" not in answer.headers
    assert answer.payment is not None
    nonce = decode_header(answer.payment.header_value)["payload"]["authorization"]["nonce"]
    await asyncio.sleep(1.0)  # give any stray settlement time to land
    assert await balances(harness, buyer.address) == before
    assert not await authorization_used(harness, buyer.address, nonce)
    assert client.spent(harness.deployment.usdc) == 0


async def _signed(
    harness: Harness, app: Starlette, change: dict[str, Any], now: int | None = None
) -> str:
    """A v2 header for the provider's requirements, signed over altered requirements."""
    async with plain(app) as http:
        required = PaymentRequiredV2.model_validate(
            decode_header((await http.get("/weather")).headers["PAYMENT-REQUIRED"])
        )
    altered = type(required.accepts[0]).model_validate(wire(required.accepts[0]) | change)
    signed = harness.payer(3).authorize(altered, now=now)
    return encode_header(
        PaymentPayloadV2(resource=required.resource, accepted=altered, payload=signed)
    )


@pytest.mark.parametrize(
    ("case", "change", "age_s", "reason"),
    [
        (
            "tampered amount",
            {"amount": "1"},
            0,
            "invalid_exact_evm_payload_authorization_value_mismatch",
        ),
        ("wrong payTo", {"payTo": ELSEWHERE}, 0, "invalid_exact_evm_payload_recipient_mismatch"),
        ("expired", {}, 1_000, "invalid_exact_evm_payload_authorization_valid_before"),
    ],
)
async def test_bad_payment_is_402_without_content(
    harness: Harness, case: str, change: dict[str, Any], age_s: int, reason: str
) -> None:
    buyer = harness.payer(3)
    before = await balances(harness, buyer.address)
    app = provider(harness)
    header = await _signed(harness, app, change, now=int(time.time()) - age_s)
    async with plain(app) as http:
        answer = await http.get("/weather", headers={"PAYMENT-SIGNATURE": header})
    refused_without_content(answer)
    assert answer.json()["error"] == reason, case
    assert await balances(harness, buyer.address) == before


async def test_replayed_payload_is_402_without_content(harness: Harness) -> None:
    buyer = harness.payer(4)
    payer_before, shop_before = await balances(harness, buyer.address)
    app = provider(harness)
    async with paying(harness, app, payer=4) as client:
        first = await client.get("/weather")
    assert first.status_code == 200, first.text
    assert first.payment is not None
    replayed = {first.payment.header_name: first.payment.header_value}

    async with plain(app) as http:  # the same provider
        again = await http.get("/weather", headers=replayed)
    refused_without_content(again)
    async with plain(provider(harness)) as http:  # another instance: payfirst must refuse it
        elsewhere = await http.get("/weather", headers=replayed)
    refused_without_content(elsewhere)
    assert await balances(harness, buyer.address) == (payer_before - AMOUNT, shop_before + AMOUNT)
