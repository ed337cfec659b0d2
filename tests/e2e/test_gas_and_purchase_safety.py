"""Nobody but an allowed party makes the relayer spend gas, and an authorization buys only
the purchase it was signed for (issue 8, items 2 and 3). Real PostgreSQL and anvil."""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any
from uuid import UUID

import httpx
import pytest

from payfirst.adapters.devchain import ANVIL_KEYS, send_transaction
from payfirst.adapters.evm_chain import EvmChain
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.client.signing import Payer
from payfirst.domain.statuses import PaymentStatus
from payfirst.evm import abi, calls
from payfirst.x402 import PaymentPayloadV2, wire
from tests.e2e.harness import SELLER, SETTLE_PAY_TO, Harness, request_v2, requirements_v2
from tests.fixtures.store import fetch_raw

STRANGER = "0x000000000000000000000000000000000000dEaD"


def fresh_payer() -> Payer:
    """A key that holds nothing on chain."""
    return Payer("0x" + secrets.token_hex(32))


def settle_body(h: Harness, payer: Payer, *, pay_to: str, amount: int) -> dict[str, Any]:
    return request_v2(payer, requirements_v2(h, amount, pay_to=pay_to))


async def relayer_nonce(h: Harness) -> int:
    return await h.rpc.get_transaction_count(h.deployment.relayer_address, "latest")


async def payment_rows(h: Harness) -> int:
    return int((await fetch_raw(h.store, "SELECT count(*) AS n FROM payment_queue"))[0]["n"])


@pytest.mark.parametrize(
    ("pay_to", "amount", "why"),
    [
        pytest.param(STRANGER, 25_000, "does not settle payments to", id="unlisted-pay-to"),
        pytest.param(SELLER, 0, "below the minimum", id="zero-value"),
        pytest.param(SELLER, 999, "below the minimum", id="dust"),
    ],
)
async def test_settle_and_verify_refuse_what_the_operator_did_not_allow(
    harness: Harness, pay_to: str, amount: int, why: str
) -> None:
    """Before: a value-0 authorization from an unfunded key to any payTo was queued, sent
    and answered success:true, each costing relayer gas."""
    nonce_before = await relayer_nonce(harness)
    body = settle_body(harness, fresh_payer(), pay_to=pay_to, amount=amount)
    verified = (await harness.http.post("/verify", json=body)).json()
    assert verified["isValid"] is False
    assert verified["invalidReason"] == "invalid_payment_requirements"
    settled = (await harness.http.post("/settle", json=body)).json()
    assert settled["success"] is False
    assert settled["errorReason"] == "invalid_payment_requirements"
    assert why in settled["errorMessage"]
    assert await payment_rows(harness) == 0
    assert await relayer_nonce(harness) == nonce_before


async def test_settle_refuses_a_payment_to_a_token_sold_by_mint(harness: Harness) -> None:
    """Before: settling an authorization paying the token contract, then sending the same
    header to the mint route, answered 202 with the settle payment's id and minted nothing.
    Now /settle refuses it, and the buyer's header still buys its mints."""
    d = harness.deployment
    payer = harness.payer(3)
    name, header = await harness.payment_header(payer, quantity=1)
    payload = PaymentPayloadV2.model_validate_json(base64.b64decode(header).decode())
    requirements = payload.accepted
    body = {
        "x402Version": 2,
        "paymentPayload": wire(payload),
        "paymentRequirements": wire(requirements),
    }
    settled = (await harness.http.post("/settle", json=body)).json()
    assert settled["success"] is False
    assert settled["errorReason"] == "invalid_payment_requirements"
    assert f"/api/mint/{d.token}" in settled["errorMessage"]
    assert await payment_rows(harness) == 0
    bought = await harness.http.post(
        f"/api/mint/{d.token}", json={"quantity": 1}, headers={name: header}
    )
    assert bought.status_code == 202
    await harness.settled()
    items = await harness.store.get_mint_items(UUID(bought.json()["paymentQueueId"]))
    assert len(items) == 1


async def test_a_header_matches_only_the_same_purchase(harness: Harness) -> None:
    """The same header on the older route is the same purchase: the same payment id, one
    payment. (A header re-used for ANOTHER purchase is refused by the store: see
    test_same_authorization_for_another_purchase_is_rejected.)"""
    d = harness.deployment
    name, header = await harness.payment_header(harness.payer(4), quantity=1)
    first = await harness.http.post(
        f"/api/mint/{d.token}", json={"quantity": 1}, headers={name: header}
    )
    again = await harness.http.post(
        "/api/x402-batch-mint",
        json={"tokenAddress": d.token, "quantity": 1},
        headers={name: header},
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["paymentQueueId"] == again.json()["paymentQueueId"]
    await harness.settled()


async def test_a_payer_who_cannot_pay_never_costs_a_transaction(harness: Harness) -> None:
    """Before: a payer with no USDC got 202, held supply until its tx reverted, and cost a
    tx. Now the sender reads the payers' balances (one batch per tick) before signing."""
    d = harness.deployment
    nonce_before = await relayer_nonce(harness)
    broke = fresh_payer()
    answer = await harness.buy(broke, quantity=3)
    assert answer.status_code == 202
    await harness.settled()
    payment = await harness.store.get_payment(UUID(answer.json()["paymentQueueId"]))
    assert payment is not None
    assert payment.status is PaymentStatus.FAILED
    assert (payment.error or "").startswith("insufficient_funds")
    assert payment.tx_hash is None
    token = await harness.store.get_token(d.token)
    assert token is not None and token.reserved_count == 0
    assert await relayer_nonce(harness) == nonce_before


async def test_balance_is_counted_across_a_payers_queued_payments(harness: Harness) -> None:
    """A payer funded for one mint queues two: one completes, the other fails without a tx
    of its own (whichever the sender saw second)."""
    d = harness.deployment
    payer = fresh_payer()
    funding = abi.encode_call("transfer(address,uint256)", [payer.address, d.price_per_mint])
    tx = await send_transaction(harness.rpc, ANVIL_KEYS[6], d.usdc, funding, gas=100_000)
    await harness.rpc.wait_for_receipt(tx)
    await harness.worker.stop()  # both queued before the sender looks
    nonce_before = await relayer_nonce(harness)
    answers = [await harness.buy(payer) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202]
    await harness.worker.start()
    harness.worker.payment_queued.set()
    await harness.settled()
    payments = [await harness.store.get_payment(UUID(a.json()["paymentQueueId"])) for a in answers]
    statuses = sorted(p.status.value for p in payments if p is not None)
    assert statuses == ["completed", "failed"]
    assert await harness.usdc_balance(payer.address) == 0
    # One settlement tx and one mint tx: the failed payment cost nothing.
    assert await relayer_nonce(harness) - nonce_before == 2


async def test_accept_paths_are_rate_limited_per_payer_and_per_client(harness: Harness) -> None:
    d = harness.deployment
    app = build_app(
        Services(
            store=harness.store,
            chain=EvmChain(harness.rpc),
            chain_id=31337,
            settle_pay_to=SETTLE_PAY_TO,
            rate_limit_per_payer=2,
            rate_limit_per_client=3,
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        payer = harness.payer(7)
        answers = []
        for _ in range(3):
            name, header = await harness.payment_header(payer)
            answers.append(
                await http.post(
                    f"/api/mint/{d.token}", json={"quantity": 1}, headers={name: header}
                )
            )
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert answers[2].json()["error"] == "rate_limited"
        assert int(answers[2].headers["Retry-After"]) >= 1
        # Three requests of this client so far: a fourth, even without payment, is refused.
        refused = await http.post(f"/api/mint/{d.token}", json={"quantity": 1})
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
    rows = await fetch_raw(harness.store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 2
    await harness.settled()


async def test_an_authorization_someone_else_submitted_completes_the_payment(
    harness: Harness,
) -> None:
    """Anyone holding the buyer's header may submit it on chain first: the money moves, the
    payer's balance is gone, and the payment must still be completed (by that tx) with its
    mints, never failed insufficient_funds."""
    d = harness.deployment
    payer = fresh_payer()
    funding = abi.encode_call("transfer(address,uint256)", [payer.address, d.price_per_mint])
    await harness.rpc.wait_for_receipt(
        await send_transaction(harness.rpc, ANVIL_KEYS[6], d.usdc, funding, gas=100_000)
    )
    await harness.worker.stop()
    answer = await harness.buy(payer)
    assert answer.status_code == 202
    payment_id = UUID(answer.json()["paymentQueueId"])
    payment = await harness.store.get_payment(payment_id)
    assert payment is not None
    front_run = calls.transfer_with_authorization_vrs(payment.authorization)
    await harness.rpc.wait_for_receipt(
        await send_transaction(harness.rpc, ANVIL_KEYS[8], d.usdc, front_run, gas=200_000)
    )
    assert await harness.usdc_balance(payer.address) == 0
    await harness.worker.start()
    harness.worker.payment_queued.set()
    await harness.settled()
    payment = await harness.store.get_payment(payment_id)
    assert payment is not None and payment.status is PaymentStatus.COMPLETED, payment
    assert len(await harness.store.get_mint_items(payment_id)) == 1


async def test_a_payment_the_balance_covers_only_if_one_in_flight_fails_waits(
    harness: Harness,
) -> None:
    """A payer funded for one payment: the second, queued while the first is sent but not
    mined, is neither sent (it would revert) nor failed until the first is decided."""
    d = harness.deployment
    payer = fresh_payer()
    funding = abi.encode_call("transfer(address,uint256)", [payer.address, d.price_per_mint])
    await harness.rpc.wait_for_receipt(
        await send_transaction(harness.rpc, ANVIL_KEYS[6], d.usdc, funding, gas=100_000)
    )
    nonce_before = await relayer_nonce(harness)
    await harness.rpc.call("evm_setIntervalMining", 0)  # nothing is mined meanwhile
    await harness.rpc.call("evm_setAutomine", False)
    try:
        first = await harness.buy(payer)
        first_id = UUID(first.json()["paymentQueueId"])
        await until_status(harness, first_id, PaymentStatus.SENT)
        second = await harness.buy(payer)
        second_id = UUID(second.json()["paymentQueueId"])
        # The sender has looked at the second payment at least once: it stays pending.
        harness.worker.payment_queued.set()
        await harness.worker.sender.run_once(50)
        waiting = await harness.store.get_payment(second_id)
        assert waiting is not None and waiting.status is PaymentStatus.PENDING
    finally:
        await harness.rpc.call("evm_setAutomine", True)
        await harness.rpc.call("evm_setIntervalMining", 1)  # the head moves on to depth
    await harness.rpc.call("evm_mine")
    await harness.settled()
    done = await harness.store.get_payment(first_id)
    refused = await harness.store.get_payment(second_id)
    assert done is not None and done.status is PaymentStatus.COMPLETED
    assert refused is not None and refused.status is PaymentStatus.FAILED
    assert (refused.error or "").startswith("insufficient_funds")
    assert refused.tx_hash is None
    assert await relayer_nonce(harness) - nonce_before == 2  # one settlement, one mint


async def until_status(harness: Harness, payment_id: UUID, status: PaymentStatus) -> None:
    async with asyncio.timeout(30):
        while True:
            payment = await harness.store.get_payment(payment_id)
            if payment is not None and payment.status is status:
                return
            await asyncio.sleep(0.05)
