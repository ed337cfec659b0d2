"""The x402 facilitator endpoints, so a resource server (the official SDK's middleware,
payfirst.provider, any x402 server) can have payfirst verify and settle its payments.

`/settle` goes through the same queue, batches and confirmation as mints, and answers once
the payment is confirmed on chain, or after `settle_timeout_s` with `settlement_pending`
and the tx hash. Settling the same payload again returns that payment's result: the
(payer, nonce) key makes it the same payment, so it is never sent twice. A payment that
fails verification answers 200 with isValid/success false and the reason; a malformed
body answers 400."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.adapters import contracts
from payfirst.adapters.chain_rpc import ChainUnavailable, RpcError
from payfirst.api.http_limits import json_body
from payfirst.api.idempotency import payment_id_of
from payfirst.api.responses import rejection, status_of
from payfirst.api.services import Services, services
from payfirst.api.waiters import TooManyWaiters, wait_for
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Authorization, NewPayment, Payment
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.x402 import (
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyRequest,
    VerifyResponse,
    caip2,
    chain_id_of,
    describe_validation_error,
    v1_network,
    verify_exact_evm,
    wire,
)

log = logging.getLogger("payfirst.facilitator")


async def supported(request: Request) -> Response:
    """
    summary: x402 payment kinds this facilitator verifies and settles.
    responses:
      200: {description: "kinds, extensions, signers"}
    """
    svc = services(request)
    kinds = [SupportedKind(x402_version=2, scheme="exact", network=caip2(svc.chain_id))]
    # A chain without a v1 name (anvil) is named by its CAIP-2 id by v1 clients too.
    with contextlib.suppress(ValueError):
        kinds.append(
            SupportedKind(x402_version=1, scheme="exact", network=v1_network(svc.chain_id))
        )
    body = SupportedResponse(
        kinds=kinds,
        extensions=["payment-identifier"],
        signers={"eip155:*": list(svc.signers)},
    )
    return JSONResponse(wire(body))


async def verify(request: Request) -> Response:
    """
    summary: Verify an x402 payment against its requirements (nothing is queued).
    responses:
      200: {description: "isValid, invalidReason, payer"}
      400: {description: Malformed body}
    """
    svc = services(request)
    try:
        svc.admit_client(request)
        body = await _body(request)
    except PaymentRejected as exc:
        return rejection(exc)
    try:
        authorization = await _check(svc, body)
    except PaymentRejected as exc:
        invalid = VerifyResponse(
            is_valid=False,
            invalid_reason=exc.reason,
            invalid_message=exc.message,
            payer=_payer_of(body),
        )
        return JSONResponse(wire(invalid))
    return JSONResponse(wire(VerifyResponse(is_valid=True, payer=authorization.from_)))


async def settle(request: Request) -> Response:
    """
    summary: Settle an x402 payment on chain and answer once it is confirmed.
    description: >
      Queued like any payment (batched with others). Answers success with the tx hash
      once confirmed; past the timeout, success false with errorReason
      settlement_pending and the tx hash so far: settle the same payload again later for
      the final result. It is never sent twice.
    responses:
      200: {description: "success, errorReason, transaction, network, payer"}
      400: {description: Malformed body}
      409: {description: The payment id was used with another payload}
    """
    svc = services(request)
    try:
        svc.admit_client(request)
        body = await _body(request)
    except PaymentRejected as exc:
        return rejection(exc)
    network = body.payment_requirements.network
    payload = body.payment_payload
    try:
        authorization = verify_exact_evm(payload, body.payment_requirements, int(svc.clock()))
        await _check_admissible(svc, authorization)
        svc.per_payer.take(authorization.from_)
        existing = await svc.store.find_payment(authorization.from_, authorization.nonce)
        if existing is None or existing.authorization != authorization:
            await _check_on_chain(svc, body, authorization)
        queued = await svc.store.queue_payment(
            NewPayment(
                id=uuid.uuid4(),
                payment_type=PaymentType.SETTLE,
                payer=authorization.from_,
                amount=authorization.value,
                payment_asset=contracts.checksum(body.payment_requirements.asset),
                token_address=authorization.to,
                quantity=1,
                authorization=authorization,
                metadata={"x402Version": payload.x402_version, "network": network},
                idempotency_key=payment_id_of(request.headers, payload),
            )
        )
    except PaymentRejected as exc:
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
                    payer=_payer_of(body),
                    transaction="",
                    network=network,
                )
            )
        )
    if queued.created:
        svc.on_payment_queued()
        log.info("✅ x402 settlement queued: %s", queued.payment_id)
    payment = await _wait_for_outcome(svc, queued.payment_id)
    return JSONResponse(wire(_settle_response(payment, network)))


async def _wait_for_outcome(svc: Services, payment_id: uuid.UUID) -> Payment:
    """The payment once terminal, or as it is when the settle timeout passes; woken by the
    store's change notices (with too many waiters, answered at once: settle again later)."""
    deadline = time.monotonic() + svc.settle_timeout_s
    try:
        await svc.waiters.start(svc.store)
        with svc.waiters.waiting(payment_id) as changed:
            while True:
                changed.clear()
                payment = await svc.store.get_payment(payment_id)
                assert payment is not None
                left = deadline - time.monotonic()
                if payment.status.is_terminal or left <= 0:
                    return payment
                await wait_for(changed, left)
    except TooManyWaiters:
        payment = await svc.store.get_payment(payment_id)
        assert payment is not None
        return payment


def _settle_response(payment: Payment, network: str) -> SettleResponse:
    common: dict[str, Any] = {
        "payer": payment.payer,
        "network": network,
        "transaction": payment.tx_hash or "",
        "amount": str(payment.amount),
    }
    if payment.status is PaymentStatus.COMPLETED:
        return SettleResponse(success=True, **common)
    if payment.status.is_terminal:
        return SettleResponse(
            success=False,
            error_reason=_failure_reason(payment),
            error_message=payment.error,
            **common,
        )
    return SettleResponse(
        success=False,
        error_reason=Reason.SETTLEMENT_PENDING,
        error_message=f"payment {payment.id} is {payment.status.value}; settle again for the result",
        **common,
    )


def _failure_reason(payment: Payment) -> str:
    """The x402 reason of a failed payment: the one its error starts with (the sender
    writes "insufficient_funds: ..."), else by its status."""
    code = (payment.error or "").split(":", 1)[0]
    if code in Reason.__members__.values():
        return Reason(code)
    if payment.status is PaymentStatus.CONFIRMATION_FAILED:
        return Reason.TRANSACTION_FAILED
    return Reason.INVALID_TRANSACTION_STATE


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


async def _check(svc: Services, body: VerifyRequest) -> Authorization:
    """/verify: valid only for an authorization never submitted before. A payload payfirst
    already has is a replay to a resource server (which verifies before serving), even
    when identical; a facilitator client retrying a settlement calls /settle, which
    answers that payment's result."""
    authorization = verify_exact_evm(
        body.payment_payload, body.payment_requirements, int(svc.clock())
    )
    await _check_admissible(svc, authorization)
    known = await svc.store.find_payment(authorization.from_, authorization.nonce)
    if known is not None:
        raise PaymentRejected(
            Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED,
            f"this authorization was already submitted (payment {known.id})",
        )
    await _check_on_chain(svc, body, authorization)
    return authorization


async def _check_admissible(svc: Services, authorization: Authorization) -> None:
    """What this facilitator agrees to spend gas on: only pay-to addresses the operator
    allowed, never a token payfirst sells by mint (a payment to it buys mints through
    /api/mint, and settling it here would take the buyer's money for nothing), and no
    dust. Checked before anything else, so a stranger can never make the relayer pay."""
    pay_to = contracts.checksum(authorization.to)
    if pay_to in await svc.minted_tokens():
        raise PaymentRejected(
            Reason.INVALID_PAYMENT_REQUIREMENTS,
            f"payments to {pay_to} buy its mints: use POST /api/mint/{pay_to}",
        )
    if pay_to not in svc.settle_pay_to:
        raise PaymentRejected(
            Reason.INVALID_PAYMENT_REQUIREMENTS,
            f"this facilitator does not settle payments to {pay_to}",
        )
    if authorization.value < max(1, svc.min_settle_amount):
        raise PaymentRejected(
            Reason.INVALID_PAYMENT_REQUIREMENTS,
            f"amount {authorization.value} is below the minimum of {svc.min_settle_amount}",
        )


async def _check_on_chain(svc: Services, body: VerifyRequest, authorization: Authorization) -> None:
    """Network, asset, and what only the chain knows: the payer's balance and whether the
    authorization was used. If the chain cannot be reached these two are left to
    settlement (which fails safely), rather than failing the verification."""
    requirements = body.payment_requirements
    try:
        if chain_id_of(requirements.network) != svc.chain_id:
            raise PaymentRejected(
                Reason.INVALID_NETWORK, f"payfirst settles on {caip2(svc.chain_id)}"
            )
    except ValueError:
        raise PaymentRejected(Reason.INVALID_NETWORK, requirements.network) from None
    asset = contracts.checksum(requirements.asset)
    if asset not in await svc.payment_assets():
        raise PaymentRejected(
            Reason.INVALID_PAYMENT_REQUIREMENTS, f"asset {asset} is not settled here"
        )
    if svc.chain is None:
        return
    try:
        balance_raw, used_raw = await svc.chain.batch(
            [
                (
                    "eth_call",
                    [{"to": asset, "data": contracts.balance_of(authorization.from_)}, "latest"],
                ),
                (
                    "eth_call",
                    [
                        {
                            "to": asset,
                            "data": contracts.authorization_state(
                                authorization.from_, authorization.nonce
                            ),
                        },
                        "latest",
                    ],
                ),
            ]
        )
    except (ChainUnavailable, RpcError) as exc:
        log.warning("verify: chain checks skipped: %s", exc)
        return
    if int(balance_raw, 16) < authorization.value:
        raise PaymentRejected(Reason.INSUFFICIENT_FUNDS, "the payer's balance is too low")
    if int(used_raw, 16) != 0:
        raise PaymentRejected(
            Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED, "authorization already used on chain"
        )


def _payer_of(body: VerifyRequest) -> str | None:
    authorization = body.payment_payload.payload.get("authorization")
    payer = authorization.get("from") if isinstance(authorization, dict) else None
    return payer if isinstance(payer, str) else None
