"""The routes of agents' payers, their spending policies and held payments (`/v1/payers`,
`/v1/approvals`).

An agent's key acts for its own payers; the operator's for any agent's (naming the agent
with account_id where a payer is attached). Another agent's payer or payment is answered 404
like one that does not exist. Amounts are strings of atomic units (the use case is
payfirst.usecases.policies)."""

from __future__ import annotations

import re
from typing import Any, Final
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.accounts import admin
from payfirst.api.http_limits import json_body
from payfirst.api.services import services
from payfirst.domain.accounts import Credential, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.usecases.accounts import check_id, check_limit
from payfirst.usecases.policies import (
    Policies,
    challenge_view,
    check_address,
    check_signature,
    held_view,
    payer_view,
    policy_view,
)

_LIMIT: Final = re.compile(r"[0-9]{1,4}", re.ASCII)


def _policies(request: Request) -> Policies:
    return Policies(services(request).store)


async def _object(request: Request, fields: frozenset[str] | None = None) -> dict[str, Any]:
    body = await json_body(request, Reason.INVALID_REQUEST, empty={})
    if not isinstance(body, dict):
        raise PaymentRejected(Reason.INVALID_REQUEST, "body must be a JSON object")
    if fields is not None:
        unknown = sorted(set(body) - fields)
        if unknown:
            raise PaymentRejected(
                Reason.INVALID_REQUEST,
                f"unknown field {unknown[0][:40]!r} (fields: {', '.join(sorted(fields)) or 'none'})",
            )
    return body


def _account_id(value: object) -> UUID | None:
    return None if value is None else check_id(value, "account_id")


def _limit(request: Request) -> int:
    text = request.query_params.get("limit")
    if text is not None and not _LIMIT.fullmatch(text):
        raise PaymentRejected(Reason.INVALID_REQUEST, "limit must be an integer 1..100")
    return check_limit(None if text is None else int(text))


def _address(request: Request) -> str:
    return check_address(request.path_params["address"], "the payer address")


@admin(Role.AGENT)
async def create_challenge(request: Request, caller: Credential) -> Response:
    """
    summary: A message to sign with a payer key, to prove the agent controls it.
    description: >
      An agent's own (the operator names the agent: account_id). Sign `message` with the
      payer key (EIP-191 personal_sign) and POST it to /v1/payers within 10 minutes; a
      challenge is used once.
    responses:
      201: {description: "The message to sign and when it expires"}
      400: {description: Malformed body}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
      404: {description: account_id names no active agent account}
    """
    body = await _object(request, frozenset({"address", "account_id"}))
    address = check_address(body.get("address"))
    challenge = await _policies(request).challenge(
        caller.account, address, _account_id(body.get("account_id"))
    )
    return JSONResponse(challenge_view(challenge), status_code=201)


@admin(Role.AGENT)
async def register_payer(request: Request, caller: Credential) -> Response:
    """
    summary: Attach a payer address to the agent, proved by its signed challenge.
    description: >
      `signature`: the payer key's EIP-191 signature of an open challenge's message for
      this agent and address. 201 when attached, 200 when it already was this agent's.
    responses:
      200: {description: "The payer, already this agent's"}
      201: {description: The payer}
      400: {description: "invalid_payer_proof, or a malformed body"}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
      404: {description: account_id names no active agent account}
      409: {description: "payer_taken: the address is another agent's payer"}
    """
    body = await _object(request, frozenset({"address", "signature", "account_id"}))
    address = check_address(body.get("address"))
    signature = check_signature(body.get("signature"))
    payer, created = await _policies(request).register(
        caller.account, address, signature, _account_id(body.get("account_id"))
    )
    return JSONResponse(payer_view(payer), status_code=201 if created else 200)


@admin(Role.AGENT)
async def list_payers(request: Request, caller: Credential) -> Response:
    """
    summary: The agent's payer addresses, by address, a page at a time.
    description: >
      An agent's own; the operator's every agent's (or one's: account_id). `limit` (1..100,
      default 50) payers after the address `after`; `has_more` says whether more follow.
    responses:
      200: {description: A page of payers}
      400: {description: "Bad limit, after or account_id"}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
    """
    limit = _limit(request)
    after_text = request.query_params.get("after")
    after = None if after_text is None else check_address(after_text, "after")
    account_id = _account_id(request.query_params.get("account_id"))
    payers = await _policies(request).payers(caller.account, limit + 1, after, account_id)
    return JSONResponse(
        {"payers": [payer_view(p) for p in payers[:limit]], "has_more": len(payers) > limit}
    )


@admin(Role.AGENT)
async def delete_payer(request: Request, caller: Credential) -> Response:
    """
    summary: Detach a payer address from its agent, with its spending policy.
    description: The agent's own payer; the operator's any.
    responses:
      200: {description: "The payer, detached"}
      400: {description: Not an address}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
      404: {description: No such payer (or another agent's)}
    """
    payer = await _policies(request).remove_payer(caller.account, _address(request))
    return JSONResponse(payer_view(payer))


@admin(Role.AGENT)
async def put_policy(request: Request, caller: Credential) -> Response:
    """
    summary: Set a payer's whole spending policy.
    description: >
      Every field is optional (left out or null: no limit). Amounts are strings of atomic
      units: one for every asset, or an object asset address (or "*": every other asset)
      -> amount; an asset a limit does not name may not be spent. max_per_day is a rolling
      24 h, max_per_month the calendar month (UTC); above approval_threshold a payment waits
      for approval (/v1/approvals). allowed_providers, allowed_endpoints (ids),
      allowed_pay_to (addresses), allowed_networks (CAIP-2 ids or v1 names). Applies at once
      on every API process.
    responses:
      200: {description: The policy}
      400: {description: Malformed body}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
      404: {description: No such payer (or another agent's)}
    """
    body = await _object(request)
    policy = await _policies(request).set_policy(caller.account, _address(request), body)
    return JSONResponse(policy_view(policy))


@admin(Role.AGENT)
async def get_policy(request: Request, caller: Credential) -> Response:
    """
    summary: A payer's spending policy.
    description: The agent's own payer's; the operator's any.
    responses:
      200: {description: The policy}
      400: {description: Not an address}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
      404: {description: "No such payer (or another agent's), or no policy"}
    """
    policy = await _policies(request).policy(caller.account, _address(request))
    return JSONResponse(policy_view(policy))


@admin(Role.AGENT)
async def delete_policy(request: Request, caller: Credential) -> Response:
    """
    summary: Remove a payer's spending policy (nothing is limited any more).
    description: The agent's own payer's; the operator's any.
    responses:
      200: {description: "The policy, removed"}
      400: {description: Not an address}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
      404: {description: "No such payer (or another agent's), or no policy"}
    """
    policy = await _policies(request).remove_policy(caller.account, _address(request))
    return JSONResponse(policy_view(policy))


@admin(Role.AGENT)
async def list_approvals(request: Request, caller: Credential) -> Response:
    """
    summary: Payments awaiting approval, oldest first.
    description: >
      Those of the agent's payers (the operator: everyone's), held because they are above
      the payer's approval threshold. `limit` 1..100 (default 50).
    responses:
      200: {description: The held payments}
      400: {description: Bad limit}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
    """
    held = await _policies(request).awaiting_approval(caller.account, _limit(request))
    return JSONResponse({"payments": [held_view(p) for p in held]})


@admin(Role.AGENT)
async def approve(request: Request, caller: Credential) -> Response:
    """
    summary: Approve a held payment; it is settled like any other.
    description: A payment of the agent's payer (the operator's any) awaiting approval.
    responses:
      200: {description: "The payment, now pending"}
      400: {description: "Not a payment id, or a body"}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
      404: {description: "No such payment awaiting approval (or another agent's)"}
    """
    return await _decide(request, caller, approve=True)


@admin(Role.AGENT)
async def reject(request: Request, caller: Credential) -> Response:
    """
    summary: Reject a held payment; it fails and its reservation is released.
    description: A payment of the agent's payer (the operator's any) awaiting approval.
    responses:
      200: {description: "The payment, now failed (payment_rejected)"}
      400: {description: "Not a payment id, or a body"}
      401: {description: No valid API key}
      403: {description: The key's role is not agent or operator}
      404: {description: "No such payment awaiting approval (or another agent's)"}
    """
    return await _decide(request, caller, approve=False)


async def _decide(request: Request, caller: Credential, *, approve: bool) -> Response:
    await _object(request, frozenset())
    payment_id = check_id(request.path_params["payment_id"], "the payment id")
    payment = await _policies(request).decide(caller.account, payment_id, approve=approve)
    return JSONResponse(held_view(payment))
