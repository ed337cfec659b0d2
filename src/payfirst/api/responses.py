"""JSON answers shared by the routes: errors with an x402 reason, and record views."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from starlette.responses import JSONResponse

from payfirst.api.rate_limits import TooManyRequests
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import MintItem, Payment, Token
from payfirst.domain.reasons import Reason
from payfirst.x402.networks import caip2

# The HTTP status of each reason; a reason not listed is a payment that does not verify
# or cannot be paid: 402.
_STATUS: dict[Reason, int] = {
    Reason.INVALID_PAYLOAD: 400,
    Reason.INVALID_X402_VERSION: 400,
    Reason.INVALID_REQUEST: 400,
    Reason.INVALID_QUANTITY: 400,
    Reason.INVALID_TOKEN_ADDRESS: 400,
    Reason.INVALID_PAYMENT_ID: 400,
    Reason.INVALID_IDEMPOTENCY_KEY: 400,
    Reason.UNAUTHORIZED: 401,
    Reason.FORBIDDEN: 403,
    Reason.UNKNOWN_TOKEN: 404,
    Reason.UNKNOWN_PAYMENT: 404,
    Reason.UNKNOWN_ACCOUNT: 404,
    Reason.UNKNOWN_API_KEY: 404,
    Reason.UNKNOWN_PAYOUT: 404,
    Reason.INSUFFICIENT_BALANCE: 400,
    Reason.NO_PAYOUT_ADDRESS: 400,
    Reason.UNKNOWN_ENDPOINT: 404,
    Reason.UNKNOWN_PAYER: 404,
    Reason.PAYER_TAKEN: 409,
    Reason.INVALID_PAYER_PROOF: 400,
    Reason.UNKNOWN_WEBHOOK: 404,
    Reason.INVALID_WEBHOOK_URL: 400,
    Reason.UNKNOWN_WEBHOOK_MESSAGE: 404,
    Reason.NOT_FOUND: 404,
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.REQUEST_TIMEOUT: 408,
    Reason.SOLD_OUT: 409,
    Reason.PAYMENT_NOT_SENT: 409,
    Reason.IDEMPOTENCY_KEY_REUSED: 409,
    # An authorization already queued for another purchase (the mint routes' contract).
    Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED: 409,
    Reason.PAYLOAD_TOO_LARGE: 413,
    Reason.REQUEST_HEADER_FIELDS_TOO_LARGE: 431,
    Reason.RATE_LIMITED: 429,
    Reason.INTERNAL_ERROR: 500,
    Reason.TOO_MANY_WAITERS: 503,
    Reason.TOO_MANY_CONNECTIONS: 503,
    Reason.SERVICE_UNAVAILABLE: 503,
}


def status_of(reason: Reason) -> int:
    """The HTTP status a rejection with this reason is answered with."""
    return _STATUS.get(reason, 402)


def rejection(exc: PaymentRejected) -> JSONResponse:
    headers = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(
        {"error": exc.reason.value, "message": exc.message},
        status_code=status_of(exc.reason),
        headers=headers,
    )


def display_amount(atomic: int, decimals: int) -> str:
    return f"{Decimal(atomic).scaleb(-decimals):.{decimals}f}"


def token_view(token: Token) -> dict[str, Any]:
    return {
        "address": token.address,
        "name": token.name,
        "symbol": token.symbol,
        "network": caip2(token.chain_id),
        "chainId": token.chain_id,
        "pricePerMint": str(token.price_per_mint),
        "pricePerMintDisplay": display_amount(token.price_per_mint, token.asset_decimals),
        "mintAmount": str(token.mint_amount),
        "maxMintCount": token.max_mint_count,
        "reservedCount": token.reserved_count,
        "remaining": token.remaining,
        "paymentAsset": {
            "address": token.payment_asset,
            "name": token.asset_name,
            "version": token.asset_version,
            "decimals": token.asset_decimals,
        },
    }


def payment_view(payment: Payment, mints: list[MintItem]) -> dict[str, Any]:
    return {
        "id": str(payment.id),
        "status": payment.status.value,
        "payment_type": payment.payment_type.value,
        "tx_hash": payment.tx_hash,
        "payer": payment.payer,
        "amount": str(payment.amount),
        "token_address": payment.pay_to,
        "error": payment.error,
        "created_at": payment.created_at.isoformat(),
        "processed_at": payment.processed_at.isoformat() if payment.processed_at else None,
        "quantity": payment.quantity,
        "result": payment.result or {"queueIds": [], "quantity": payment.quantity},
        "mints": [
            {"id": str(m.id), "mintId": m.mint_id, "status": m.status.value, "tx_hash": m.tx_hash}
            for m in mints
        ],
    }
