"""payfirst as an x402 facilitator: /supported, /verify and /settle over real PostgreSQL
and anvil; /settle answers once the payment is confirmed and is never sent twice."""

from __future__ import annotations

import time

import httpx

from payfirst.adapters.devchain import ANVIL_KEYS, send_transaction
from payfirst.adapters.evm_chain import EvmChain
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.client.signing import Payer
from payfirst.evm import abi
from payfirst.x402 import (
    PaymentPayloadV1,
    PaymentRequirementsV1,
    wire,
)
from tests.e2e.harness import (
    AUTHORIZATION_USED_TOPIC,
    SELLER,
    SETTLE_PAY_TO,
    Harness,
    request_v2,
    requirements_v2,
)
from tests.e2e.harness import (
    SETTLE_PRICE as PRICE,
)
from tests.fixtures.store import fetch_raw


async def test_supported_lists_the_chain_and_signers(harness: Harness) -> None:
    body = (await harness.http.get("/supported")).json()
    assert {"x402Version": 2, "scheme": "exact", "network": "eip155:31337"} in body["kinds"]
    assert body["signers"]["eip155:*"] == [harness.worker.broadcaster.relayer.address]
    assert "payment-identifier" in body["extensions"]


async def test_verify_valid_and_invalid(harness: Harness) -> None:
    payer = harness.payer(1)
    body = request_v2(payer, requirements_v2(harness))
    answer = await harness.http.post("/verify", json=body)
    assert answer.status_code == 200
    assert answer.json() == {"isValid": True, "payer": payer.address}
    # Signed for another amount than the requirements ask.
    cheap = request_v2(payer, requirements_v2(harness, amount=1))
    cheap["paymentRequirements"] = wire(requirements_v2(harness))
    cheap["paymentPayload"]["accepted"] = wire(requirements_v2(harness))
    invalid = (await harness.http.post("/verify", json=cheap)).json()
    assert invalid["isValid"] is False
    assert invalid["invalidReason"] == "invalid_exact_evm_payload_authorization_value_mismatch"
    malformed = await harness.http.post("/verify", content=b'{"x402Version": 2}')
    assert malformed.status_code == 400
    rows = await fetch_raw(harness.store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 0  # verifying queues nothing


async def test_verify_knows_balance_and_unknown_assets(harness: Harness) -> None:
    broke = Payer("0x" + "11" * 32)
    body = request_v2(broke, requirements_v2(harness))
    answer = (await harness.http.post("/verify", json=body)).json()
    assert answer == {
        "isValid": False,
        "invalidReason": "insufficient_funds",
        "invalidMessage": "the payer's balance is too low",
        "payer": broke.address,
    }
    other_asset = requirements_v2(harness).model_copy(update={"asset": SELLER})
    body = request_v2(harness.payer(1), other_asset)
    answer = (await harness.http.post("/verify", json=body)).json()
    assert answer["invalidReason"] == "invalid_payment_requirements"


async def test_settle_confirms_on_chain_and_is_never_sent_twice(harness: Harness) -> None:
    payer = harness.payer(2)
    before = await harness.usdc_balance(payer.address)
    body = request_v2(payer, requirements_v2(harness))
    first = await harness.http.post("/settle", json=body)
    assert first.status_code == 200
    settled = first.json()
    assert settled["success"] is True, settled
    assert settled["payer"] == payer.address
    assert settled["network"] == "eip155:31337"
    receipt = await harness.rpc.get_transaction_receipt(settled["transaction"])
    assert receipt is not None and int(receipt["status"], 16) == 1
    assert await harness.usdc_balance(payer.address) == before - PRICE
    assert await harness.usdc_balance(SELLER) == PRICE

    again = (await harness.http.post("/settle", json=body)).json()
    assert again == settled
    assert await harness.usdc_balance(payer.address) == before - PRICE
    rows = await fetch_raw(harness.store, "SELECT payment_type, status FROM payment_queue")
    assert rows == [{"payment_type": "settle", "status": "completed"}]
    nonce = body["paymentPayload"]["payload"]["authorization"]["nonce"]
    logs = await harness.rpc.call(
        "eth_getLogs",
        {
            "address": harness.deployment.usdc,
            "fromBlock": "0x0",
            "toBlock": "latest",
            "topics": [AUTHORIZATION_USED_TOPIC, None, nonce],
        },
    )
    assert len(logs) == 1


async def test_settle_v1_body(harness: Harness) -> None:
    payer = harness.payer(3)
    req = PaymentRequirementsV1(
        scheme="exact",
        network="eip155:31337",
        max_amount_required=str(PRICE),
        resource="http://127.0.0.1/report",
        pay_to=SELLER,
        max_timeout_seconds=120,
        asset=harness.deployment.usdc,
        extra={"name": "USDC", "version": "2"},
    )
    payload = PaymentPayloadV1(scheme="exact", network="eip155:31337", payload=payer.authorize(req))
    body = {"x402Version": 1, "paymentPayload": wire(payload), "paymentRequirements": wire(req)}
    settled = (await harness.http.post("/settle", json=body)).json()
    assert settled["success"] is True, settled


async def test_settle_past_the_timeout_is_pending_then_final(harness: Harness) -> None:
    await harness.worker.stop()
    impatient = build_app(
        Services(
            store=harness.store,
            chain=EvmChain(harness.rpc),
            chain_id=31337,
            settle_timeout_s=0.3,
            settle_pay_to=SETTLE_PAY_TO,
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=impatient), base_url="http://127.0.0.1"
    ) as http:
        body = request_v2(harness.payer(4), requirements_v2(harness))
        started = time.monotonic()
        pending = (await http.post("/settle", json=body)).json()
        assert time.monotonic() - started < 5
        assert pending["success"] is False
        assert pending["errorReason"] == "settlement_pending"
        await harness.worker.start()
        harness.worker.payment_queued.set()
        await harness.settled()
        final = (await http.post("/settle", json=body)).json()
    assert final["success"] is True
    assert final["transaction"]
    rows = await fetch_raw(harness.store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 1


async def test_settle_of_a_failed_payment_reports_the_failure(harness: Harness) -> None:
    payer = harness.payer(5)
    await harness.worker.stop()
    body = request_v2(payer, requirements_v2(harness))
    impatient = build_app(
        Services(
            store=harness.store,
            chain=EvmChain(harness.rpc),
            chain_id=31337,
            settle_timeout_s=0.1,
            settle_pay_to=SETTLE_PAY_TO,
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=impatient), base_url="http://127.0.0.1"
    ) as http:
        assert (await http.post("/settle", json=body)).json()["errorReason"] == "settlement_pending"
        # The payer spends everything before the settlement goes out.
        balance = await harness.usdc_balance(payer.address)
        data = abi.encode_call("transfer(address,uint256)", [SELLER, balance])
        tx = await send_transaction(
            harness.rpc, ANVIL_KEYS[5], harness.deployment.usdc, data, gas=100_000
        )
        await harness.rpc.wait_for_receipt(tx)
        await harness.worker.start()
        harness.worker.payment_queued.set()
        await harness.settled()
        final = (await http.post("/settle", json=body)).json()
    assert final["success"] is False
    # The sender saw the empty balance before sending: refused without spending gas.
    assert final["errorReason"] == "insufficient_funds"


async def test_payment_identifier_same_payload_same_result_other_payload_409(
    harness: Harness,
) -> None:
    payer = harness.payer(6)
    extension = {"payment-identifier": {"info": {"required": False, "id": "order_0001_abcdefgh"}}}
    body = request_v2(payer, requirements_v2(harness))
    body["paymentPayload"]["extensions"] = extension
    first = (await harness.http.post("/settle", json=body)).json()
    assert first["success"] is True
    assert (await harness.http.post("/settle", json=body)).json() == first
    other = request_v2(payer, requirements_v2(harness))
    other["paymentPayload"]["extensions"] = extension
    clash = await harness.http.post("/settle", json=other)
    assert clash.status_code == 409
    assert clash.json()["error"] == "idempotency_key_reused"
    rows = await fetch_raw(harness.store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 1


async def test_idempotency_key_on_the_mint_endpoint(harness: Harness) -> None:
    d = harness.deployment
    payer = harness.payer(7)
    name, value = await harness.payment_header(payer, 1)
    key = {"Idempotency-Key": "checkout-42"}
    first = await harness.http.post(
        f"/api/mint/{d.token}", json={"quantity": 1}, headers={name: value, **key}
    )
    again = await harness.http.post(
        f"/api/mint/{d.token}", json={"quantity": 1}, headers={name: value, **key}
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["paymentQueueId"] == again.json()["paymentQueueId"]
    name, other = await harness.payment_header(payer, 1)
    clash = await harness.http.post(
        f"/api/mint/{d.token}", json={"quantity": 1}, headers={name: other, **key}
    )
    assert clash.status_code == 409
    assert clash.json()["error"] == "idempotency_key_reused"
    bad = await harness.http.post(
        f"/api/mint/{d.token}",
        json={"quantity": 1},
        headers={name: other, "Idempotency-Key": "no spaces"},
    )
    assert bad.status_code == 400
    await harness.settled()
    rows = await fetch_raw(harness.store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 1


async def test_verify_rejects_a_payload_already_submitted(harness: Harness) -> None:
    """A resource server verifies before serving: a replayed header must not verify,
    while /settle of it keeps answering the first settlement's result."""
    body = request_v2(harness.payer(8), requirements_v2(harness))
    assert (await harness.http.post("/verify", json=body)).json()["isValid"] is True
    settled = (await harness.http.post("/settle", json=body)).json()
    assert settled["success"] is True
    replay = (await harness.http.post("/verify", json=body)).json()
    assert replay["isValid"] is False
    assert replay["invalidReason"] == "invalid_exact_evm_nonce_already_used"
    assert (await harness.http.post("/settle", json=body)).json() == settled
