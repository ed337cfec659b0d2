"""PayingClient buys mints from payfirst's own mint endpoint (real PostgreSQL, real anvil):
v2 and v1, the spending policy refuses before anything is signed or queued, and only
payments the server accepted count as spent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from payfirst.client import PayingClient, PaymentRefused, SpendingPolicy
from payfirst.domain.statuses import PaymentStatus
from payfirst.x402 import PAYMENT_SIGNATURE, decode_header, encode_header
from tests.e2e.harness import Harness
from tests.fixtures.store import fetch_raw

BASE_URL = "http://127.0.0.1"
ELSEWHERE = "0x000000000000000000000000000000000000dEaD"


def payfirst_transport(harness: Harness) -> httpx.AsyncBaseTransport:
    """The transport of the harness's payfirst app (httpx.ASGITransport, no port)."""
    return harness.http._transport


async def queued(harness: Harness) -> list[dict[str, Any]]:
    return await fetch_raw(
        harness.store, "SELECT id, payer, amount, status FROM payment_queue ORDER BY created_at"
    )


def client(
    harness: Harness, payer: int, policy: SpendingPolicy | None = None, **kw: Any
) -> PayingClient:
    return PayingClient(
        harness.payer(payer),
        policy,
        transport=payfirst_transport(harness),
        base_url=BASE_URL,
        **kw,
    )


async def test_buys_a_mint_with_x402_v2(harness: Harness) -> None:
    d = harness.deployment
    price = d.price_per_mint
    policy = SpendingPolicy(
        max_per_payment=2 * price,
        max_per_day=10 * price,
        allowed_networks=["eip155:31337"],
        allowed_assets=[d.usdc],
        allowed_pay_to=[d.token],
    )
    buyer = harness.payer(1)
    tokens_before = await harness.token_balance(buyer.address)
    async with client(harness, 1, policy) as paying:
        result = await paying.post(f"/api/mint/{d.token}", json={"quantity": 2})
        assert result.status_code == 202, result.text
        assert result.accepted
        assert result.payment is not None
        assert result.payment.x402_version == 2
        assert result.payment.header_name == "PAYMENT-SIGNATURE"
        assert result.payment.amount == 2 * price
        assert result.settlement is None  # payfirst's mint endpoint settles in the background
        assert paying.spent(d.usdc) == 2 * price
    [row] = await queued(harness)
    assert str(row["id"]) == result.json()["paymentQueueId"]
    assert row["payer"] == buyer.address and int(row["amount"]) == 2 * price
    await harness.settled()
    [row] = await queued(harness)
    assert row["status"] == PaymentStatus.COMPLETED
    assert await harness.token_balance(buyer.address) > tokens_before


async def test_buys_a_mint_with_x402_v1_when_forced(harness: Harness) -> None:
    d = harness.deployment
    async with client(
        harness, 2, SpendingPolicy(allowed_networks=["eip155:31337"]), x402_version=1
    ) as paying:
        result = await paying.post(
            "/api/x402-batch-mint", json={"tokenAddress": d.token, "quantity": 1}
        )
        assert result.status_code == 202, result.text
        assert result.payment is not None
        assert result.payment.x402_version == 1
        assert result.payment.header_name == "X-PAYMENT"
        assert decode_header(result.payment.header_value)["x402Version"] == 1
        assert paying.spent(d.usdc) == d.price_per_mint
    rows = await fetch_raw(harness.store, "SELECT metadata, status FROM payment_queue")
    assert len(rows) == 1
    await harness.settled()
    [row] = await queued(harness)
    assert row["status"] == PaymentStatus.COMPLETED


async def test_a_request_without_402_is_passed_through_unpaid(harness: Harness) -> None:
    async with client(harness, 1) as paying:
        result = await paying.get(f"/api/tokens/{harness.deployment.token}")
    assert result.status_code == 200
    assert result.payment is None and not result.accepted


@pytest.mark.parametrize(
    ("rule", "policy_of"),
    [
        ("max_per_payment", lambda d: SpendingPolicy(max_per_payment=d.price_per_mint - 1)),
        ("allowed_pay_to", lambda d: SpendingPolicy(allowed_pay_to=[ELSEWHERE])),
        ("allowed_networks", lambda d: SpendingPolicy(allowed_networks=["base", "eip155:1"])),
        ("allowed_assets", lambda d: SpendingPolicy(allowed_assets=[ELSEWHERE])),
        ("max_per_payment", lambda d: SpendingPolicy(max_per_payment={ELSEWHERE: 10**12})),
    ],
)
async def test_policy_refuses_before_signing_and_nothing_is_queued(
    harness: Harness, rule: str, policy_of: Any
) -> None:
    d = harness.deployment
    sent: list[httpx.Request] = []
    async with client(harness, 1, policy_of(d), event_hooks={"request": [_record(sent)]}) as paying:
        with pytest.raises(PaymentRefused) as caught:
            await paying.post(f"/api/mint/{d.token}", json={"quantity": 1})
        assert paying.spent(d.usdc) == 0
    refused = caught.value
    assert refused.rule == rule
    assert rule in str(refused)
    assert refused.amount == d.price_per_mint
    assert str(d.price_per_mint) in str(refused)
    assert len(sent) == 1  # only the request that got the 402
    assert not any(PAYMENT_SIGNATURE in r.headers or "X-PAYMENT" in r.headers for r in sent)
    assert await queued(harness) == []


async def test_max_per_day_across_two_payments(harness: Harness) -> None:
    d = harness.deployment
    price = d.price_per_mint
    async with client(harness, 3, SpendingPolicy(max_per_day=price + price // 2)) as paying:
        first = await paying.post(f"/api/mint/{d.token}", json={"quantity": 1})
        assert first.status_code == 202
        with pytest.raises(PaymentRefused) as caught:
            await paying.post(f"/api/mint/{d.token}", json={"quantity": 1})
        assert paying.spent(d.usdc) == price
    refused = caught.value
    assert (refused.rule, refused.amount, refused.spent) == ("max_per_day", price, price)
    assert refused.limit == price + price // 2
    assert len(await queued(harness)) == 1


async def test_only_payments_the_server_accepted_count_as_spent(harness: Harness) -> None:
    """A payment the server refuses (402 after paying) is not spent, and its reservation
    does not block the next payment under the daily limit."""
    d = harness.deployment
    price = d.price_per_mint
    tamper = {"on": True}

    class Tampering(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            header = request.headers.get(PAYMENT_SIGNATURE)
            if header and tamper["on"]:
                payload = decode_header(header)
                payload["payload"]["authorization"]["value"] = "1"
                request.headers[PAYMENT_SIGNATURE] = encode_header(payload)
            return await payfirst_transport(harness).handle_async_request(request)

    paying = PayingClient(
        harness.payer(4),
        SpendingPolicy(max_per_day=price),
        transport=Tampering(),
        base_url=BASE_URL,
    )
    async with paying:
        refused = await paying.post(f"/api/mint/{d.token}", json={"quantity": 1})
        assert refused.status_code == 402
        assert refused.json()["error"] == "invalid_exact_evm_payload_authorization_value_mismatch"
        assert refused.payment is not None and not refused.accepted
        assert paying.spent(d.usdc) == 0
        assert await queued(harness) == []

        tamper["on"] = False
        accepted = await paying.post(f"/api/mint/{d.token}", json={"quantity": 1})
        assert accepted.status_code == 202
        assert paying.spent(d.usdc) == price
    assert len(await queued(harness)) == 1


def _record(sent: list[httpx.Request]) -> Any:
    async def hook(request: httpx.Request) -> None:
        sent.append(request)

    return hook
