"""payfirst's own hostile cases, beyond what a schema can generate: every field of a valid
signed payment mutated, bad base64, oversized and deep inputs, surrogates, non-integer
amounts, and a header replayed on another route. Each is answered 4xx/402 with an x402
reason, no 5xx, and nothing is queued or sent that the buyer did not sign for."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payfirst.x402 import (
    PaymentPayloadV2,
    decode_header,
    encode_header,
    parse_payment_payload,
    verify_exact_evm,
)
from tests.e2e.harness import Harness
from tests.fixtures.store import fetch_raw

SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


async def rows(h: Harness) -> int:
    return int((await fetch_raw(h.store, "SELECT count(*) AS n FROM payment_queue"))[0]["n"])


async def relayer_nonce(h: Harness) -> int:
    return await h.rpc.get_transaction_count(h.deployment.relayer_address, "latest")


def assert_refused(status: int, body: Any, label: str) -> None:
    assert 400 <= status < 500, (label, status, body)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), (label, body)


async def mint(
    h: Harness, header: str, quantity: int = 1, *, name: str = "PAYMENT-SIGNATURE"
) -> Any:
    return await h.http.post(
        f"/api/mint/{h.deployment.token}", json={"quantity": quantity}, headers={name: header}
    )


def _flip_hex(value: str, index: int) -> str:
    digits = value[2:]
    i = index % len(digits)
    flipped = format(int(digits[i], 16) ^ 0x1, "x")
    return "0x" + digits[:i] + flipped + digits[i + 1 :]


def _bump(value: str) -> str:
    return str(int(value) + 1)


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "value": lambda p: p["payload"]["authorization"].__setitem__(
        "value", _bump(p["payload"]["authorization"]["value"])
    ),
    "value_zero": lambda p: p["payload"]["authorization"].__setitem__("value", "0"),
    "to": lambda p: p["payload"]["authorization"].__setitem__(
        "to", _flip_hex(p["payload"]["authorization"]["to"], 5)
    ),
    "from": lambda p: p["payload"]["authorization"].__setitem__(
        "from", _flip_hex(p["payload"]["authorization"]["from"], 7)
    ),
    "nonce": lambda p: p["payload"]["authorization"].__setitem__(
        "nonce", _flip_hex(p["payload"]["authorization"]["nonce"], 3)
    ),
    "validBefore": lambda p: p["payload"]["authorization"].__setitem__(
        "validBefore", _bump(p["payload"]["authorization"]["validBefore"])
    ),
    "validAfter": lambda p: p["payload"]["authorization"].__setitem__(
        "validAfter", _bump(p["payload"]["authorization"]["validAfter"])
    ),
    "signature_r": lambda p: p["payload"].__setitem__(
        "signature", _flip_hex(p["payload"]["signature"], 10)
    ),
    "signature_s": lambda p: p["payload"].__setitem__(
        "signature", _flip_hex(p["payload"]["signature"], 100)
    ),
    "signature_v": lambda p: p["payload"].__setitem__(
        "signature", p["payload"]["signature"][:-2] + "1d"
    ),
    "signature_short": lambda p: p["payload"].__setitem__(
        "signature", p["payload"]["signature"][:-4]
    ),
    "network": lambda p: p["accepted"].__setitem__("network", "eip155:8453"),
    "scheme": lambda p: p["accepted"].__setitem__("scheme", "upto"),
    "x402Version": lambda p: p.__setitem__("x402Version", 3),
    "x402Version_v1": lambda p: p.__setitem__("x402Version", 1),
    "accepted_amount": lambda p: p["accepted"].__setitem__("amount", "1"),
    "accepted_payTo": lambda p: p["accepted"].__setitem__(
        "payTo", "0x000000000000000000000000000000000000dEaD"
    ),
    "amount_float": lambda p: p["accepted"].__setitem__("amount", "1.0"),
    "authorization_missing": lambda p: p["payload"].pop("authorization"),
    "payload_list": lambda p: p.__setitem__("payload", []),
}


@pytest.mark.parametrize("field", sorted(MUTATIONS))
async def test_each_mutated_field_of_a_signed_payment_is_refused(
    harness: Harness, field: str
) -> None:
    h = harness
    nonce_before = await relayer_nonce(h)
    _, header = await h.payment_header(h.payer(1), 1)
    payload = decode_header(header)
    mutated = copy.deepcopy(payload)
    MUTATIONS[field](mutated)
    answer = await mint(h, encode_header(mutated))
    assert_refused(answer.status_code, answer.json(), field)
    # The same mutation through the facilitator: never valid, never settled.
    body = {"x402Version": 2, "paymentPayload": mutated, "paymentRequirements": payload["accepted"]}
    verified = await h.http.post("/verify", json=body)
    assert verified.status_code < 500, verified.text
    if verified.status_code == 200:
        assert verified.json()["isValid"] is False, (field, verified.json())
    settled = await h.http.post("/settle", json=body)
    assert settled.status_code < 500, settled.text
    if settled.status_code == 200:
        assert settled.json()["success"] is False, (field, settled.json())
    assert await rows(h) == 0
    assert await relayer_nonce(h) == nonce_before
    # The unmutated payment is still valid and unused: the mutations consumed nothing.
    genuine = parse_payment_payload(payload)
    assert isinstance(genuine, PaymentPayloadV2)
    verify_exact_evm(genuine, genuine.accepted, int(time.time()))


_SIGNED: dict[int, str] = {}


@SETTINGS
@given(data=st.data())
async def test_random_bit_flips_in_a_signed_header_are_refused(
    harness: Harness, data: st.DataObject
) -> None:
    h = harness
    if id(h) not in _SIGNED:
        _SIGNED.clear()
        _SIGNED[id(h)] = (await h.payment_header(h.payer(1), 1))[1]
    header = _SIGNED[id(h)]
    raw = base64.b64decode(header)
    bits = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(raw) * 8 - 1), min_size=1, max_size=4)
    )
    flipped = bytearray(raw)
    for bit in bits:
        flipped[bit // 8] ^= 1 << (bit % 8)
    mutated = base64.b64encode(bytes(flipped)).decode()
    answer = await mint(h, mutated)
    if answer.status_code == 202:
        # Only a flip that leaves the signed content intact (the case of a hex digit, JSON
        # whitespace, an ignored field) may buy: then it is the genuine payment.
        def signed(value: str) -> str:
            return json.dumps(decode_header(value)["payload"], sort_keys=True).lower()

        assert signed(mutated) == signed(header)
        return
    assert_refused(answer.status_code, answer.json(), f"flip {bits}")


@pytest.mark.parametrize(
    "header",
    [
        "",
        " ",
        "not base64 at all!!",
        "====",
        "A",
        base64.b64encode(b"\xff\xfe\x00").decode(),
        base64.b64encode(b"[]").decode(),
        base64.b64encode(b"null").decode(),
        base64.b64encode(b'{"x402Version": NaN}').decode(),
        base64.b64encode(b"[" * 5000 + b"]" * 5000).decode(),
        base64.b64encode(b'{"x402Version": 2, "accepted": {"payTo": "\\ud800"}}').decode(),
        "A" * 20_000,
        "\u00e9\u00e9\u00e9",
    ],
)
@pytest.mark.parametrize("name", ["PAYMENT-SIGNATURE", "X-PAYMENT"])
async def test_bad_headers_are_400(harness: Harness, header: str, name: str) -> None:
    h = harness
    answer = await h.http.post(
        f"/api/mint/{h.deployment.token}",
        json={"quantity": 1},
        headers=[(name.encode(), header.encode("latin-1"))],
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] in ("invalid_payload", "invalid_x402_version")
    assert await rows(h) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 40_000 + b"]" * 40_000,
        b'{"quantity":' * 20_000 + b"1" + b"}" * 20_000,
        b'{"quantity": 1, "pad": "' + b"x" * 200_000 + b'"}',
        b'{"quantity": NaN}',
        b'{"quantity": 1e400}',
        b'{"quantity": 1' + b"0" * 5000 + b"}",
        b'{"quantity": "\\ud800"}',
        b'{"tokenAddress": "\\udc00"}',
        b"\x00\x01\x02",
    ],
)
@pytest.mark.parametrize("route", ["mint", "batch", "verify", "settle"])
async def test_hostile_bodies_are_4xx(harness: Harness, body: bytes, route: str) -> None:
    h = harness
    url = {
        "mint": f"/api/mint/{h.deployment.token}",
        "batch": "/api/x402-batch-mint",
        "verify": "/verify",
        "settle": "/settle",
    }[route]
    answer = await h.http.post(url, content=body, headers={"content-type": "application/json"})
    assert_refused(answer.status_code, answer.json(), f"{route} {body[:30]!r}")
    assert answer.status_code in (400, 413)
    assert await rows(h) == 0


@SETTINGS
@given(
    amount=st.text(max_size=90).filter(
        lambda a: not (a.isascii() and a.isdigit() and 0 < len(a) <= 78)
    )
)
async def test_any_non_integer_amount_is_400(harness: Harness, amount: str) -> None:
    h = harness
    requirements = {
        "scheme": "exact",
        "network": "eip155:31337",
        "amount": amount,
        "asset": h.deployment.usdc,
        "payTo": h.deployment.token,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"},
    }
    body = {
        "x402Version": 2,
        "paymentPayload": {
            "x402Version": 2,
            "accepted": requirements,
            "payload": {"signature": "0x" + "11" * 65, "authorization": {}},
        },
        "paymentRequirements": requirements,
    }
    for route in ("/verify", "/settle"):
        answer = await h.http.post(
            route,
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 400, (amount, answer.text)
        assert answer.json()["error"] == "invalid_payload"


async def test_a_header_replayed_across_routes_buys_once(harness: Harness) -> None:
    """A mint header sent to the batch-mint route and to /settle, and sent again: one payment,
    one debit, the mints it paid for, and /settle never succeeds with it."""
    h = harness
    buyer = h.payer(2)
    usdc_before = await h.usdc_balance(buyer.address)
    kind, header = await h.payment_header(buyer, 2)
    first = await h.http.post(
        f"/api/mint/{h.deployment.token}", json={"quantity": 2}, headers={kind: header}
    )
    assert first.status_code == 202, first.text
    payment_id = first.json()["paymentQueueId"]
    payload = decode_header(header)
    settle_body = {
        "x402Version": 2,
        "paymentPayload": payload,
        "paymentRequirements": payload["accepted"],
    }
    answers = [
        await h.http.post(
            "/api/x402-batch-mint",
            json={"tokenAddress": h.deployment.token, "quantity": 2},
            headers={kind: header},
        ),
        await h.http.post("/settle", json=settle_body),
        await h.http.post("/verify", json=settle_body),
        await h.http.post(
            f"/api/mint/{h.deployment.token}", json={"quantity": 1}, headers={kind: header}
        ),
        await h.http.post(
            f"/api/mint/{h.deployment.token}", json={"quantity": 2}, headers={kind: header}
        ),
    ]
    for answer in answers:
        assert answer.status_code < 500, answer.text
        body = answer.json()
        if answer.status_code == 202:
            assert body["paymentQueueId"] == payment_id  # the same purchase, not a new one
        elif answer.status_code == 200:
            assert body.get("success") is not True and body.get("isValid") is not True, body
        else:
            assert isinstance(body.get("error"), str), body
    await h.settled()
    assert await rows(h) == 1
    price = h.deployment.price_per_mint
    assert usdc_before - await h.usdc_balance(buyer.address) == 2 * price
    assert await h.token_balance(buyer.address) == 2 * h.deployment.mint_amount
    items = await h.store.get_mint_items(UUID(payment_id))
    assert len(items) == 2
