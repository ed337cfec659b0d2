"""Header codec, wire models, the mint requirements builder and network names."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from x402.http.utils import decode_payment_required_header, decode_payment_signature_header
from x402.schemas import PaymentRequired as SdkPaymentRequired
from x402.schemas import PaymentRequirementsV1 as SdkPaymentRequirementsV1
from x402.schemas import SettleResponse as SdkSettleResponse
from x402.schemas import VerifyResponse as SdkVerifyResponse

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Token
from payfirst.domain.reasons import Reason
from payfirst.x402 import (
    PaymentPayloadV1,
    PaymentPayloadV2,
    PaymentRequiredV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    SettleResponse,
    VerifyRequest,
    VerifyResponse,
    caip2,
    chain_id_of,
    decode_header,
    encode_header,
    is_known_network,
    mint_requirements_for,
    mint_requirements_v1,
    mint_requirements_v2,
    parse_payment_header,
    payment_required,
    v1_network,
    wire,
)
from tests.unit.test_exact_evm import spec_payload_dict, spec_payload_v2

TOKEN = Token(
    address="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    chain_id=31337,
    name="Demo Token",
    symbol="DEMO",
    payment_asset="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    asset_name="USD Coin",
    asset_version="2",
    asset_decimals=6,
    price_per_mint=1_500_000,
    mint_amount=10**21,
    max_mint_count=10_000,
)
RESOURCE = "http://localhost:8402/api/mint/0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


def b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


# --- codec --------------------------------------------------------------------------------


def test_v1_header_round_trip() -> None:
    header = b64(spec_payload_dict())
    payload = parse_payment_header({"X-PAYMENT": header})
    assert isinstance(payload, PaymentPayloadV1)
    assert payload.network == "base-sepolia"
    assert decode_header(encode_header(payload)) == spec_payload_dict()


def test_v2_header_round_trip_and_sdk_agrees() -> None:
    original = spec_payload_v2()
    header = encode_header(original)
    payload = parse_payment_header({"Payment-Signature": header})
    assert payload == original
    assert isinstance(payload, PaymentPayloadV2)
    sdk = decode_payment_signature_header(header)
    assert sdk.model_dump(by_alias=True, exclude_none=True) == wire(original)


@pytest.mark.parametrize("name", ["x-payment", "X-Payment", "X-PAYMENT", "x-PaYmEnT"])
def test_header_names_are_case_insensitive(name: str) -> None:
    assert isinstance(parse_payment_header({name: b64(spec_payload_dict())}), PaymentPayloadV1)


def test_no_payment_header_is_none() -> None:
    assert parse_payment_header({"content-type": "application/json"}) is None
    assert parse_payment_header({}) is None


def test_v2_header_wins_when_both_are_sent() -> None:
    headers = {
        "X-PAYMENT": b64(spec_payload_dict()),
        "PAYMENT-SIGNATURE": encode_header(spec_payload_v2()),
    }
    assert isinstance(parse_payment_header(headers), PaymentPayloadV2)


def test_missing_padding_and_urlsafe_alphabet_are_tolerated() -> None:
    header = b64(spec_payload_dict()).rstrip("=")
    assert isinstance(parse_payment_header({"X-PAYMENT": header}), PaymentPayloadV1)
    data = {"k": "\xff\xfe>>>???"}
    urlsafe = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    assert decode_header(urlsafe) == data


def test_version_comes_from_the_payload_and_defaults_from_the_header_name() -> None:
    v1_without_version = {k: v for k, v in spec_payload_dict().items() if k != "x402Version"}
    assert isinstance(
        parse_payment_header({"X-PAYMENT": b64(v1_without_version)}), PaymentPayloadV1
    )
    assert isinstance(
        parse_payment_header({"X-PAYMENT": encode_header(spec_payload_v2())}), PaymentPayloadV2
    )


GARBAGE = {
    "empty": "",
    "spaces": "   ",
    "not base64": "%%%not-base64%%%",
    "non-ascii": "éé",
    "base64 of text": base64.b64encode(b"hello world").decode(),
    "base64 of binary": base64.b64encode(b"\xff\xfe\x00").decode(),
    "json array": b64([1, 2, 3]),
    "json string": b64("exact"),
    "json null": b64(None),
    "empty object": b64({}),
    "v1 missing payload": b64({"x402Version": 1, "scheme": "exact", "network": "base"}),
    "v1 payload not object": b64({**spec_payload_dict(), "payload": "sig"}),
    "v1 scheme not string": b64({**spec_payload_dict(), "scheme": 7}),
    "v2 missing accepted": b64({"x402Version": 2, "payload": {}}),
    "v2 accepted incomplete": b64(
        {"x402Version": 2, "accepted": {"scheme": "exact"}, "payload": {}}
    ),
    "too long": "A" * 20_000,
}


@pytest.mark.parametrize("value", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize("name", ["X-PAYMENT", "PAYMENT-SIGNATURE"])
def test_garbage_header_is_400_invalid_payload(name: str, value: str) -> None:
    with pytest.raises(PaymentRejected) as info:
        parse_payment_header({name: value})
    assert info.value.reason == Reason.INVALID_PAYLOAD
    assert info.value.message != Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("version", [0, 3, "1", None, True, 1.5])
def test_unknown_x402_version_is_400(version: Any) -> None:
    with pytest.raises(PaymentRejected) as info:
        parse_payment_header({"X-PAYMENT": b64({**spec_payload_dict(), "x402Version": version})})
    assert info.value.reason == Reason.INVALID_X402_VERSION


def test_decode_header_rejects_garbage_with_400() -> None:
    with pytest.raises(PaymentRejected) as info:
        decode_header("@@@")
    assert info.value.reason == Reason.INVALID_PAYLOAD


# --- requirements builder -------------------------------------------------------------------


@pytest.mark.parametrize("quantity", [1, 2, 7, 100])
def test_requirements_amounts(quantity: int) -> None:
    v1 = mint_requirements_v1(TOKEN, quantity, RESOURCE)
    v2 = mint_requirements_v2(TOKEN, quantity, RESOURCE)
    assert v1.max_amount_required == v2.amount == str(1_500_000 * quantity)


def test_requirements_fields() -> None:
    v1 = mint_requirements_v1(TOKEN, 2, RESOURCE)
    assert v1.scheme == "exact"
    assert v1.network == "eip155:31337"  # v1 has no name for the local chain
    assert v1.pay_to == TOKEN.address
    assert v1.asset == TOKEN.payment_asset
    assert v1.extra == {"name": "USD Coin", "version": "2"}
    assert v1.max_timeout_seconds == 300
    assert v1.resource == RESOURCE
    v2 = mint_requirements_v2(TOKEN, 2, RESOURCE)
    assert (v2.scheme, v2.network, v2.pay_to, v2.asset) == (
        "exact",
        "eip155:31337",
        TOKEN.address,
        TOKEN.payment_asset,
    )
    assert v2.extra == {"name": "USD Coin", "version": "2"}
    assert v2.max_timeout_seconds == 300


def test_requirements_on_a_named_v1_network() -> None:
    base = dataclasses.replace(
        TOKEN, chain_id=8453, payment_asset="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    )
    assert mint_requirements_v1(base, 1, RESOURCE).network == "base"
    assert mint_requirements_v2(base, 1, RESOURCE).network == "eip155:8453"


@pytest.mark.parametrize("quantity", [0, -1, True])
def test_requirements_refuse_a_bad_quantity(quantity: Any) -> None:
    with pytest.raises(ValueError, match="quantity"):
        mint_requirements_v1(TOKEN, quantity, RESOURCE)


def test_requirements_for_picks_the_payload_version() -> None:
    v1 = PaymentPayloadV1.model_validate(spec_payload_dict())
    assert isinstance(mint_requirements_for(v1, TOKEN, 1, RESOURCE), PaymentRequirementsV1)
    assert isinstance(
        mint_requirements_for(spec_payload_v2(), TOKEN, 1, RESOURCE), PaymentRequirementsV2
    )


def test_payment_required_body_and_header() -> None:
    body, header = payment_required(TOKEN, 3, RESOURCE, "X-PAYMENT header is required")
    assert body["x402Version"] == 1
    assert body["error"] == "X-PAYMENT header is required"
    [accept] = body["accepts"]
    assert accept["maxAmountRequired"] == "4500000"
    assert accept["payTo"] == TOKEN.address
    assert accept["mimeType"] == "application/json"
    assert "outputSchema" not in accept  # no nulls on the wire
    SdkPaymentRequirementsV1.model_validate(accept)
    json.dumps(body)

    decoded = decode_header(header)
    assert decoded["x402Version"] == 2
    assert decoded["resource"]["url"] == RESOURCE
    assert decoded["accepts"][0]["amount"] == "4500000"
    assert decoded["accepts"][0]["network"] == "eip155:31337"
    assert PaymentRequiredV2.model_validate(decoded).accepts[0].pay_to == TOKEN.address
    sdk = decode_payment_required_header(header)
    assert isinstance(sdk, SdkPaymentRequired)
    assert sdk.accepts[0].amount == "4500000"


# --- models -------------------------------------------------------------------------------


def test_responses_match_the_sdk_wire_form() -> None:
    ok = VerifyResponse(is_valid=True, payer="0x857b06519E91e3A54538791bDbb0E22373e36b66")
    assert wire(ok) == {"isValid": True, "payer": "0x857b06519E91e3A54538791bDbb0E22373e36b66"}
    assert SdkVerifyResponse.model_validate(wire(ok)).is_valid
    bad = VerifyResponse(is_valid=False, invalid_reason=Reason.INVALID_EXACT_EVM_PAYLOAD_SIGNATURE)
    assert wire(bad)["invalidReason"] == "invalid_exact_evm_payload_signature"
    settled = SettleResponse(success=True, transaction="0x" + "ab" * 32, network="eip155:31337")
    assert wire(settled) == {
        "success": True,
        "transaction": "0x" + "ab" * 32,
        "network": "eip155:31337",
    }
    assert SdkSettleResponse.model_validate(wire(settled)).success


def test_verify_request_picks_payload_and_requirements_versions() -> None:
    v2 = VerifyRequest.model_validate(
        {
            "x402Version": 2,
            "paymentPayload": wire(spec_payload_v2()),
            "paymentRequirements": wire(spec_payload_v2().accepted),
        }
    )
    assert isinstance(v2.payment_payload, PaymentPayloadV2)
    assert isinstance(v2.payment_requirements, PaymentRequirementsV2)
    v1 = VerifyRequest.model_validate(
        {
            "x402Version": 1,
            "paymentPayload": spec_payload_dict(),
            "paymentRequirements": wire(mint_requirements_v1(TOKEN, 1, RESOURCE)),
        }
    )
    assert isinstance(v1.payment_payload, PaymentPayloadV1)
    assert isinstance(v1.payment_requirements, PaymentRequirementsV1)


# --- networks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "chain_id"),
    [
        ("base", 8453),
        ("base-sepolia", 84532),
        ("avalanche-fuji", 43113),
        ("polygon", 137),
        ("eip155:8453", 8453),
        ("eip155:84532", 84532),
        ("eip155:31337", 31337),
    ],
)
def test_chain_id_of(network: str, chain_id: int) -> None:
    assert chain_id_of(network) == chain_id
    assert is_known_network(network)


@pytest.mark.parametrize(
    "network",
    ["", "mainnet", "eip155:", "eip155:x", "eip155:-1", "eip155:0", "eip155:08453", "solana:abc"],
)
def test_unknown_networks(network: str) -> None:
    with pytest.raises(ValueError, match="unknown network"):
        chain_id_of(network)
    assert not is_known_network(network)


def test_v1_names_and_caip2() -> None:
    assert caip2(8453) == "eip155:8453"
    assert v1_network(8453) == "base"
    assert v1_network(84532) == "base-sepolia"
    assert v1_network(31337) == "eip155:31337"
    for name in ("base", "base-sepolia", "avalanche", "polygon-amoy"):
        assert v1_network(chain_id_of(name)) == name
