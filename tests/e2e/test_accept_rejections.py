"""Every bad request gets its status code and x402 reason, and writes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from payfirst.evm.abi import selector
from payfirst.x402 import PaymentPayloadV2, PaymentRequiredV2, decode_header, encode_header, wire
from tests.e2e.harness import Harness
from tests.fixtures.store import fetch_raw


async def nothing_written(harness: Harness) -> None:
    rows = await fetch_raw(
        harness.store,
        "SELECT (SELECT count(*) FROM payment_queue) AS payments,"
        " (SELECT count(*) FROM mint_queue) AS mints,"
        " (SELECT sum(reserved_count) FROM tokens) AS reserved",
    )
    assert rows == [{"payments": 0, "mints": 0, "reserved": 0}]


async def tampered_header(
    harness: Harness, change: Callable[[dict[str, Any]], None], quantity: int = 1
) -> str:
    """A v2 payment whose signed authorization was built from altered requirements."""
    d = harness.deployment
    answer = await harness.http.post(f"/api/mint/{d.token}", json={"quantity": quantity})
    required = PaymentRequiredV2.model_validate(decode_header(answer.headers["PAYMENT-REQUIRED"]))
    accepted = required.accepts[0]
    altered = wire(accepted)
    change(altered)
    signed = harness.payer(1).authorize(type(accepted).model_validate(altered))
    payload = PaymentPayloadV2(resource=required.resource, accepted=accepted, payload=signed)
    return encode_header(wire(payload))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(requirements: dict[str, Any]) -> None:
        requirements[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            _set("payTo", "0x000000000000000000000000000000000000dEaD"),
            "invalid_exact_evm_payload_recipient_mismatch",
        ),
        (_set("amount", "1"), "invalid_exact_evm_payload_authorization_value_mismatch"),
        (
            _set("extra", {"name": "USD Coin", "version": "2"}),
            "invalid_exact_evm_payload_signature",
        ),
        (_set("maxTimeoutSeconds", 3), "invalid_exact_evm_payload_authorization_valid_before"),
    ],
)
async def test_payment_failing_verification_is_402_with_reason(
    harness: Harness, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    header = await tampered_header(harness, change)
    answer = await harness.http.post(
        f"/api/mint/{harness.deployment.token}",
        json={"quantity": 1},
        headers={"PAYMENT-SIGNATURE": header},
    )
    assert answer.status_code == 402
    assert answer.json()["error"] == reason
    assert "PAYMENT-REQUIRED" in answer.headers
    await nothing_written(harness)


async def test_not_yet_valid_authorization_is_402(harness: Harness) -> None:
    d = harness.deployment
    answer = await harness.http.post(f"/api/mint/{d.token}", json={"quantity": 1})
    required = PaymentRequiredV2.model_validate(decode_header(answer.headers["PAYMENT-REQUIRED"]))
    future = int(time.time()) + 3600
    signed = harness.payer(1).authorize(required.accepts[0], now=future)
    header = encode_header(
        wire(
            PaymentPayloadV2(
                resource=required.resource, accepted=required.accepts[0], payload=signed
            )
        )
    )
    answer = await harness.http.post(
        f"/api/mint/{d.token}", json={"quantity": 1}, headers={"PAYMENT-SIGNATURE": header}
    )
    assert answer.status_code == 402
    assert answer.json()["error"] == "invalid_exact_evm_payload_authorization_valid_after"
    await nothing_written(harness)


async def test_payment_for_another_quantity_is_a_value_mismatch(harness: Harness) -> None:
    header = await harness.payment_header(harness.payer(1), 1)
    answer = await harness.http.post(
        f"/api/mint/{harness.deployment.token}", json={"quantity": 2}, headers=[header]
    )
    assert answer.status_code == 402
    assert answer.json()["error"] == "invalid_exact_evm_payload_authorization_value_mismatch"
    await nothing_written(harness)


@pytest.mark.parametrize(
    "header",
    [
        {"X-PAYMENT": "not base64 at all!!"},
        {"X-PAYMENT": base64.b64encode(b"{not json").decode()},
        {"PAYMENT-SIGNATURE": base64.b64encode(json.dumps({"x402Version": 2}).encode()).decode()},
        {
            "X-PAYMENT": base64.b64encode(
                json.dumps(
                    {
                        "x402Version": 1,
                        "scheme": "exact",
                        "network": "eip155:31337",
                        "payload": {"signature": "0x12", "authorization": {}},
                    }
                ).encode()
            ).decode()
        },
    ],
)
async def test_malformed_header_is_400(harness: Harness, header: dict[str, str]) -> None:
    answer = await harness.http.post(
        f"/api/mint/{harness.deployment.token}", json={"quantity": 1}, headers=header
    )
    assert answer.status_code == 400
    assert answer.json()["error"] in ("invalid_payload", "invalid_x402_version")
    await nothing_written(harness)


async def test_unknown_token_is_404(harness: Harness) -> None:
    header = await harness.payment_header(harness.payer(1), 1)
    answer = await harness.http.post(
        "/api/mint/0x000000000000000000000000000000000000dEaD",
        json={"quantity": 1},
        headers=[header],
    )
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_token"
    await nothing_written(harness)


@pytest.mark.parametrize("quantity", [0, -3, 101, "1", None])
async def test_bad_quantity_is_400(harness: Harness, quantity: object) -> None:
    header = await harness.payment_header(harness.payer(1), 1)
    answer = await harness.http.post(
        f"/api/mint/{harness.deployment.token}", json={"quantity": quantity}, headers=[header]
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_quantity"
    await nothing_written(harness)


async def test_nonce_reused_with_another_payload_is_409(harness: Harness) -> None:
    d = harness.deployment
    answer = await harness.http.post(f"/api/mint/{d.token}", json={"quantity": 1})
    required = PaymentRequiredV2.model_validate(decode_header(answer.headers["PAYMENT-REQUIRED"]))
    payer = harness.payer(1)
    first = payer.authorize(required.accepts[0])
    nonce = str(first["authorization"]["nonce"])  # type: ignore[index]
    # Same nonce, another validBefore: a different, validly signed authorization.
    second = payer.authorize(required.accepts[0], now=int(time.time()) - 5, nonce=nonce)
    ok = await _post_v2(harness, required, first)
    assert ok.status_code == 202
    clash = await _post_v2(harness, required, second)
    assert clash.status_code == 409
    assert clash.json()["error"] == "invalid_exact_evm_nonce_already_used"
    rows = await fetch_raw(harness.store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 1
    await harness.settled()


async def test_sold_out_is_409_and_racers_never_oversell(harness: Harness) -> None:
    small = await harness.chain.deploy_token(name="Tiny", symbol="TNY", max_mint_count=5)
    token = harness.deployment.to_token()
    await harness.store.upsert_token(replace(token, address=small, max_mint_count=5, name="Tiny"))
    buyers = [harness.payer(i) for i in range(1, 10)]
    headers = [await harness.payment_header(b, 1, token=small) for b in buyers for _ in range(2)]
    answers = await asyncio.gather(
        *(
            harness.http.post(f"/api/mint/{small}", json={"quantity": 1}, headers=[h])
            for h in headers
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] * 5 + [409] * 13
    assert {a.json()["error"] for a in answers if a.status_code == 409} == {"sold_out"}
    await harness.settled(max_wait=60)
    sold = await harness.store.get_token(small)
    assert sold is not None and sold.reserved_count == 5
    raw = await harness.rpc.eth_call(small, "0x" + _selector("mintCount()"))
    assert int.from_bytes(raw, "big") == 5


def _selector(signature: str) -> str:
    return selector(signature).hex()


async def _post_v2(harness: Harness, required: PaymentRequiredV2, signed: dict[str, object]) -> Any:
    header = encode_header(
        wire(
            PaymentPayloadV2(
                resource=required.resource, accepted=required.accepts[0], payload=signed
            )
        )
    )
    return await harness.http.post(
        f"/api/mint/{harness.deployment.token}",
        json={"quantity": 1},
        headers={"PAYMENT-SIGNATURE": header},
    )
