"""A provider's API priced by payfirst's registry, end to end over real loopback ports: the
runnable examples (`examples/`: setup_provider, provider_app, agent) and the official `x402`
client paying the same app; then the ledger and a payout on chain.

payfirst (the harness's API + worker, real PostgreSQL, the shared anvil) collects for the
provider in its treasury, so the payments credit the provider's balance (price - fee) and
the platform's fees; the provider's payout moves its balance to its payout address."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_account import Account
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from x402 import x402Client
from x402.http.clients.httpx import x402_httpx_transport
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from examples import agent, provider_app, setup_provider
from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.client import PayingClient
from payfirst.domain.accounts import Role
from payfirst.provider import PaymentMiddleware
from payfirst.usecases.accounts import Accounts
from payfirst.x402 import decode_header
from tests.e2e.harness import Harness
from tests.e2e.test_interop_official_sdk import decode_settlement, payfirst_server, serving
from tests.fixtures.store import fetch_raw

NETWORK = "eip155:31337"
FEE_BPS = 250


@dataclass
class Stack:
    harness: Harness
    payfirst_url: str
    provider: setup_provider.Provider
    app_url: str


@pytest.fixture
async def stack(harness: Harness) -> AsyncIterator[Stack]:
    h = harness
    _, operator = await Accounts(h.store).create_account(Role.OPERATOR, "ops")
    async with payfirst_server(h) as payfirst_url:
        provider = await setup_provider.setup_provider(payfirst_url, operator.text)
        await h.store.pool.execute(
            "UPDATE accounts SET fee_bps = $2 WHERE id = $1::uuid", provider.account_id, FEE_BPS
        )
        app = provider_app.build_app(payfirst_url, provider.api_key)
        async with serving(app, lifespan="on") as app_url:
            yield Stack(h, payfirst_url, provider, app_url)


def official_client(payer: int) -> x402Client:
    client = x402Client()
    client.register(NETWORK, ExactEvmClientScheme(Account.from_key(ANVIL_KEYS[payer])))
    client.set_spend_controls(False)
    return client


async def ledger_of(h: Harness, payment_id: str) -> dict[tuple[str, str], int]:
    rows = await fetch_raw(
        h.store,
        "SELECT a.kind, a.owner, e.amount FROM ledger_entries e"
        " JOIN ledger_transactions t ON t.id = e.transaction_id"
        " JOIN ledger_accounts a ON a.id = e.account_id"
        f" WHERE t.payment_id = '{payment_id}'",
    )
    return {(r["kind"], r["owner"]): int(r["amount"]) for r in rows}


async def settled_row(h: Harness, tx_hash: str) -> dict[str, Any]:
    [row] = await fetch_raw(
        h.store,
        "SELECT id, status, amount, provider_id, fee_bps, endpoint_id, pay_to FROM ("
        " SELECT *, token_address AS pay_to FROM payment_queue) q"
        f" WHERE lower(tx_hash) = lower('{tx_hash}')",
    )
    return row


async def test_the_examples_run_and_the_provider_is_credited(stack: Stack) -> None:
    h = stack.harness
    url = f"{stack.app_url}/weather/paris"
    async with httpx.AsyncClient() as plain:
        free = await plain.get(f"{stack.app_url}/")
        unpaid = await plain.get(url)
    assert free.status_code == 200
    assert unpaid.status_code == 402
    [offer] = decode_header(unpaid.headers["PAYMENT-REQUIRED"])["accepts"]
    treasury = offer["payTo"]
    assert (offer["amount"], offer["network"]) == (str(setup_provider.PRICE), NETWORK)
    assert offer["extra"]["payfirst"]["endpoint"] == stack.provider.endpoint["id"]

    paid = await agent.fetch(url, ANVIL_KEYS[1])

    assert paid.response.status_code == 200, paid.response.text
    assert paid.response.json()["city"] == "paris"
    assert paid.settlement is not None and paid.settlement.success
    row = await settled_row(h, paid.settlement.transaction)
    assert row["status"] == "completed"
    assert str(row["provider_id"]) == stack.provider.account_id
    assert str(row["endpoint_id"]) == stack.provider.endpoint["id"]
    assert row["fee_bps"] == FEE_BPS
    fee = setup_provider.PRICE * FEE_BPS // 10_000
    entries = await ledger_of(h, str(row["id"]))
    assert entries[("provider", stack.provider.account_id)] == setup_provider.PRICE - fee
    assert entries[("fees", "platform")] == fee
    assert sum(entries.values()) == 0
    assert await h.usdc_balance(treasury) >= setup_provider.PRICE

    # The provider is paid out on chain, to the payout address, what it was credited.
    await h.store.set_setting("payout_interval_ms", 200)
    payee_before = await h.usdc_balance(setup_provider.PAYOUT_ADDRESS)
    provider = {"Authorization": f"Bearer {stack.provider.api_key}"}
    async with httpx.AsyncClient(base_url=stack.payfirst_url, headers=provider) as http:
        balance = (await http.get("/v1/balance")).json()["balances"]
        assert [b["available"] for b in balance] == [str(setup_provider.PRICE - fee)]
        asked = await http.post("/v1/payouts", json={})
        assert asked.status_code == 201, asked.text
        payout_id = asked.json()["id"]

        async def completed() -> dict[str, Any] | None:
            payout: dict[str, Any] = (await http.get(f"/v1/payouts/{payout_id}")).json()
            return payout if payout["status"] == "completed" else None

        payout = await wait_for(completed)
        balance = (await http.get("/v1/balance")).json()["balances"]
    assert payout["amount"] == str(setup_provider.PRICE - fee)
    assert await h.usdc_balance(setup_provider.PAYOUT_ADDRESS) == (
        payee_before + setup_provider.PRICE - fee
    )
    assert [(b["available"], b["paid_out"]) for b in balance] == [
        ("0", str(setup_provider.PRICE - fee))
    ]


async def test_the_official_client_pays_a_registry_priced_route(stack: Stack) -> None:
    h = stack.harness
    payer = h.payer(2)
    before = await h.usdc_balance(payer.address)
    async with httpx.AsyncClient(
        transport=x402_httpx_transport(official_client(2)), base_url=stack.app_url, timeout=60
    ) as paying:
        answer = await paying.get("/weather/oslo")
    assert answer.status_code == 200, answer.text
    settlement = decode_settlement(answer)
    assert settlement.success and settlement.payer == payer.address
    assert await h.usdc_balance(payer.address) == before - setup_provider.PRICE
    row = await settled_row(h, settlement.transaction)
    assert (row["status"], str(row["endpoint_id"])) == (
        "completed",
        stack.provider.endpoint["id"],
    )


async def test_a_paid_route_is_never_served_free_when_payfirst_is_unreachable(
    harness: Harness,
) -> None:
    app = provider_app.build_app("http://127.0.0.1:9", "pf_test_unreachable")
    async with serving(app, lifespan="on") as app_url, httpx.AsyncClient() as plain:
        answer = await plain.get(f"{app_url}/weather/paris")
    assert answer.status_code == 502
    assert answer.json()["error"] == "facilitator_unavailable"


async def units(request: Request) -> Response:
    body = await request.json() if request.method == "POST" else {}
    paid = request.state.x402
    return JSONResponse({"echo": body, "paid": paid.requirements.amount, "units": paid.units})


async def test_per_unit_prices_read_the_units_from_the_query_or_the_json_body(
    stack: Stack,
) -> None:
    h = stack.harness
    headers = {"Authorization": f"Bearer {stack.provider.api_key}"}
    async with httpx.AsyncClient(base_url=stack.payfirst_url) as http:
        registered = await http.post(
            "/v1/endpoints",
            headers=headers,
            json={
                "method": "POST",
                "resource": "/translate",
                "pricing": "per_unit",
                "amount": "2000",
                "unit_param": "pages",
                "max_units": 10,
            },
        )
    assert registered.status_code == 201, registered.text
    app = Starlette(
        routes=[Route("/translate", units, methods=["POST"])],
        middleware=[
            Middleware(
                PaymentMiddleware,
                facilitator_url=stack.payfirst_url,
                api_key=stack.provider.api_key,
            )
        ],
    )
    async with serving(app, lifespan="on") as app_url, httpx.AsyncClient(base_url=app_url) as plain:
        by_body = await plain.post("/translate", json={"pages": 3, "text": "hej"})
        by_query = await plain.post("/translate?pages=4", json={"text": "hej"})
        too_many = await plain.post("/translate", json={"pages": 11})
        not_a_number = await plain.post("/translate?pages=x")
        # Wherever a handler could read the count, the price counts the same: a JSON body
        # without (or with another) Content-Type, and never fewer units than it serves.
        untyped = await plain.post("/translate", content=b'{"pages": 10}')
        mislabelled = await plain.post(
            "/translate", content=b'{"pages": 10}', headers={"content-type": "text/plain"}
        )
        refused = [
            await plain.post("/translate?pages=1", json={"pages": 10}),  # two counts
            await plain.post("/translate", json={"text": "hej"}),  # none
            await plain.post("/translate", content=b"pages=10"),  # not JSON
            await plain.post("/translate", content=b'{"pages": 10, "x": NaN}'),
            await plain.post("/translate", json={"pages": 2.5}),
            await plain.post("/translate", json={"pages": True}),
            await plain.post("/translate", json=[{"pages": 1}]),
        ]
        async with PayingClient(ANVIL_KEYS[3], timeout=120) as client:
            paid = await client.post(f"{app_url}/translate", json={"pages": 3, "text": "hej"})
    assert by_body.status_code == 402
    assert decode_header(by_body.headers["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "6000"
    assert decode_header(by_query.headers["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "8000"
    assert too_many.status_code == 400, too_many.text
    assert not_a_number.status_code == 400, not_a_number.text
    for answer in (untyped, mislabelled):
        assert answer.status_code == 402, answer.text
        assert decode_header(answer.headers["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "20000"
    assert [r.status_code for r in refused] == [400] * len(refused), [r.text for r in refused]
    # The body read for the units reaches the handler whole.
    assert paid.response.status_code == 200, paid.response.text
    assert paid.response.json() == {
        "echo": {"pages": 3, "text": "hej"},
        "paid": "6000",
        "units": 3,
    }
    assert paid.settlement is not None
    row = await settled_row(h, paid.settlement.transaction)
    assert (row["status"], int(row["amount"])) == ("completed", 6000)
    assert str(row["endpoint_id"]) == registered.json()["id"]


async def wait_for(condition: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.2)


async def served(request: Request) -> Response:
    return JSONResponse({"served": True})


async def test_disabled_head_and_repriced_endpoints_are_never_served_unpaid(stack: Stack) -> None:
    provider = {"Authorization": f"Bearer {stack.provider.api_key}"}
    endpoint_id = stack.provider.endpoint["id"]
    app = Starlette(
        routes=[Route("/weather/{city}", served, methods=["GET"])],
        middleware=[
            Middleware(
                PaymentMiddleware,
                facilitator_url=stack.payfirst_url,
                api_key=stack.provider.api_key,
                registry_ttl_s=3600,
            )
        ],
    )
    async with (
        serving(app, lifespan="on") as app_url,
        httpx.AsyncClient(base_url=app_url) as plain,
        httpx.AsyncClient(base_url=stack.payfirst_url, headers=provider) as payfirst,
    ):
        head = await plain.head("/weather/rome")
        assert head.status_code == 402
        # A new price while the middleware still knows the old one: the payment at the old
        # price is refused by payfirst (never served), and the next request asks the new one.
        repriced = await payfirst.patch(f"/v1/endpoints/{endpoint_id}", json={"amount": "12000"})
        assert repriced.status_code == 200, repriced.text
        async with PayingClient(ANVIL_KEYS[4], timeout=120) as client:
            stale = await client.get(f"{app_url}/weather/rome")
            assert stale.response.status_code == 402, stale.response.text
            fresh = await client.get(f"{app_url}/weather/rome")
        assert fresh.response.status_code == 200, fresh.response.text
        assert fresh.payment is not None and fresh.payment.amount == 12_000
        # Disabled: not for sale, and not served free either, once the list is read again.
        assert (await payfirst.delete(f"/v1/endpoints/{endpoint_id}")).status_code == 200
        middleware = app.middleware_stack
        while not isinstance(middleware, PaymentMiddleware):
            middleware = middleware.app  # type: ignore[attr-defined]
        assert middleware.registry is not None
        middleware.registry.forget(endpoint_id)
        disabled = await plain.get("/weather/rome")
        assert disabled.status_code == 404, disabled.text
        assert "served" not in disabled.text
