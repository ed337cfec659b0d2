"""The x402 facilitator endpoints, so a resource server (the official SDK's middleware,
payfirst.provider, any x402 server) can have payfirst verify and settle its payments.

`/settle` goes through the same queue, batches and confirmation as mints, and answers once
the payment is confirmed on chain, or after `settle_timeout_s` with `settlement_pending`
and the tx hash. Settling the same payload again returns that payment's result: the
(payer, nonce) key makes it the same payment, so it is never sent twice. A payment that
fails verification answers 200 with isValid/success false and the reason; a malformed
body answers 400.

A provider's (or the operator's) API key (`Authorization: Bearer`) lets the requirements
name its paid endpoint (`extra.payfirst`: {endpoint, units}): payfirst then settles only the
registry's price, to the endpoint's payTo, and records the endpoint (and, when the platform
collects, the provider and its fee). A key that is not valid is 401, an agent's 403; no key
is the operator's PAYFIRST_SETTLE_PAY_TO only."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.auth import refusal, require
from payfirst.api.http_limits import json_body
from payfirst.api.responses import rejection, status_of
from payfirst.api.services import services
from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.metrics import count_refusal
from payfirst.usecases.facilitation import (
    Invalid,
    Settled,
    SettleFailed,
    SettleOutcome,
    payer_of,
)
from payfirst.x402 import (
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyRequest,
    VerifyResponse,
    describe_validation_error,
    wire,
)


async def supported(request: Request) -> Response:
    """
    summary: x402 payment kinds this facilitator verifies and settles.
    responses:
      200: {description: "kinds, extensions, signers"}
    """
    svc = services(request)
    kinds: list[SupportedKind] = []
    signers: list[str] = []
    for served in svc.served.all:
        network = served.network
        kinds.append(SupportedKind(x402_version=2, scheme="exact", network=network.caip2))
        # A chain without a v1 name (anvil) is named by its CAIP-2 id by v1 clients too.
        kinds.append(
            SupportedKind(x402_version=1, scheme="exact", network=network.v1_name or network.caip2)
        )
        signers += [s for s in served.signers if s not in signers]
    body = SupportedResponse(
        kinds=kinds,
        extensions=["payment-identifier"],
        signers={"eip155:*": signers},
    )
    return JSONResponse(wire(body))


async def verify(request: Request) -> Response:
    """
    summary: Verify an x402 payment against its requirements (nothing is queued).
    description: >
      With a provider's or the operator's API key (Authorization Bearer), the requirements
      may name the caller's paid endpoint in extra.payfirst; they must then be the
      registry's price for the units named, else invalid_payment_requirements.
    responses:
      200: {description: "isValid, invalidReason, payer"}
      400: {description: Malformed body}
      401: {description: An Authorization header without a valid API key}
      403: {description: An agent's API key}
    """
    svc = services(request)
    try:
        svc.admit_client(request)
        caller = await _caller(request)
        body = await _body(request)
    except PaymentRejected as exc:
        return refusal(exc)
    verdict = await svc.facilitator.verify(body, caller)
    if isinstance(verdict, Invalid):
        count_refusal(verdict.reason.value)
        invalid = VerifyResponse(
            is_valid=False,
            invalid_reason=verdict.reason,
            invalid_message=verdict.message,
            payer=verdict.payer,
        )
        return JSONResponse(wire(invalid))
    return JSONResponse(wire(VerifyResponse(is_valid=True, payer=verdict.payer)))


async def settle(request: Request) -> Response:
    """
    summary: Settle an x402 payment on chain and answer once it is confirmed.
    description: >
      Queued like any payment (batched with others). Answers success with the tx hash
      once confirmed; past the timeout, success false with errorReason
      settlement_pending and the tx hash so far: settle the same payload again later for
      the final result. It is never sent twice. With a provider's or the operator's API key,
      the requirements may name the caller's paid endpoint (extra.payfirst), as for /verify.
    responses:
      200: {description: "success, errorReason, transaction, network, payer"}
      400: {description: Malformed body}
      401: {description: An Authorization header without a valid API key}
      403: {description: An agent's API key}
      409: {description: The payment id was used with another payload}
    """
    svc = services(request)
    try:
        svc.admit_client(request)
        caller = await _caller(request)
        body = await _body(request)
    except PaymentRejected as exc:
        return refusal(exc)
    network = body.payment_requirements.network
    try:
        outcome = await svc.facilitator.settle(body, request.headers, caller)
    except PaymentRejected as exc:
        count_refusal(exc.reason.value)
        # A malformed or conflicting request is an HTTP error; a payment that cannot be
        # settled is answered as a settlement that failed.
        if (
            status_of(exc.reason) in (400, 409, 429)
            and exc.reason != Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED
        ):
            return rejection(exc)
        return JSONResponse(
            wire(
                SettleResponse(
                    success=False,
                    error_reason=exc.reason,
                    error_message=exc.message,
                    payer=payer_of(body),
                    transaction="",
                    network=network,
                )
            )
        )
    return JSONResponse(wire(_settle_response(outcome, network)))


def _settle_response(outcome: SettleOutcome, network: str) -> SettleResponse:
    payment = outcome.payment
    common: dict[str, Any] = {
        "payer": payment.payer,
        "network": network,
        "transaction": payment.tx_hash or "",
        "amount": str(payment.amount),
    }
    if isinstance(outcome, Settled):
        return SettleResponse(success=True, **common)
    if isinstance(outcome, SettleFailed):
        return SettleResponse(
            success=False, error_reason=outcome.reason, error_message=payment.error, **common
        )
    return SettleResponse(
        success=False,
        error_reason=Reason.SETTLEMENT_PENDING,
        error_message=f"payment {payment.id} is {payment.status.value}; settle again for the result",
        **common,
    )


async def _caller(request: Request) -> Account | None:
    """The account of the request's API key, a provider or the operator; None without an
    Authorization header (the facilitator as it is for anyone)."""
    if "authorization" not in request.headers:
        return None
    return (await require(request, Role.PROVIDER)).account


async def _body(request: Request) -> VerifyRequest:
    data = await json_body(request, Reason.INVALID_PAYLOAD)
    try:
        return VerifyRequest.model_validate(data)
    except ValidationError as exc:
        # Name the fields, never pydantic's full text (its version, URLs, the input).
        raise PaymentRejected(
            Reason.INVALID_PAYLOAD,
            f"malformed request body: {describe_validation_error(exc)}",
        ) from None
