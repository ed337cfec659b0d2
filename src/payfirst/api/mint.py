"""The mint endpoints: answer 402 with requirements, or verify a payment and queue it.

No chain RPC happens here (SPEC §2 rule 5): verification is local and the payment is
settled later by the sender loop."""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

from eth_utils.address import is_address, to_checksum_address
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.http_limits import json_body
from payfirst.api.idempotency import payment_id_of
from payfirst.api.responses import rejection, status_of
from payfirst.api.services import Services, services
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import NewPayment, Token
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentType
from payfirst.x402 import (
    mint_requirements_for,
    parse_payment_header,
    payment_required,
    verify_exact_evm,
)

PAYMENT_REQUIRED_HEADER = "PAYMENT-REQUIRED"

log = logging.getLogger("payfirst.api")


async def mint(request: Request) -> Response:
    """
    summary: Buy mints of a token with an x402 payment.
    description: >
      Without a payment header the answer is 402 with the payment requirements for
      price x quantity (v1 JSON body, v2 PAYMENT-REQUIRED header). With a valid
      X-PAYMENT (v1) or PAYMENT-SIGNATURE (v2) header the payment is queued and the
      answer is 202; tokens are minted once the payment is confirmed on chain.
    responses:
      202: {description: "Payment queued; poll /api/payment/{id}"}
      400: {description: Malformed header or body}
      402: {description: Payment required, or the payment failed verification}
      404: {description: Unknown token}
      409: {description: Sold out, or the authorization nonce was used with another payload}
    """
    try:
        services(request).admit_client(request)
        body = await _json_body(request)
        quantity = _quantity(body, services(request).max_quantity_per_request)
        return await _buy(request, request.path_params["token"], quantity)
    except PaymentRejected as exc:
        return rejection(exc)


async def batch_mint(request: Request) -> Response:
    """
    summary: Older clients' form of the mint endpoint.
    description: Same flow as POST /api/mint/{token}, with tokenAddress in the body.
    """
    try:
        services(request).admit_client(request)
        body = await _json_body(request)
        token_address = body.get("tokenAddress")
        if not isinstance(token_address, str):
            raise PaymentRejected(Reason.INVALID_REQUEST, "body needs tokenAddress")
        quantity = _quantity(body, services(request).max_quantity_per_request)
        return await _buy(request, token_address, quantity)
    except PaymentRejected as exc:
        return rejection(exc)


async def _buy(request: Request, token_address: str, quantity: int) -> Response:
    svc = services(request)
    token = await load_token(svc, token_address, cached=True)
    resource = str(request.url)
    payload = parse_payment_header(request.headers)
    if payload is None:
        return _payment_required(token, quantity, resource, "payment required")
    requirements = mint_requirements_for(payload, token, quantity, resource)
    try:
        authorization = verify_exact_evm(payload, requirements, int(svc.clock()))
    except PaymentRejected as exc:
        if status_of(exc.reason) != 402:
            raise  # malformed (400): no requirements to offer again
        return _payment_required(token, quantity, resource, exc.reason, exc.message)
    if authorization.value <= 0:
        # A token priced at zero is not sold through payments: nothing would pay the gas.
        raise PaymentRejected(
            Reason.INVALID_PAYMENT_REQUIREMENTS, "zero-value payments are refused"
        )
    svc.per_payer.take(authorization.from_)
    queued = await svc.store.queue_payment(
        NewPayment(
            id=uuid.uuid4(),
            payment_type=PaymentType.MINT,
            payer=authorization.from_,
            amount=authorization.value,
            payment_asset=token.payment_asset,
            token_address=token.address,
            quantity=quantity,
            authorization=authorization,
            metadata={"x402Version": payload.x402_version, "resource": resource},
            idempotency_key=payment_id_of(request.headers, payload),
        )
    )
    if queued.created:
        log.info(
            "✅ x402 payment queued: %s (%dx mint will be created after payment confirms)",
            queued.payment_id,
            quantity,
        )
        svc.on_payment_queued()
    return JSONResponse(
        {
            "paymentQueueId": str(queued.payment_id),
            "quantity": quantity,
            "status": "payment_pending",
            "note": f"Poll /api/payment/{queued.payment_id}",
        },
        status_code=202,
    )


@functools.lru_cache(maxsize=1024)
def _token_address(text: str) -> str | None:
    return to_checksum_address(text) if is_address(text) else None


async def load_token(svc: Services, address: str, *, cached: bool = False) -> Token:
    checksummed = _token_address(address)
    if checksummed is None:
        raise PaymentRejected(Reason.INVALID_TOKEN_ADDRESS, f"{address!r} is not an address")
    token = await (svc.tokens.get(checksummed) if cached else svc.store.get_token(checksummed))
    if token is None:
        raise PaymentRejected(Reason.UNKNOWN_TOKEN, f"payfirst does not sell {address}")
    return token


def _payment_required(
    token: Token, quantity: int, resource: str, reason: str, message: str = ""
) -> Response:
    body, header = payment_required(token, quantity, resource, reason)
    if message:
        body["message"] = message
    return JSONResponse(body, status_code=402, headers={PAYMENT_REQUIRED_HEADER: header})


async def _json_body(request: Request) -> dict[str, Any]:
    body = await json_body(request, Reason.INVALID_REQUEST, empty={})
    if not isinstance(body, dict):
        raise PaymentRejected(Reason.INVALID_REQUEST, "body must be a JSON object")
    return body


def _quantity(body: dict[str, Any], maximum: int) -> int:
    """An empty body buys one mint; otherwise quantity must be an integer 1..maximum."""
    quantity = body.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise PaymentRejected(Reason.INVALID_QUANTITY, "quantity must be an integer")
    if not 1 <= quantity <= maximum:
        raise PaymentRejected(Reason.INVALID_QUANTITY, f"quantity must be 1..{maximum}")
    return quantity
