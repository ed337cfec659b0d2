"""The admin routes of accounts and API keys (`/v1/me`, `/v1/accounts`, `/v1/keys`).

Every route needs an API key (payfirst.api.auth). An account another one may not see is
answered 404 exactly like one that does not exist. A key's whole text is in the answer that
creates it and never again; listings show its prefix. A key made by a test key's holder is
a test key too (payfirst.usecases.api_keys)."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.auth import accounts, refusal, require
from payfirst.api.http_limits import json_body
from payfirst.api.services import services
from payfirst.domain.accounts import Account, ApiKey, Credential, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.usecases.accounts import (
    IssuedKey,
    check_expires_in,
    check_fee_bps,
    check_id,
    check_key_name,
    check_limit,
    check_name,
    check_payout_address,
    check_role,
    may_act_for,
)
from payfirst.usecases.api_keys import key_mode
from payfirst.usecases.payouts import Payouts

Handler = Callable[[Request, Credential], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

_LIMIT: Final = re.compile(r"[0-9]{1,4}", re.ASCII)
_ACCOUNT_FIELDS: Final = frozenset({"role", "name", "fee_bps", "payout_address"})
_KEY_FIELDS: Final = frozenset({"name", "expires_in_s", "account_id"})
_TERMS_FIELDS: Final = frozenset(
    {"payout_address", "payout_threshold", "payout_interval_s", "fee_bps"}
)


def admin(*roles: Role) -> Callable[[Handler], Endpoint]:
    """A route for the callers whose key's role is one of `roles` (none: any role; the
    operator always); every refusal answered as JSON."""

    def wrap(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                caller = await require(request, *roles)
                return await handler(request, caller)
            except PaymentRejected as exc:
                return refusal(exc)

        return endpoint

    return wrap


@admin()
async def me(request: Request, caller: Credential) -> Response:
    """
    summary: The account of the API key used.
    description: Any role. Authorization is `Bearer <API key>`.
    responses:
      200: {description: The caller's account}
      401: {description: No valid API key}
    """
    return JSONResponse(account_view(caller.account))


@admin(Role.OPERATOR)
async def create_account(request: Request, caller: Credential) -> Response:
    """
    summary: Create an account and its first API key.
    description: >
      Operator only. The answer holds the new key's whole text: it is shown this once and
      never again (only its prefix and hash are kept); it expires when the calling key
      does, if that key expires. fee_bps and payout_address are a provider's only.
    responses:
      201: {description: The account and its first key}
      400: {description: Malformed body}
      401: {description: No valid API key}
      403: {description: The key's role is not operator}
    """
    body = await _object(request, _ACCOUNT_FIELDS)
    role = check_role(body.get("role"))
    name = check_name(body.get("name"))
    fee_bps = check_fee_bps(body.get("fee_bps"))
    payout_address = check_payout_address(body.get("payout_address"))
    account, issued = await accounts(request).create_account(
        role,
        name,
        fee_bps=fee_bps,
        payout_address=payout_address,
        mode=key_mode(caller.key.prefix),
        not_after=caller.key.expires_at,
    )
    return JSONResponse(
        {"account": account_view(account), "api_key": issued_view(issued)}, status_code=201
    )


@admin(Role.OPERATOR)
async def list_accounts(request: Request, caller: Credential) -> Response:
    """
    summary: Every account, oldest first, a page at a time.
    description: >
      Operator only. `limit` (1..100, default 50) accounts after the account `after` (the
      last id of the previous page); `has_more` says whether another page follows.
    responses:
      200: {description: A page of accounts}
      400: {description: Bad limit or after}
      401: {description: No valid API key}
      403: {description: The key's role is not operator}
    """
    limit, after = _page(request)
    page = await accounts(request).accounts(limit, after)
    return JSONResponse(
        {"accounts": [account_view(a) for a in page.items], "has_more": page.has_more}
    )


@admin()
async def get_account(request: Request, caller: Credential) -> Response:
    """
    summary: One account.
    description: The operator sees every account, any other key its own account only.
    responses:
      200: {description: The account}
      400: {description: Not an account id}
      401: {description: No valid API key}
      404: {description: No such account (or not the caller's)}
    """
    account_id = check_id(request.path_params["account_id"], "the account id")
    account = await accounts(request).account(caller.account, account_id)
    return JSONResponse(account_view(account))


@admin()
async def update_account(request: Request, caller: Credential) -> Response:
    """
    summary: Change a provider's payout terms (and, the operator only, its fee).
    description: >
      A provider its own account; the operator any provider's. payout_address (where
      payouts go), payout_threshold (atomic units as a string: pay out when the available
      balance reaches it), payout_interval_s (60 s .. 366 days: pay out what is available
      when the last payout is older); null clears one. fee_bps is the operator's to set.
    responses:
      200: {description: "The account, with payout_threshold and payout_interval_s"}
      400: {description: "Malformed body, or not a provider's account"}
      401: {description: No valid API key}
      403: {description: "fee_bps set by another role than operator"}
      404: {description: No such account (or not the caller's)}
    """
    body = await _object(request, _TERMS_FIELDS)
    account_id = check_id(request.path_params["account_id"], "the account id")
    account, terms = await Payouts(services(request).store).update_terms(
        caller.account, account_id, body
    )
    threshold = terms.payout_threshold
    return JSONResponse(
        {
            **account_view(account),
            "payout_threshold": None if threshold is None else str(threshold),
            "payout_interval_s": terms.payout_interval_s,
        }
    )


@admin(Role.OPERATOR)
async def revoke_account(request: Request, caller: Credential) -> Response:
    """
    summary: Revoke an account; its keys stop working at once.
    description: Operator only, and not for its own account. Revoking again changes nothing.
    responses:
      200: {description: The revoked account}
      400: {description: "Not an account id, a body, or the caller's own account"}
      401: {description: No valid API key}
      403: {description: The key's role is not operator}
      404: {description: No such account}
    """
    await _object(request, ())
    account_id = check_id(request.path_params["account_id"], "the account id")
    revoked = await accounts(request).revoke_account(account_id, by=caller.account)
    return JSONResponse(account_view(revoked))


@admin()
async def create_key(request: Request, caller: Credential) -> Response:
    """
    summary: Create an API key.
    description: >
      A key of the caller's own account; the operator may name another account
      (account_id). expires_in_s (60 s .. 10 years) makes it expire. It expires no later
      than the calling key: an expiring key cannot make a longer-lived one. The answer
      holds the key's whole text: it is shown this once and never again.
    responses:
      201: {description: The new key}
      400: {description: Malformed body}
      401: {description: No valid API key}
      404: {description: No such active account (or not the caller's)}
    """
    body = await _object(request, _KEY_FIELDS)
    given = body.get("account_id")
    account_id = caller.account.id if given is None else check_id(given, "account_id")
    name = check_key_name(body.get("name"))
    expires_in = check_expires_in(body.get("expires_in_s"))
    if not may_act_for(caller.account, account_id):
        raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")
    issued = await accounts(request).issue_key(
        account_id,
        name=name,
        expires_in=expires_in,
        mode=key_mode(caller.key.prefix),
        not_after=caller.key.expires_at,
    )
    return JSONResponse(issued_view(issued), status_code=201)


@admin()
async def list_keys(request: Request, caller: Credential) -> Response:
    """
    summary: API keys of an account, oldest first, a page at a time.
    description: >
      The caller's own keys; the operator may name another account (account_id). A key's
      text is never listed: its prefix names it. Paged as /v1/accounts.
    responses:
      200: {description: A page of keys}
      400: {description: "Bad limit, after or account_id"}
      401: {description: No valid API key}
      404: {description: No such account (or not the caller's)}
    """
    limit, after = _page(request)
    given = request.query_params.get("account_id")
    account_id = caller.account.id if given is None else check_id(given, "account_id")
    service = accounts(request)
    await service.account(caller.account, account_id)  # 404 unless it is one to see
    page = await service.keys(account_id, limit, after)
    return JSONResponse({"keys": [key_view(k) for k in page.items], "has_more": page.has_more})


@admin()
async def revoke_key(request: Request, caller: Credential) -> Response:
    """
    summary: Revoke an API key; it stops working at once.
    description: >
      A key of the caller's own account (the key used included); the operator may revoke
      any key. Revoking again changes nothing.
    responses:
      200: {description: The revoked key}
      400: {description: "Not a key id, or a body"}
      401: {description: No valid API key}
      404: {description: No such key (or not the caller's)}
    """
    await _object(request, ())
    key_id = check_id(request.path_params["key_id"], "the key id")
    owner = None if caller.account.role is Role.OPERATOR else caller.account.id
    revoked = await accounts(request).revoke_key(key_id, owner=owner)
    return JSONResponse(key_view(revoked))


# --- bodies, pages and views ----------------------------------------------------------------


async def _object(request: Request, fields: Collection[str]) -> dict[str, Any]:
    """The JSON object body (a blank body is {}) holding only the named fields."""
    body = await json_body(request, Reason.INVALID_REQUEST, empty={})
    if not isinstance(body, dict):
        raise PaymentRejected(Reason.INVALID_REQUEST, "body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise PaymentRejected(
            Reason.INVALID_REQUEST,
            f"unknown field {unknown[0][:40]!r} (fields: {allowed})",
        )
    return body


def _page(request: Request) -> tuple[int, UUID | None]:
    text = request.query_params.get("limit")
    if text is not None and not _LIMIT.fullmatch(text):
        raise PaymentRejected(Reason.INVALID_REQUEST, "limit must be an integer 1..100")
    limit = check_limit(None if text is None else int(text))
    after = request.query_params.get("after")
    return limit, None if after is None else check_id(after, "after")


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def account_view(account: Account) -> dict[str, Any]:
    return {
        "id": str(account.id),
        "role": account.role.value,
        "name": account.name,
        "fee_bps": account.fee_bps,
        "payout_address": account.payout_address,
        "created_at": _time(account.created_at),
        "revoked_at": _time(account.revoked_at),
    }


def key_view(key: ApiKey) -> dict[str, Any]:
    """A key as listed: its prefix, never its text or hash."""
    return {
        "id": str(key.id),
        "account_id": str(key.account_id),
        "prefix": key.prefix,
        "name": key.name,
        "created_at": _time(key.created_at),
        "expires_at": _time(key.expires_at),
        "last_used_at": _time(key.last_used_at),
        "revoked_at": _time(key.revoked_at),
    }


def issued_view(issued: IssuedKey) -> dict[str, Any]:
    """A key just created: its view and, this once, its whole text."""
    return {**key_view(issued.key), "key": issued.text}
