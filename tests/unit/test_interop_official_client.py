"""Payments made by real clients verify: the official `x402` SDK client (v2
`PAYMENT-SIGNATURE`, and its v1 scheme), and the old front end's hand-built v1
`X-PAYMENT`. Nothing here touches a network: the clients only sign."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import time

import pytest
from eth_account import Account
from x402 import x402ClientSync
from x402.http import x402HTTPClientSync
from x402.mechanisms.evm.exact import ExactEvmScheme
from x402.mechanisms.evm.exact.v1.client import ExactEvmSchemeV1
from x402.schemas import PaymentRequiredV1 as SdkPaymentRequiredV1

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Authorization, Token
from payfirst.domain.reasons import Reason
from payfirst.x402 import (
    PaymentPayloadV1,
    PaymentPayloadV2,
    mint_requirements_for,
    parse_payment_header,
    payment_required,
    verify_exact_evm,
)
from tests.fixtures.eip712 import TRANSFER_WITH_AUTHORIZATION_TYPE

ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
PAYER = Account.from_key(ANVIL_KEY_1)
TOKEN = Token(
    address="0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",  # made-up local mint token
    chain_id=31337,
    name="Interop Token",
    symbol="IOP",
    payment_asset="0x5FbDB2315678afecb367f032d93F642f64180aa3",  # made-up local USDC
    asset_name="USD Coin",
    asset_version="2",
    asset_decimals=6,
    price_per_mint=2_500_000,
    mint_amount=10**21,
    max_mint_count=1000,
)
RESOURCE = f"http://127.0.0.1:8402/api/mint/{TOKEN.address}"


def official_client() -> x402HTTPClientSync:
    client = x402ClientSync()
    client.register("eip155:31337", ExactEvmScheme(PAYER))
    client.register_v1("base-sepolia", ExactEvmSchemeV1(PAYER))
    if hasattr(client, "set_spend_controls"):
        client.set_spend_controls(False)
    return x402HTTPClientSync(client)


def verify_request(
    headers: dict[str, str], token: Token, quantity: int
) -> tuple[PaymentPayloadV1 | PaymentPayloadV2, Authorization]:
    """What the API layer does with a paid request."""
    payload = parse_payment_header(headers)
    assert payload is not None
    requirements = mint_requirements_for(payload, token, quantity, RESOURCE)
    return payload, verify_exact_evm(payload, requirements, int(time.time()))


@pytest.mark.parametrize("quantity", [1, 4])
def test_official_v2_client_payment_verifies(quantity: int) -> None:
    _, required_header = payment_required(TOKEN, quantity, RESOURCE, "payment required")
    http = official_client()
    required = http.get_payment_required_response(
        lambda name: required_header if name.upper() == "PAYMENT-REQUIRED" else None
    )
    payload = http.create_payment_payload(required)
    headers = http.encode_payment_signature_header(payload)
    assert list(headers) == ["PAYMENT-SIGNATURE"]

    parsed, auth = verify_request(headers, TOKEN, quantity)
    assert isinstance(parsed, PaymentPayloadV2)
    assert auth.from_ == PAYER.address
    assert auth.to == TOKEN.address
    assert auth.value == 2_500_000 * quantity


def test_official_v2_payment_for_another_quantity_is_a_value_mismatch() -> None:
    _, required_header = payment_required(TOKEN, 1, RESOURCE, "payment required")
    http = official_client()
    required = http.get_payment_required_response(lambda name: required_header)
    headers = http.encode_payment_signature_header(http.create_payment_payload(required))
    with pytest.raises(PaymentRejected) as info:
        verify_request(headers, TOKEN, 2)
    assert info.value.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH


def test_official_v1_client_payment_verifies_on_base_sepolia() -> None:
    token = Token(
        address=TOKEN.address,
        chain_id=84532,
        name="Sepolia Token",
        symbol="SEP",
        payment_asset="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        asset_name="USDC",
        asset_version="2",
        asset_decimals=6,
        price_per_mint=10_000,
        mint_amount=1,
        max_mint_count=10,
    )
    body, _ = payment_required(token, 2, RESOURCE, "X-PAYMENT header is required")
    assert body["accepts"][0]["network"] == "base-sepolia"
    http = official_client()
    payload = http.create_payment_payload(SdkPaymentRequiredV1.model_validate(body))
    headers = http.encode_payment_signature_header(payload)
    assert list(headers) == ["X-PAYMENT"]

    parsed, auth = verify_request(headers, token, 2)
    assert isinstance(parsed, PaymentPayloadV1)
    assert auth.value == 20_000


def old_front_end_header(network: str, chain_id: int, value: int) -> str:
    """How the replaced system's front end built X-PAYMENT: eth-account signTypedData."""
    now = int(time.time())
    nonce = secrets.token_bytes(32)
    message: dict[str, object] = {
        "from": PAYER.address,
        "to": TOKEN.address,
        "value": value,
        "validAfter": now - 60,
        "validBefore": now + 300,
        "nonce": nonce,
    }
    signed = PAYER.sign_typed_data(
        domain_data={
            "name": TOKEN.asset_name,
            "version": TOKEN.asset_version,
            "chainId": chain_id,
            "verifyingContract": TOKEN.payment_asset,
        },
        message_types={"TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION_TYPE},
        message_data=message,
    )
    body = {
        "x402Version": 1,
        "scheme": "exact",
        "network": network,
        "payload": {
            "signature": "0x" + bytes(signed.signature).hex(),
            "authorization": {
                **{
                    k: str(v)
                    for k, v in message.items()
                    if k in ("value", "validAfter", "validBefore")
                },
                "from": PAYER.address,
                "to": TOKEN.address,
                "nonce": "0x" + nonce.hex(),
            },
        },
    }
    return base64.b64encode(json.dumps(body).encode()).decode()


def test_old_front_end_v1_header_verifies_on_base_sepolia() -> None:
    token = dataclasses.replace(TOKEN, chain_id=84532)
    header = old_front_end_header("base-sepolia", 84532, 3 * TOKEN.price_per_mint)
    parsed, auth = verify_request({"x-payment": header}, token, 3)
    assert isinstance(parsed, PaymentPayloadV1)
    assert auth.from_ == PAYER.address


def test_old_front_end_v1_header_verifies_on_the_local_chain() -> None:
    header = old_front_end_header("eip155:31337", 31337, TOKEN.price_per_mint)
    _, auth = verify_request({"X-PAYMENT": header}, TOKEN, 1)
    assert auth.value == TOKEN.price_per_mint


def test_old_front_end_header_for_the_wrong_chain_is_invalid_network() -> None:
    header = old_front_end_header("base-sepolia", 84532, TOKEN.price_per_mint)
    with pytest.raises(PaymentRejected) as info:
        verify_request({"X-PAYMENT": header}, TOKEN, 1)  # token lives on 31337
    assert info.value.reason == Reason.INVALID_NETWORK
