"""JSON answers shared by the routes: errors with an x402 reason, and record views."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from starlette.responses import JSONResponse

from payfirst.api.rate_limits import TooManyRequests
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import MintItem, Payment, Token
from payfirst.x402.networks import caip2


def rejection(exc: PaymentRejected) -> JSONResponse:
    headers = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(
        {"error": exc.reason, "message": exc.message}, status_code=exc.status, headers=headers
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
        "token_address": payment.token_address,
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
