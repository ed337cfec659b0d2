"""The mint endpoints: answer 402 with requirements, or 202 once the payment is queued
(the use case is payfirst.usecases.purchase)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.http_limits import json_body
from payfirst.api.responses import rejection, status_of
from payfirst.api.services import Services, services
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Token
from payfirst.domain.reasons import Reason
from payfirst.metrics import count_refusal
from payfirst.usecases.purchase import MintOrder, Queued, find_token
from payfirst.x402 import payment_required

PAYMENT_REQUIRED_HEADER = "PAYMENT-REQUIRED"


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
        count_refusal(exc.reason.value)
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
        count_refusal(exc.reason.value)
        return rejection(exc)


async def _buy(request: Request, token_address: str, quantity: int) -> Response:
    order = MintOrder(token_address, quantity, str(request.url), request.headers)
    result = await services(request).sales.accept(order)
    if isinstance(result, Queued):
        return JSONResponse(
            {
                "paymentQueueId": str(result.payment_id),
                "quantity": result.quantity,
                "status": "awaiting_approval" if result.held else "payment_pending",
                "note": f"Poll /api/payment/{result.payment_id}",
            },
            status_code=202,
        )
    if result.refusal is not None and status_of(result.refusal.reason) != 402:
        raise result.refusal  # malformed (400): no requirements to offer again
    if result.refusal is not None:
        count_refusal(result.refusal.reason.value)
    body, header = payment_required(result.token, result.quantity, result.resource, result.reason)
    if result.message:
        body["message"] = result.message
    return JSONResponse(body, status_code=402, headers={PAYMENT_REQUIRED_HEADER: header})


async def load_token(svc: Services, address: str, *, cached: bool = False) -> Token:
    return await find_token(svc.tokens.get if cached else svc.store.get_token, address)


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
