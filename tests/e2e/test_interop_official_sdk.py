"""Interoperability over real loopback ports: payfirst's facilitator (`GET /supported`,
`POST /verify`, `POST /settle`) behind the official `x402` SDK's resource server and paid by
the official SDK's client; and payfirst's own provider middleware paid by payfirst's own
client, each app served by uvicorn in-process next to the harness's worker (real
PostgreSQL, real anvil).

The official resource server is the SDK's own Starlette/FastAPI middleware
(`x402.http.middleware.fastapi.payment_middleware`) on a plain Starlette app. That module
imports `Request`, `Response`, `JSONResponse` and `HTMLResponse` from `fastapi`, which only
re-exports Starlette's classes; payfirst does not depend on FastAPI, so when it is absent
those four names are provided from Starlette for the duration of a test. The SDK's
`initialize()` fetches `/supported` with a blocking httpx client: it runs in a thread so
the in-process payfirst server can answer it."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import time
import types
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account import Account
from eth_utils.crypto import keccak
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from x402 import x402Client, x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient, x402HTTPClient
from x402.http.clients.httpx import x402_httpx_transport
from x402.http.types import PaymentOption, RouteConfig
from x402.http.x402_http_server import x402HTTPResourceServer
from x402.mechanisms.evm.exact import ExactEvmClientScheme, ExactEvmServerScheme
from x402.mechanisms.evm.exact import client as sdk_exact_client
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse

from payfirst.adapters.devchain import ANVIL_KEYS, free_port
from payfirst.client import PayingClient
from payfirst.provider import PaymentMiddleware, Price
from payfirst.x402 import decode_header
from tests.e2e.harness import AUTHORIZATION_USED_TOPIC, SELLER, Harness
from tests.fixtures.store import fetch_raw

NETWORK = "eip155:31337"
ELSEWHERE = "0x000000000000000000000000000000000000dEaD"
AMOUNT = 10_000  # 0.01 USDC
REPORT = {"report": "quarterly numbers", "rows": 3}
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


# --- serving ASGI apps on real loopback ports ----------------------------------------------


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, *, lifespan: str = "off") -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in this event loop; yields its URL.
    `lifespan="on"` runs the app's start-up and shutdown (a PaymentMiddleware closes its
    HTTP client at shutdown)."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    # Leave pytest's signal handlers alone: the test stops the server itself.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError(f"uvicorn on port {port} exited before starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"uvicorn on port {port} did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def payfirst_app(harness: Harness) -> ASGIApp:
    """The harness's own payfirst app (its Services, its worker's wake-up and signers)."""
    transport = harness.http._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


@contextlib.asynccontextmanager
async def payfirst_server(harness: Harness) -> AsyncIterator[str]:
    async with serving(payfirst_app(harness)) as url:
        yield url


# --- the official SDK's resource server ----------------------------------------------------


def sdk_fastapi_middleware(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """`x402.http.middleware.fastapi`, importable without FastAPI (whose Request, Response,
    JSONResponse and HTMLResponse are Starlette's own classes)."""
    try:
        importlib.import_module("fastapi")
    except ImportError:
        fastapi = types.ModuleType("fastapi")
        responses = types.ModuleType("fastapi.responses")
        fastapi.Request = Request  # type: ignore[attr-defined]
        fastapi.Response = Response  # type: ignore[attr-defined]
        responses.JSONResponse = JSONResponse  # type: ignore[attr-defined]
        responses.HTMLResponse = HTMLResponse  # type: ignore[attr-defined]
        fastapi.responses = responses  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "fastapi", fastapi)
        monkeypatch.setitem(sys.modules, "fastapi.responses", responses)
        monkeypatch.delitem(sys.modules, "x402.http.middleware.fastapi", raising=False)
    return importlib.import_module("x402.http.middleware.fastapi")


def sdk_routes(harness: Harness) -> dict[str, RouteConfig]:
    d = harness.deployment
    return {
        "GET /report": RouteConfig(
            accepts=PaymentOption(
                scheme="exact",
                pay_to=SELLER,
                price={
                    "amount": str(AMOUNT),
                    "asset": d.usdc,
                    "extra": {"name": d.usdc_name, "version": d.usdc_version},
                },
                network=NETWORK,
                max_timeout_seconds=120,
            ),
            description="A paid report",
            mime_type="application/json",
        )
    }


async def report(request: Request) -> Response:
    return JSONResponse(REPORT)


@contextlib.asynccontextmanager
async def sdk_resource_server(
    harness: Harness, facilitator_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """Serve a Starlette app whose GET /report is protected by the official SDK's
    middleware, with payfirst (at `facilitator_url`) as its facilitator; yields its URL."""
    facilitator = HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url, timeout=60))
    server = x402ResourceServer(facilitator)
    server.register(NETWORK, ExactEvmServerScheme())
    routes = sdk_routes(harness)
    # GET /supported with the SDK's blocking client, off the loop that serves payfirst; the
    # HTTP server's initialize() also validates the routes against what payfirst supports.
    await asyncio.to_thread(x402HTTPResourceServer(server, routes).initialize)
    middleware = sdk_fastapi_middleware(monkeypatch).payment_middleware(
        routes, server, sync_facilitator_on_start=False
    )
    app = Starlette(
        routes=[Route("/report", report)],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=middleware)],
    )
    try:
        async with serving(app) as url:
            yield url
    finally:
        await facilitator.aclose()


@dataclass
class OfficialStack:
    harness: Harness
    facilitator_url: str
    resource_url: str

    def client(self, payer: int) -> x402Client:
        client = x402Client()
        client.register(NETWORK, ExactEvmClientScheme(Account.from_key(ANVIL_KEYS[payer])))
        client.set_spend_controls(False)
        return client


@pytest.fixture
async def official(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OfficialStack]:
    async with (
        payfirst_server(harness) as facilitator_url,
        sdk_resource_server(harness, facilitator_url, monkeypatch) as resource_url,
    ):
        yield OfficialStack(harness, facilitator_url, resource_url)


# --- chain and database checks ---------------------------------------------------------------


async def balances(harness: Harness, *addresses: str) -> list[int]:
    return [await harness.usdc_balance(a) for a in addresses]


async def settle_rows(harness: Harness) -> list[dict[str, Any]]:
    return await fetch_raw(
        harness.store, "SELECT payment_type, status, payer, amount, tx_hash FROM payment_queue"
    )


async def assert_transfer_mined(
    harness: Harness, tx_hash: str, payer: str, nonce: str, pay_to: str = SELLER
) -> None:
    """The tx is mined, succeeded and used exactly this (payer, nonce) authorization of the
    harness's USDC (moving AMOUNT from payer to pay_to)."""
    receipt = await harness.rpc.get_transaction_receipt(tx_hash)
    assert receipt is not None and int(receipt["status"], 16) == 1, receipt
    used = [
        log
        for log in receipt["logs"]
        if log["address"].lower() == harness.deployment.usdc.lower()
        and log["topics"][0] == AUTHORIZATION_USED_TOPIC
        and int(log["topics"][1], 16) == int(payer, 16)
        and log["topics"][2] == nonce
    ]
    assert len(used) == 1, receipt["logs"]
    transfers = [
        log
        for log in receipt["logs"]
        if log["address"].lower() == harness.deployment.usdc.lower()
        and log["topics"][0] == TRANSFER_TOPIC
        and int(log["topics"][1], 16) == int(payer, 16)
    ]
    assert len(transfers) == 1, receipt["logs"]
    assert int(transfers[0]["topics"][2], 16) == int(pay_to, 16)
    assert int(transfers[0]["data"], 16) == AMOUNT


def payment_header(payload: PaymentPayload) -> dict[str, str]:
    return x402HTTPClient(x402Client()).encode_payment_signature_header(payload)


def decode_settlement(response: httpx.Response) -> SettleResponse:
    return x402HTTPClient(x402Client()).get_payment_settle_response(response.headers.get)


# --- 1. official resource server + official client, payfirst as facilitator ----------------


async def test_official_client_pays_official_resource_server_settled_by_payfirst(
    official: OfficialStack,
) -> None:
    h = official.harness
    payer = h.payer(1)
    payer_before, seller_before = await balances(h, payer.address, SELLER)
    async with httpx.AsyncClient(base_url=official.resource_url) as plain:
        unpaid = await plain.get("/report")
    assert unpaid.status_code == 402
    required = decode_header(unpaid.headers["PAYMENT-REQUIRED"])
    [offer] = required["accepts"]
    assert offer["asset"] == h.deployment.usdc
    assert (offer["amount"], offer["payTo"], offer["network"]) == (str(AMOUNT), SELLER, NETWORK)
    assert offer["extra"]["name"] == "USDC" and offer["extra"]["version"] == "2"

    sent: list[PaymentPayload] = []
    sdk_client = official.client(1)
    sdk_client.on_after_payment_creation(lambda ctx: sent.append(ctx.payment_payload))
    async with httpx.AsyncClient(
        transport=x402_httpx_transport(sdk_client), base_url=official.resource_url, timeout=60
    ) as paying:
        answer = await paying.get("/report")

    assert answer.status_code == 200, answer.text
    assert answer.json() == REPORT
    settlement = decode_settlement(answer)
    assert settlement.success, settlement
    assert settlement.payer == payer.address
    assert settlement.network == NETWORK
    [payload] = sent
    nonce = payload.payload["authorization"]["nonce"]
    await assert_transfer_mined(h, settlement.transaction, payer.address, nonce)
    assert await balances(h, payer.address, SELLER) == [
        payer_before - AMOUNT,
        seller_before + AMOUNT,
    ]
    rows = await settle_rows(h)
    assert len(rows) == 1, rows
    [row] = rows
    assert (row["payment_type"], row["status"]) == ("settle", "completed")
    assert row["payer"] == payer.address and int(row["amount"]) == AMOUNT
    assert row["tx_hash"].lower() == settlement.transaction.lower()


# --- 3. refusals through the official stack --------------------------------------------------


async def official_payload(
    stack: OfficialStack,
    payer: int,
    *,
    sign_over: dict[str, Any] | None = None,
    clock: Callable[[], float] | None = None,
) -> PaymentPayload:
    """The official client's payment for GET /report, optionally signed over altered
    requirements (`sign_over`: wire fields to change) while still naming the route's own
    requirements as `accepted`, or signed at another time (`clock`)."""
    async with httpx.AsyncClient(base_url=stack.resource_url) as plain:
        unpaid = await plain.get("/report")
    required = x402HTTPClient(x402Client()).get_payment_required_response(unpaid.headers.get)
    assert isinstance(required, PaymentRequired)
    genuine = required.accepts[0]
    signed_for = genuine
    if sign_over:
        signed_for = PaymentRequirements.model_validate(
            genuine.model_dump(by_alias=True) | sign_over
        )
    altered = required.model_copy(update={"accepts": [signed_for]})
    if clock is None:
        payload = await stack.client(payer).create_payment_payload(altered)
    else:  # the SDK's exact EVM client reads time.time() for validBefore
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sdk_exact_client, "time", types.SimpleNamespace(time=clock))
            payload = await stack.client(payer).create_payment_payload(altered)
    assert isinstance(payload, PaymentPayload)
    return payload.model_copy(update={"accepted": genuine})


async def assert_refused(stack: OfficialStack, header: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.resource_url, timeout=60) as plain:
        answer = await plain.get("/report", headers=header)
    assert answer.status_code == 402, answer.text
    assert "quarterly" not in answer.text
    assert "PAYMENT-RESPONSE" not in answer.headers or not decode_settlement(answer).success
    return answer


def refusal_reason(answer: httpx.Response) -> str:
    """The `error` of the PAYMENT-REQUIRED header the SDK answers a refused payment with."""
    return str(decode_header(answer.headers["PAYMENT-REQUIRED"]).get("error", ""))


async def test_replayed_payment_signature_is_refused(
    official: OfficialStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = official.harness
    payer = h.payer(2)
    payer_before, seller_before = await balances(h, payer.address, SELLER)
    payload = await official_payload(official, 2)
    header = payment_header(payload)
    async with httpx.AsyncClient(base_url=official.resource_url, timeout=60) as plain:
        first = await plain.get("/report", headers=header)
    assert first.status_code == 200, first.text
    assert first.json() == REPORT
    assert decode_settlement(first).success

    replay = await assert_refused(official, header)
    assert "nonce_already_used" in refusal_reason(replay), refusal_reason(replay)
    # Once more, against a second official resource server in front of the same payfirst.
    async with (
        sdk_resource_server(h, official.facilitator_url, monkeypatch) as other_url,
        httpx.AsyncClient(base_url=other_url, timeout=60) as plain,
    ):
        elsewhere = await plain.get("/report", headers=header)
    assert elsewhere.status_code == 402 and "quarterly" not in elsewhere.text

    assert await balances(h, payer.address, SELLER) == [
        payer_before - AMOUNT,
        seller_before + AMOUNT,
    ]
    rows = await settle_rows(h)
    assert [(r["payment_type"], r["status"]) for r in rows] == [("settle", "completed")]


@pytest.mark.parametrize(
    ("case", "sign_over", "age_s", "reason"),
    [
        ("tampered amount", {"amount": "1"}, 0, "authorization_value_mismatch"),
        ("wrong payTo", {"payTo": ELSEWHERE}, 0, "recipient_mismatch"),
        ("expired authorization", None, 1_000, "valid_before"),
    ],
)
async def test_bad_payments_are_refused_and_move_nothing(
    official: OfficialStack,
    case: str,
    sign_over: dict[str, Any] | None,
    age_s: int,
    reason: str,
) -> None:
    h = official.harness
    payer = h.payer(3)
    before = await balances(h, payer.address, SELLER, ELSEWHERE)
    signed_at = time.time() - age_s
    payload = await official_payload(
        official,
        3,
        sign_over=sign_over,
        clock=(lambda: signed_at) if age_s else None,
    )
    answer = await assert_refused(official, payment_header(payload))
    assert reason in refusal_reason(answer), (case, refusal_reason(answer))
    await asyncio.sleep(0.5)  # room for any stray settlement to land
    assert await balances(h, payer.address, SELLER, ELSEWHERE) == before, case
    assert await settle_rows(h) == [], case


# --- 2. payfirst client <-> payfirst provider, both over real ports -------------------------


def provider_price(harness: Harness) -> Price:
    d = harness.deployment
    return Price(
        amount=AMOUNT,
        asset=d.usdc,
        pay_to=SELLER,
        network=NETWORK,
        asset_name=d.usdc_name,
        asset_version=d.usdc_version,
        description="A paid report",
    )


def provider_app(harness: Harness, facilitator_url: str) -> Starlette:
    """A Starlette app whose GET /report is priced by payfirst's PaymentMiddleware, payfirst
    (over the network, at `facilitator_url`) verifying and settling."""
    return Starlette(
        routes=[Route("/report", report)],
        middleware=[
            Middleware(
                PaymentMiddleware,
                facilitator_url=facilitator_url,
                routes={"GET /report": provider_price(harness)},
            )
        ],
    )


@contextlib.asynccontextmanager
async def provider_server(harness: Harness, facilitator_url: str) -> AsyncIterator[str]:
    app = provider_app(harness, facilitator_url)
    try:
        async with serving(app) as url:
            yield url
    finally:
        # lifespan is off under `serving`: close the middleware's facilitator client here.
        stack: Any = app.middleware_stack
        while stack is not None and not isinstance(stack, PaymentMiddleware):
            stack = getattr(stack, "app", None)
        if isinstance(stack, PaymentMiddleware):
            await stack.aclose()


@pytest.mark.parametrize("version", [2, 1])
async def test_paying_client_pays_provider_middleware_over_real_ports(
    harness: Harness, version: int
) -> None:
    payer = harness.payer(4)
    payer_before, seller_before = await balances(harness, payer.address, SELLER)
    async with (
        payfirst_server(harness) as facilitator_url,
        provider_server(harness, facilitator_url) as resource_url,
        PayingClient(
            harness.payer(4), x402_version=version, base_url=resource_url, timeout=60
        ) as client,
    ):
        answer = await client.get("/report")
    assert answer.status_code == 200, answer.text
    assert answer.json() == REPORT
    assert answer.payment is not None and answer.payment.x402_version == version
    settlement = answer.settlement
    assert settlement is not None and settlement.success, settlement
    assert settlement.payer == payer.address
    nonce = decode_header(answer.payment.header_value)["payload"]["authorization"]["nonce"]
    await assert_transfer_mined(harness, settlement.transaction, payer.address, nonce)
    assert await balances(harness, payer.address, SELLER) == [
        payer_before - AMOUNT,
        seller_before + AMOUNT,
    ]
    rows = await settle_rows(harness)
    assert [(r["payment_type"], r["status"]) for r in rows] == [("settle", "completed")]
