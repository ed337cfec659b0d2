"""Exact-EVM verification: the x402 spec's own signature vector, one test per reason
code, and every kind of malformed field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from eth_account import Account
from pydantic import ValidationError

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Authorization
from payfirst.domain.reasons import Reason
from payfirst.x402.exact_evm import (
    SECP256K1_N,
    _domain_separator,
    digest,
    recover_signer,
    verify_exact_evm,
)
from payfirst.x402.models import (
    PaymentPayloadV1,
    PaymentPayloadV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
)
from tests.fixtures.eip712 import TRANSFER_WITH_AUTHORIZATION_TYPE

# --- the x402 spec v1 §5.2 example: a real signature on Base Sepolia USDC ---------------

SPEC_ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
SPEC_PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
SPEC_PAYER = "0x857b06519E91e3A54538791bDbb0E22373e36b66"
SPEC_NONCE = "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
SPEC_SIGNATURE = (
    "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d"
    "6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c"
)
SPEC_VALID_AFTER = 1740672089
SPEC_VALID_BEFORE = 1740672154
SPEC_NOW = 1740672100  # inside the window, with more than 6 s left


def spec_payload_dict() -> dict[str, Any]:
    return {
        "x402Version": 1,
        "scheme": "exact",
        "network": "base-sepolia",
        "payload": {
            "signature": SPEC_SIGNATURE,
            "authorization": {
                "from": SPEC_PAYER,
                "to": SPEC_PAY_TO,
                "value": "10000",
                "validAfter": str(SPEC_VALID_AFTER),
                "validBefore": str(SPEC_VALID_BEFORE),
                "nonce": SPEC_NONCE,
            },
        },
    }


def spec_requirements_v1(name: str = "USDC", **changes: Any) -> PaymentRequirementsV1:
    fields: dict[str, Any] = {
        "scheme": "exact",
        "network": "base-sepolia",
        "maxAmountRequired": "10000",
        "resource": "https://api.example.com/premium-data",
        "description": "Access to premium market data",
        "mimeType": "application/json",
        "payTo": SPEC_PAY_TO,
        "maxTimeoutSeconds": 60,
        "asset": SPEC_ASSET,
        "extra": {"name": name, "version": "2"},
    }
    fields.update(changes)
    return PaymentRequirementsV1.model_validate(fields)


def spec_requirements_v2(name: str = "USDC", **changes: Any) -> PaymentRequirementsV2:
    fields: dict[str, Any] = {
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "10000",
        "asset": SPEC_ASSET,
        "payTo": SPEC_PAY_TO,
        "maxTimeoutSeconds": 60,
        "extra": {"name": name, "version": "2"},
    }
    fields.update(changes)
    return PaymentRequirementsV2.model_validate(fields)


def spec_payload_v2(**accepted_changes: Any) -> PaymentPayloadV2:
    accepted = spec_requirements_v2().model_dump(by_alias=True)
    accepted.update(accepted_changes)
    return PaymentPayloadV2.model_validate(
        {
            "x402Version": 2,
            "resource": {"url": "https://api.example.com/premium-data"},
            "accepted": accepted,
            "payload": spec_payload_dict()["payload"],
        }
    )


def spec_payload_v1(mutate: Any = None) -> PaymentPayloadV1:
    data = spec_payload_dict()
    if mutate is not None:
        mutate(data["payload"])
    return PaymentPayloadV1.model_validate(data)


def rejected(payload: Any, requirements: Any, now: int = SPEC_NOW) -> PaymentRejected:
    with pytest.raises(PaymentRejected) as info:
        verify_exact_evm(payload, requirements, now)
    return info.value


# --- freshly signed payloads (eth-account, independent of our digest code) -------------

LOCAL_ASSET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LOCAL_TOKEN = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAYER = Account.from_key("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
NOW = 1_800_000_000


def local_requirements_v1(**changes: Any) -> PaymentRequirementsV1:
    fields: dict[str, Any] = {
        "scheme": "exact",
        "network": "eip155:31337",
        "maxAmountRequired": "3000000",
        "resource": "http://localhost/api/mint/x",
        "payTo": LOCAL_TOKEN,
        "maxTimeoutSeconds": 300,
        "asset": LOCAL_ASSET,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    fields.update(changes)
    return PaymentRequirementsV1.model_validate(fields)


def signed_authorization(
    *,
    account: Any = PAYER,
    to: str = LOCAL_TOKEN,
    value: int = 3_000_000,
    valid_after: int = 0,
    valid_before: int = NOW + 300,
    nonce: bytes = b"\x11" * 32,
    asset: str = LOCAL_ASSET,
    chain_id: int = 31337,
    name: str = "USD Coin",
    version: str = "2",
) -> dict[str, Any]:
    """A TransferWithAuthorization signed with eth-account, as the x402 `payload` dict."""
    signed = account.sign_typed_data(
        domain_data={
            "name": name,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": asset,
        },
        message_types={"TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION_TYPE},
        message_data={
            "from": account.address,
            "to": to,
            "value": value,
            "validAfter": valid_after,
            "validBefore": valid_before,
            "nonce": nonce,
        },
    )
    return {
        "signature": "0x" + bytes(signed.signature).hex(),
        "authorization": {
            "from": account.address,
            "to": to,
            "value": str(value),
            "validAfter": str(valid_after),
            "validBefore": str(valid_before),
            "nonce": "0x" + nonce.hex(),
        },
    }


def local_payload_v1(payload: dict[str, Any], network: str = "eip155:31337") -> PaymentPayloadV1:
    return PaymentPayloadV1(scheme="exact", network=network, payload=payload)


# --- the spec vector --------------------------------------------------------------------


def test_spec_vector_verifies_v1() -> None:
    auth = verify_exact_evm(spec_payload_v1(), spec_requirements_v1(), SPEC_NOW)
    assert auth == Authorization(
        from_=SPEC_PAYER,
        to=SPEC_PAY_TO,
        value=10000,
        valid_after=SPEC_VALID_AFTER,
        valid_before=SPEC_VALID_BEFORE,
        nonce=SPEC_NONCE,
        signature=SPEC_SIGNATURE,
    )


def test_spec_vector_verifies_v2() -> None:
    auth = verify_exact_evm(spec_payload_v2(), spec_requirements_v2(), SPEC_NOW)
    assert auth.from_ == SPEC_PAYER


def test_spec_vector_with_domain_name_usd_coin_is_an_invalid_signature() -> None:
    err = rejected(spec_payload_v1(), spec_requirements_v1(name="USD Coin"))
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_SIGNATURE
    assert "USD Coin" in err.message


def test_spec_vector_on_another_chain_is_an_invalid_signature() -> None:
    payload = PaymentPayloadV1.model_validate({**spec_payload_dict(), "network": "base"})
    err = rejected(payload, spec_requirements_v1(network="base"))
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_SIGNATURE


def test_spec_vector_at_window_edges() -> None:
    verify_exact_evm(spec_payload_v1(), spec_requirements_v1(), SPEC_VALID_AFTER)
    verify_exact_evm(spec_payload_v1(), spec_requirements_v1(), SPEC_VALID_BEFORE - 6)
    err = rejected(spec_payload_v1(), spec_requirements_v1(), SPEC_VALID_BEFORE - 5)
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_BEFORE
    err = rejected(spec_payload_v1(), spec_requirements_v1(), SPEC_VALID_AFTER - 1)
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_AFTER


def test_addresses_compare_case_insensitively() -> None:
    def lower_everything(p: dict[str, Any]) -> None:
        p["authorization"]["from"] = SPEC_PAYER.lower()
        p["authorization"]["to"] = "0x" + SPEC_PAY_TO[2:].upper()
        p["authorization"]["nonce"] = "0X" + SPEC_NONCE[2:].upper()

    requirements = spec_requirements_v1(payTo=SPEC_PAY_TO.lower(), asset=SPEC_ASSET.upper())
    auth = verify_exact_evm(spec_payload_v1(lower_everything), requirements, SPEC_NOW)
    assert (auth.from_, auth.to, auth.nonce) == (SPEC_PAYER, SPEC_PAY_TO, SPEC_NONCE)


def test_v1_payload_may_name_the_network_by_caip2() -> None:
    payload = PaymentPayloadV1.model_validate({**spec_payload_dict(), "network": "eip155:84532"})
    verify_exact_evm(payload, spec_requirements_v1(), SPEC_NOW)


def test_domain_separator_is_cached() -> None:
    verify_exact_evm(spec_payload_v1(), spec_requirements_v1(), SPEC_NOW)
    hits = _domain_separator.cache_info().hits
    verify_exact_evm(spec_payload_v1(), spec_requirements_v1(), SPEC_NOW)
    assert _domain_separator.cache_info().hits == hits + 1


# --- freshly signed -----------------------------------------------------------------------


def test_fresh_signature_verifies_and_is_normalised() -> None:
    payload = signed_authorization()
    auth = verify_exact_evm(local_payload_v1(payload), local_requirements_v1(), NOW)
    assert auth.from_ == PAYER.address
    assert auth.to == LOCAL_TOKEN
    assert auth.value == 3_000_000
    assert auth.nonce == "0x" + "11" * 32
    assert auth.signature == payload["signature"].lower()
    assert auth.signature[-2:] in ("1b", "1c")


@pytest.mark.parametrize("offset", [-27, 0])
def test_v_as_0_or_1_is_accepted_and_normalised_to_27_or_28(offset: int) -> None:
    payload = signed_authorization()
    sig = bytes.fromhex(payload["signature"][2:])
    payload["signature"] = "0x" + (sig[:64] + bytes((sig[64] + offset,))).hex()
    auth = verify_exact_evm(local_payload_v1(payload), local_requirements_v1(), NOW)
    assert auth.signature == "0x" + sig.hex()


def test_integer_json_amounts_are_accepted() -> None:
    payload = signed_authorization()
    payload["authorization"]["value"] = 3_000_000
    payload["authorization"]["validBefore"] = NOW + 300
    verify_exact_evm(local_payload_v1(payload), local_requirements_v1(), NOW)


def test_high_s_signature_is_rejected_as_invalid_payload() -> None:
    payload = signed_authorization()
    sig = bytes.fromhex(payload["signature"][2:])
    s = int.from_bytes(sig[32:64], "big")
    flipped_v = 55 - sig[64]  # 27 <-> 28
    high = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((flipped_v,))
    # the malleated signature is mathematically valid for the same signer ...
    message_hash = digest(
        asset=LOCAL_ASSET,
        chain_id=31337,
        name="USD Coin",
        version="2",
        from_=PAYER.address,
        to=LOCAL_TOKEN,
        value=3_000_000,
        valid_after=0,
        valid_before=NOW + 300,
        nonce=b"\x11" * 32,
    )
    assert recover_signer(message_hash, high) == PAYER.address
    # ... but only the low-s twin is accepted (EIP-2), so one authorization has one form
    payload["signature"] = "0x" + high.hex()
    err = rejected(local_payload_v1(payload), local_requirements_v1(), NOW)
    assert err.reason == Reason.INVALID_PAYLOAD
    assert "high" in err.message


# --- one test per reason code -------------------------------------------------------------


def test_unsupported_scheme() -> None:
    payload = PaymentPayloadV1.model_validate({**spec_payload_dict(), "scheme": "upto"})
    assert rejected(payload, spec_requirements_v1()).reason == Reason.UNSUPPORTED_SCHEME
    err = rejected(spec_payload_v1(), spec_requirements_v1(scheme="upto"))
    assert err.reason == Reason.UNSUPPORTED_SCHEME
    err = rejected(spec_payload_v2(scheme="upto"), spec_requirements_v2())
    assert err.reason == Reason.UNSUPPORTED_SCHEME


@pytest.mark.parametrize("network", ["base", "eip155:8453", "solana:mainnet", "nowhere", ""])
def test_invalid_network(network: str) -> None:
    payload = PaymentPayloadV1.model_validate({**spec_payload_dict(), "network": network})
    assert rejected(payload, spec_requirements_v1()).reason == Reason.INVALID_NETWORK


def test_invalid_network_v2_and_unknown_required_network() -> None:
    err = rejected(spec_payload_v2(network="eip155:8453"), spec_requirements_v2())
    assert err.reason == Reason.INVALID_NETWORK
    err = rejected(spec_payload_v1(), spec_requirements_v1(network="mars"))
    assert err.reason == Reason.INVALID_NETWORK


def test_invalid_x402_version_when_payload_and_requirements_versions_differ() -> None:
    err = rejected(spec_payload_v1(), spec_requirements_v2())
    assert err.reason == Reason.INVALID_X402_VERSION
    err = rejected(spec_payload_v2(), spec_requirements_v1())
    assert err.reason == Reason.INVALID_X402_VERSION


def test_recipient_mismatch() -> None:
    other = "0x000000000000000000000000000000000000dEaD"
    err = rejected(spec_payload_v1(), spec_requirements_v1(payTo=other))
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_RECIPIENT_MISMATCH


@pytest.mark.parametrize("required", ["9999", "10001", "100000"])
def test_value_mismatch(required: str) -> None:
    err = rejected(spec_payload_v1(), spec_requirements_v1(maxAmountRequired=required))
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH


def test_valid_after() -> None:
    payload = signed_authorization(valid_after=NOW + 1)
    err = rejected(local_payload_v1(payload), local_requirements_v1(), NOW)
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_AFTER


@pytest.mark.parametrize("valid_before", [NOW - 1, NOW, NOW + 5])
def test_valid_before(valid_before: int) -> None:
    payload = signed_authorization(valid_before=valid_before)
    err = rejected(local_payload_v1(payload), local_requirements_v1(), NOW)
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_BEFORE


def test_valid_before_exactly_six_seconds_ahead_passes() -> None:
    payload = signed_authorization(valid_before=NOW + 6)
    verify_exact_evm(local_payload_v1(payload), local_requirements_v1(), NOW)


def test_signature_by_someone_else() -> None:
    payload = signed_authorization(account=Account.create())
    payload["authorization"]["from"] = PAYER.address
    err = rejected(local_payload_v1(payload), local_requirements_v1(), NOW)
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_SIGNATURE


@pytest.mark.parametrize(
    ("field", "value"),
    [("nonce", "0x" + "22" * 32), ("validBefore", str(NOW + 301)), ("validAfter", "1")],
)
def test_signature_over_other_fields(field: str, value: str) -> None:
    payload = signed_authorization()
    payload["authorization"][field] = value
    err = rejected(local_payload_v1(payload), local_requirements_v1(), NOW)
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_SIGNATURE


@pytest.mark.parametrize(
    "signed_with",
    [{"chain_id": 1}, {"asset": LOCAL_TOKEN}, {"version": "1"}, {"name": "USDC"}],
)
def test_signature_over_another_domain(signed_with: dict[str, Any]) -> None:
    payload = signed_authorization(**signed_with)
    err = rejected(local_payload_v1(payload), local_requirements_v1(), NOW)
    assert err.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_SIGNATURE


def test_missing_eip712_domain() -> None:
    err = rejected(spec_payload_v1(), spec_requirements_v1(extra={"name": "USDC"}))
    assert err.reason == Reason.MISSING_EIP712_DOMAIN
    err = rejected(spec_payload_v1(), spec_requirements_v1(extra=None))
    assert err.reason == Reason.MISSING_EIP712_DOMAIN


def test_asset_not_an_address_is_invalid_requirements() -> None:
    err = rejected(spec_payload_v1(), spec_requirements_v1(asset="usdc"))
    assert err.reason == Reason.INVALID_PAYMENT_REQUIREMENTS


@pytest.mark.parametrize(
    ("accepted_change", "reason"),
    [
        ({"amount": "1"}, Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH),
        (
            {"payTo": "0x000000000000000000000000000000000000dEaD"},
            Reason.INVALID_EXACT_EVM_PAYLOAD_RECIPIENT_MISMATCH,
        ),
        (
            {"asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"},
            Reason.INVALID_PAYMENT_REQUIREMENTS,
        ),
        ({"network": "eip155:8453"}, Reason.INVALID_NETWORK),
        ({"scheme": "upto"}, Reason.UNSUPPORTED_SCHEME),
    ],
)
def test_v2_accepted_must_match_the_requirements(
    accepted_change: dict[str, Any], reason: str
) -> None:
    assert rejected(spec_payload_v2(**accepted_change), spec_requirements_v2()).reason == reason


def test_v2_accepted_amount_not_an_integer_is_refused_while_parsing() -> None:
    # Never an int() on client input later: a non-decimal amount is a malformed payload.
    with pytest.raises(ValidationError, match="amount"):
        spec_payload_v2(amount="ten")


def test_v2_accepted_amount_with_leading_zeros_is_the_same_amount() -> None:
    verify_exact_evm(spec_payload_v2(amount="010000"), spec_requirements_v2(), SPEC_NOW)


def test_checks_run_in_the_documented_order() -> None:
    """A payload wrong in every way reports the earliest check."""

    def everything_wrong(p: dict[str, Any]) -> None:
        p["authorization"].update(to="0x" + "00" * 20, value="1", validAfter=str(SPEC_NOW + 99))

    payload = spec_payload_v1(everything_wrong)
    assert rejected(payload, spec_requirements_v1()).reason == (
        Reason.INVALID_EXACT_EVM_PAYLOAD_RECIPIENT_MISMATCH
    )
    payload.payload["authorization"]["to"] = SPEC_PAY_TO
    assert rejected(payload, spec_requirements_v1()).reason == (
        Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH
    )
    payload.payload["authorization"]["value"] = "10000"
    assert rejected(payload, spec_requirements_v1()).reason == (
        Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_AFTER
    )
    payload.payload["authorization"]["signature"] = "junk"  # ignored: not a field
    payload.payload["authorization"]["validAfter"] = str(SPEC_VALID_AFTER)
    verify_exact_evm(payload, spec_requirements_v1(), SPEC_NOW)


# --- malformed payloads: invalid_payload ----------------------------------------------------

_SIG = SPEC_SIGNATURE[2:]


def _set_auth(field: str, value: Any) -> Any:
    def mutate(p: dict[str, Any]) -> None:
        p["authorization"][field] = value

    return mutate


def _del_auth(field: str) -> Any:
    def mutate(p: dict[str, Any]) -> None:
        del p["authorization"][field]

    return mutate


def _set(field: str, value: Any) -> Any:
    def mutate(p: dict[str, Any]) -> None:
        p[field] = value

    return mutate


MALFORMED = {
    "authorization missing": lambda p: p.pop("authorization"),
    "authorization a list": _set("authorization", []),
    "signature missing": lambda p: p.pop("signature"),
    "signature not a string": _set("signature", 12),
    "signature 64 bytes": _set("signature", "0x" + _SIG[:128]),
    "signature 66 bytes": _set("signature", "0x" + _SIG + "00"),
    "signature without 0x": _set("signature", _SIG + "00"),
    "signature not hex": _set("signature", "0x" + "zz" + _SIG[2:]),
    "signature v=29": _set("signature", "0x" + _SIG[:128] + "1d"),
    "signature v=2": _set("signature", "0x" + _SIG[:128] + "02"),
    "signature r=0": _set("signature", "0x" + "00" * 32 + _SIG[64:]),
    "signature s=0": _set("signature", "0x" + _SIG[:64] + "00" * 32 + _SIG[128:]),
    "signature r>=n": _set("signature", "0x" + "ff" * 32 + _SIG[64:]),
    "from missing": _del_auth("from"),
    "from 19 bytes": _set_auth("from", SPEC_PAYER[:-2]),
    "from 21 bytes": _set_auth("from", SPEC_PAYER + "00"),
    "from without 0x": _set_auth("from", "00" + SPEC_PAYER[2:]),
    "from not hex": _set_auth("from", "0x" + "g" * 40),
    "from with whitespace": _set_auth("from", "0x" + " " + SPEC_PAYER[3:]),
    "to not a string": _set_auth("to", 5),
    "to 19 bytes": _set_auth("to", SPEC_PAY_TO[:-2]),
    "value missing": _del_auth("value"),
    "value negative": _set_auth("value", "-10000"),
    "value negative int": _set_auth("value", -10000),
    "value decimal": _set_auth("value", "10000.0"),
    "value float": _set_auth("value", 10000.0),
    "value bool": _set_auth("value", True),
    "value words": _set_auth("value", "ten thousand"),
    "value empty": _set_auth("value", ""),
    "value hex": _set_auth("value", "0x2710"),
    "value with space": _set_auth("value", " 10000"),
    "value unicode digits": _set_auth("value", "\uff11\uff10\uff10\uff10\uff10"),
    "value over uint256": _set_auth("value", str(2**256)),
    "validAfter words": _set_auth("validAfter", "soon"),
    "validAfter negative": _set_auth("validAfter", "-1"),
    "validBefore missing": _del_auth("validBefore"),
    "validBefore null": _set_auth("validBefore", None),
    "nonce 31 bytes": _set_auth("nonce", SPEC_NONCE[:-2]),
    "nonce 33 bytes": _set_auth("nonce", SPEC_NONCE + "00"),
    "nonce decimal": _set_auth("nonce", "12345"),
    "nonce missing": _del_auth("nonce"),
}


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_field_is_invalid_payload(mutate: Any) -> None:
    err = rejected(spec_payload_v1(mutate), spec_requirements_v1())
    assert err.reason == Reason.INVALID_PAYLOAD
    assert err.message != err.reason  # says what is wrong


def test_verify_does_not_mutate_the_payload() -> None:
    payload = spec_payload_v1()
    before = copy.deepcopy(payload.payload)
    verify_exact_evm(payload, spec_requirements_v1(), SPEC_NOW)
    assert payload.payload == before
