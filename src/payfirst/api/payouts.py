"""The routes of payouts and balances (`/v1/payouts`, `/v1/balance`).

A provider's key sees and asks for its own payouts and balance; the operator's any
provider's (naming it with provider_id). Another provider's payout is answered 404 like one
that does not exist. Amounts are strings of atomic units, with the asset's decimals."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.accounts import admin
from payfirst.api.http_limits import json_body
from payfirst.api.services import Services, services
from payfirst.domain.accounts import Credential, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.networks import caip2_id
from payfirst.domain.payouts import Balance, Payout
from payfirst.domain.reasons import Reason
from payfirst.usecases.accounts import check_id, check_limit
from payfirst.usecases.payouts import Payouts

_LIMIT: Final = re.compile(r"[0-9]{1,4}", re.ASCII)
_PAYOUT_FIELDS: Final = frozenset({"network", "asset", "amount", "provider_id"})


def _payouts(request: Request) -> Payouts:
    svc = services(request)
    return Payouts(svc.store, svc.served if svc.served.all else None)


@admin(Role.PROVIDER)
async def create_payout(request: Request, caller: Credential) -> Response:
    """
    summary: Pay out a provider's available balance on chain.
    description: >
      A provider's own; the operator names the provider (provider_id). `amount` (a string
      of atomic units; default all that is available) of `asset` on `network` (CAIP-2);
      either may be left out when the balance is in one asset on one network. Never more
      than the available balance (the ledger's, less payouts not yet decided); paid to the
      account's payout_address by a transfer from the treasury, completed when confirmed.
    responses:
      201: {description: The payout (pending)}
      400: {description: "insufficient_balance, no_payout_address, or a malformed body"}
      401: {description: No valid API key}
      403: {description: The key's role is not provider or operator}
      404: {description: No such provider (or not the caller)}
    """
    body = await json_body(request, Reason.INVALID_REQUEST, empty={})
    if not isinstance(body, dict):
        raise PaymentRejected(Reason.INVALID_REQUEST, "body must be a JSON object")
    unknown = sorted(set(body) - _PAYOUT_FIELDS)
    if unknown:
        raise PaymentRejected(
            Reason.INVALID_REQUEST,
            f"unknown field {unknown[0][:40]!r} (fields: {', '.join(sorted(_PAYOUT_FIELDS))})",
        )
    given = body.get("provider_id")
    payout = await _payouts(request).request(
        caller.account,
        provider_id=None if given is None else check_id(given, "provider_id"),
        network=body.get("network"),
        asset=body.get("asset"),
        amount=body.get("amount"),
    )
    return JSONResponse(await _payout_view(services(request), payout), status_code=201)


@admin(Role.PROVIDER)
async def list_payouts(request: Request, caller: Credential) -> Response:
    """
    summary: Payouts, newest first, a page at a time.
    description: >
      A provider's own; the operator's are everyone's, or one provider's (provider_id).
      `limit` (1..100, default 50) payouts after the payout `after` (the last id of the
      previous page); `has_more` says whether another page follows.
    responses:
      200: {description: A page of payouts}
      400: {description: "Bad limit, after or provider_id"}
      401: {description: No valid API key}
      403: {description: The key's role is not provider or operator}
      404: {description: "provider_id names another provider"}
    """
    text = request.query_params.get("limit")
    if text is not None and not _LIMIT.fullmatch(text):
        raise PaymentRejected(Reason.INVALID_REQUEST, "limit must be an integer 1..100")
    limit = check_limit(None if text is None else int(text))
    after = _optional_id(request, "after")
    page = await _payouts(request).payouts(
        caller.account, limit, provider_id=_optional_id(request, "provider_id"), before=after
    )
    svc = services(request)
    return JSONResponse(
        {
            "payouts": [await _payout_view(svc, p) for p in page.items],
            "has_more": page.has_more,
        }
    )


@admin(Role.PROVIDER)
async def get_payout(request: Request, caller: Credential) -> Response:
    """
    summary: One payout.
    description: A provider's own; the operator's any.
    responses:
      200: {description: The payout}
      400: {description: Not a payout id}
      401: {description: No valid API key}
      403: {description: The key's role is not provider or operator}
      404: {description: No such payout (or another provider's)}
    """
    payout_id = check_id(request.path_params["payout_id"], "the payout id")
    payout = await _payouts(request).payout(caller.account, payout_id)
    return JSONResponse(await _payout_view(services(request), payout))


@admin(Role.PROVIDER)
async def balance(request: Request, caller: Credential) -> Response:
    """
    summary: A provider's balances, per network and asset.
    description: >
      A provider's own; the operator names the provider (provider_id, required). Per
      network (CAIP-2) and asset, in atomic units as strings with the asset's decimals:
      available (may be paid out now), in_payout (payouts not yet decided), paid_out
      (completed payouts), pending (its share of payments accepted but not completed).
    responses:
      200: {description: The balances}
      400: {description: "provider_id missing (operator) or malformed"}
      401: {description: No valid API key}
      403: {description: The key's role is not provider or operator}
      404: {description: "provider_id names another provider, or no provider"}
    """
    balances = await _payouts(request).balances(
        caller.account, _optional_id(request, "provider_id")
    )
    svc = services(request)
    return JSONResponse({"balances": [await _balance_view(svc, b) for b in balances]})


# --- views ------------------------------------------------------------------------------


def _optional_id(request: Request, name: str) -> UUID | None:
    value = request.query_params.get(name)
    return None if value is None else check_id(value, name)


def _network(svc: Services, chain_id: int) -> str:
    served = svc.served.by_chain_id(chain_id)
    return served.network.caip2 if served is not None else caip2_id(chain_id)


async def _decimals(svc: Services, chain_id: int, asset: str) -> int | None:
    """The asset's decimals: the network's word, else a token paid in it (a dev chain)."""
    served = svc.served.by_chain_id(chain_id)
    known = None if served is None else served.network.asset(asset)
    if known is not None:
        return known.decimals
    for token in await svc.tokens.all():
        if token.chain_id == chain_id and token.payment_asset.lower() == asset.lower():
            return token.asset_decimals
    return None


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def _payout_view(svc: Services, payout: Payout) -> dict[str, Any]:
    return {
        "id": str(payout.id),
        "provider_id": str(payout.provider_id),
        "network": _network(svc, payout.chain_id),
        "asset": payout.asset,
        "decimals": await _decimals(svc, payout.chain_id, payout.asset),
        "amount": str(payout.amount),
        "to": payout.to_address,
        "status": payout.status.value,
        "trigger": payout.trigger.value,
        "tx_hash": payout.tx_hash,
        "error": payout.error,
        "created_at": _time(payout.created_at),
        "updated_at": _time(payout.updated_at),
        "completed_at": _time(payout.completed_at),
    }


async def _balance_view(svc: Services, balance: Balance) -> dict[str, Any]:
    return {
        "network": _network(svc, balance.chain_id),
        "asset": balance.asset,
        "decimals": await _decimals(svc, balance.chain_id, balance.asset),
        "available": str(balance.available),
        "in_payout": str(balance.in_payout),
        "paid_out": str(balance.paid_out),
        "pending": str(balance.pending),
    }
