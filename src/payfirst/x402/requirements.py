"""x402 payment requirements for paid mints (price x quantity, paid to the token)."""

from __future__ import annotations

import functools
from typing import Any, Final

from payfirst.domain.models import Token
from payfirst.x402.codec import encode_header
from payfirst.x402.models import (
    PaymentPayloadV1,
    PaymentPayloadV2,
    PaymentRequiredV1,
    PaymentRequiredV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    ResourceInfo,
    wire,
)
from payfirst.x402.networks import caip2, v1_network

SCHEME_EXACT: Final = "exact"
MAX_TIMEOUT_SECONDS: Final = 300
MIME_TYPE: Final = "application/json"


def mint_amount(token: Token, quantity: int) -> int:
    """What `quantity` mints cost, in the payment asset's smallest unit."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValueError(f"quantity must be a positive integer, not {quantity!r}")
    return token.price_per_mint * quantity


def _description(token: Token, quantity: int) -> str:
    return f"Mint {quantity} x {token.symbol} ({token.name})"


def _extra(token: Token) -> dict[str, Any]:
    return {"name": token.asset_name, "version": token.asset_version}


def mint_requirements_v1(token: Token, quantity: int, resource: str) -> PaymentRequirementsV1:
    """v1 requirements (cached: one shared instance per arguments — never mutate it)."""
    mint_amount(token, quantity)  # refuses a bad quantity before the cache (True == 1)
    return _requirements_v1(token, quantity, resource)


@functools.lru_cache(maxsize=1024)
def _requirements_v1(token: Token, quantity: int, resource: str) -> PaymentRequirementsV1:
    """v1 requirements. `network` is the v1 name of the token's chain, or its CAIP-2 id
    when v1 has no name for it (the local chain 31337 -> "eip155:31337")."""
    return PaymentRequirementsV1(
        scheme=SCHEME_EXACT,
        network=v1_network(token.chain_id),
        max_amount_required=str(mint_amount(token, quantity)),
        resource=resource,
        description=_description(token, quantity),
        mime_type=MIME_TYPE,
        pay_to=token.address,
        max_timeout_seconds=MAX_TIMEOUT_SECONDS,
        asset=token.payment_asset,
        extra=_extra(token),
    )


def mint_requirements_v2(token: Token, quantity: int, resource: str) -> PaymentRequirementsV2:
    """v2 requirements (CAIP-2 network; cached like the v1 ones — never mutate them)."""
    mint_amount(token, quantity)
    return _requirements_v2(token, quantity, resource)


@functools.lru_cache(maxsize=1024)
def _requirements_v2(token: Token, quantity: int, resource: str) -> PaymentRequirementsV2:
    del resource  # v2 carries the resource once, beside `accepts`
    return PaymentRequirementsV2(
        scheme=SCHEME_EXACT,
        network=caip2(token.chain_id),
        amount=str(mint_amount(token, quantity)),
        asset=token.payment_asset,
        pay_to=token.address,
        max_timeout_seconds=MAX_TIMEOUT_SECONDS,
        extra=_extra(token),
    )


def mint_requirements_for(
    payload: PaymentPayloadV1 | PaymentPayloadV2, token: Token, quantity: int, resource: str
) -> PaymentRequirementsV1 | PaymentRequirementsV2:
    """The requirements of the same x402 version as `payload`, to verify it against."""
    if isinstance(payload, PaymentPayloadV1):
        return mint_requirements_v1(token, quantity, resource)
    return mint_requirements_v2(token, quantity, resource)


def payment_required(
    token: Token, quantity: int, resource: str, error: str
) -> tuple[dict[str, Any], str]:
    """The 402 answer: the v1 JSON body and the base64 v2 `PAYMENT-REQUIRED` header value."""
    v1 = PaymentRequiredV1(error=error, accepts=[mint_requirements_v1(token, quantity, resource)])
    v2 = PaymentRequiredV2(
        error=error,
        resource=ResourceInfo(
            url=resource, description=_description(token, quantity), mime_type=MIME_TYPE
        ),
        accepts=[mint_requirements_v2(token, quantity, resource)],
    )
    return wire(v1), encode_header(v2)
