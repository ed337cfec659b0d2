"""The routes of webhook endpoints (`/v1/webhooks`).

Any key (provider, agent, operator) registers endpoints for its own account; the operator
also for another account (account_id) and sees everyone's. Another account's endpoint is
answered 404 like one that does not exist. Events are delivered signed the Standard
Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the endpoint's
secret."""

from __future__ import annotations

import asyncio
import re
import socket
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.accounts import admin
from payfirst.api.http_limits import json_body
from payfirst.api.services import services
from payfirst.domain.accounts import Credential
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.domain.webhooks import (
    AddressPolicy,
    Attempt,
    UrlRefused,
    WebhookEndpoint,
    check_addresses,
    parse_url,
)
from payfirst.usecases.accounts import check_id
from payfirst.usecases.webhooks import Webhooks

_LIMIT: Final = re.compile(r"[0-9]{1,4}", re.ASCII)
_CURSOR: Final = re.compile(r"[0-9]{1,18}", re.ASCII)
_CREATE_FIELDS: Final = frozenset({"url", "event_types", "description", "account_id"})
_PATCH_FIELDS: Final = frozenset({"url", "event_types", "description"})
_REPLAY_FIELDS: Final = frozenset({"message_id", "since", "until"})


async def public_only(url: str) -> object:
    """The check without the operator's: every address the host resolves to is public."""
    parsed = parse_url(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parsed.host, parsed.port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise UrlRefused(f"the host {parsed.host!r} does not resolve: {exc}") from None
    return check_addresses([str(i[4][0]) for i in infos], AddressPolicy())


def _webhooks(request: Request) -> Webhooks:
    svc = services(request)
    return Webhooks(svc.store, svc.webhook_url_check or public_only)


async def _object(request: Request, fields: frozenset[str]) -> dict[str, Any]:
    body = await json_body(request, Reason.INVALID_REQUEST, empty={})
    if not isinstance(body, dict):
        raise PaymentRejected(Reason.INVALID_REQUEST, "body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise PaymentRejected(
            Reason.INVALID_REQUEST,
            f"unknown field {unknown[0][:40]!r} (fields: {', '.join(sorted(fields))})",
        )
    return body


def _endpoint_id(request: Request) -> UUID:
    return check_id(request.path_params["webhook_id"], "the webhook id")


def _limit(request: Request) -> int | None:
    text = request.query_params.get("limit")
    if text is not None and not _LIMIT.fullmatch(text):
        raise PaymentRejected(Reason.INVALID_REQUEST, "limit must be an integer 1..100")
    return None if text is None else int(text)


@admin()
async def create_webhook(request: Request, caller: Credential) -> Response:
    """
    summary: Register a webhook endpoint.
    description: >
      Any role, for its own account; the operator also for another (account_id). `url`
      (http or https; its host must resolve to public addresses unless the operator allows
      others), `event_types` (empty or missing: every type), `description`. The answer
      holds the signing secret (`whsec_...`); it can be read again at /secret.
    responses:
      201: {description: The endpoint and its secret}
      400: {description: "invalid_webhook_url, or a malformed body"}
      401: {description: No valid API key}
      404: {description: "account_id names another account (or none)"}
    """
    body = await _object(request, _CREATE_FIELDS)
    given = body.get("account_id")
    endpoint = await _webhooks(request).create(
        caller.account,
        body.get("url"),
        event_types=body.get("event_types"),
        description=body.get("description"),
        account_id=None if given is None else check_id(given, "account_id"),
    )
    return JSONResponse(endpoint_view(endpoint, secret=True), status_code=201)


@admin()
async def list_webhooks(request: Request, caller: Credential) -> Response:
    """
    summary: Webhook endpoints, oldest first, a page at a time.
    description: >
      The caller's own; the operator's are everyone's, or one account's (account_id).
      `limit` (1..100, default 50) endpoints after the endpoint `after`.
    responses:
      200: {description: A page of endpoints}
      400: {description: "Bad limit, after or account_id"}
      401: {description: No valid API key}
      404: {description: "account_id names another account"}
    """
    after = request.query_params.get("after")
    account = request.query_params.get("account_id")
    page, more = await _webhooks(request).endpoints(
        caller.account,
        _limit(request),
        after=None if after is None else check_id(after, "after"),
        account_id=None if account is None else check_id(account, "account_id"),
    )
    return JSONResponse({"webhooks": [endpoint_view(e) for e in page], "has_more": more})


@admin()
async def get_webhook(request: Request, caller: Credential) -> Response:
    """
    summary: One webhook endpoint.
    description: The caller's own; the operator's any. Disabled ones say why.
    responses:
      200: {description: The endpoint}
      400: {description: Not a webhook id}
      401: {description: No valid API key}
      404: {description: "No such endpoint (or another account's)"}
    """
    endpoint = await _webhooks(request).endpoint(caller.account, _endpoint_id(request))
    return JSONResponse(endpoint_view(endpoint))


@admin()
async def update_webhook(request: Request, caller: Credential) -> Response:
    """
    summary: Change a webhook endpoint's url, event types or description.
    description: The caller's own; the operator's any. The url is checked as at creation.
    responses:
      200: {description: The endpoint}
      400: {description: "invalid_webhook_url, or a malformed body"}
      401: {description: No valid API key}
      404: {description: "No such endpoint (or another account's)"}
    """
    endpoint_id = _endpoint_id(request)
    body = await _object(request, _PATCH_FIELDS)
    endpoint = await _webhooks(request).update(
        caller.account,
        endpoint_id,
        url=body.get("url"),
        event_types=body.get("event_types"),
        description=body.get("description"),
        given=frozenset(body),
    )
    return JSONResponse(endpoint_view(endpoint))


@admin()
async def delete_webhook(request: Request, caller: Credential) -> Response:
    """
    summary: Delete a webhook endpoint.
    description: The caller's own; the operator's any. Its deliveries and their log go too.
    responses:
      200: {description: Deleted}
      400: {description: Not a webhook id}
      401: {description: No valid API key}
      404: {description: "No such endpoint (or another account's)"}
    """
    endpoint_id = _endpoint_id(request)
    await _webhooks(request).delete(caller.account, endpoint_id)
    return JSONResponse({"id": str(endpoint_id), "deleted": True})


@admin()
async def webhook_secret(request: Request, caller: Credential) -> Response:
    """
    summary: A webhook endpoint's signing secret.
    description: The caller's own; the operator's any.
    responses:
      200: {description: The secret}
      400: {description: Not a webhook id}
      401: {description: No valid API key}
      404: {description: "No such endpoint (or another account's)"}
    """
    endpoint = await _webhooks(request).endpoint(caller.account, _endpoint_id(request))
    return JSONResponse({"secret": endpoint.secret})


@admin()
async def rotate_webhook_secret(request: Request, caller: Credential) -> Response:
    """
    summary: Give a webhook endpoint a new signing secret.
    description: >
      The caller's own; the operator's any. For 24 hours the old secret signs too (two
      signatures in webhook-signature), so the receiver can switch without losing events.
    responses:
      200: {description: The new secret}
      400: {description: Not a webhook id}
      401: {description: No valid API key}
      404: {description: "No such endpoint (or another account's)"}
    """
    endpoint = await _webhooks(request).rotate_secret(caller.account, _endpoint_id(request))
    return JSONResponse({"secret": endpoint.secret})


@admin()
async def enable_webhook(request: Request, caller: Credential) -> Response:
    """
    summary: Enable a disabled webhook endpoint again.
    description: >
      An endpoint failing for 3 days is disabled and its pending deliveries failed; enable
      it, then replay what it missed.
    responses:
      200: {description: The endpoint}
      400: {description: Not a webhook id}
      401: {description: No valid API key}
      404: {description: "No such endpoint (or another account's)"}
    """
    endpoint = await _webhooks(request).enable(caller.account, _endpoint_id(request))
    return JSONResponse(endpoint_view(endpoint))


@admin()
async def webhook_attempts(request: Request, caller: Credential) -> Response:
    """
    summary: A webhook endpoint's delivery log, newest first.
    description: >
      Every attempt: when, the response's status, latency and first KiB of body, or the
      error. `limit` (1..100, default 50) attempts before the attempt `before` (the
      previous page's next_before).
    responses:
      200: {description: A page of attempts}
      400: {description: "Not a webhook id, or bad limit or before"}
      401: {description: No valid API key}
      404: {description: "No such endpoint (or another account's)"}
    """
    text = request.query_params.get("before")
    if text is not None and not _CURSOR.fullmatch(text):
        raise PaymentRejected(Reason.INVALID_REQUEST, "before must be an attempt id")
    page, more = await _webhooks(request).attempts(
        caller.account,
        _endpoint_id(request),
        _limit(request),
        before=None if text is None else int(text),
    )
    return JSONResponse(
        {
            "attempts": [attempt_view(a) for a in page],
            "has_more": more,
            "next_before": str(page[-1].id) if more and page else None,
        }
    )


@admin()
async def replay_webhook(request: Request, caller: Credential) -> Response:
    """
    summary: Send messages to a webhook endpoint again.
    description: >
      One message ({message_id}) or those written in [since, until) ({since, until}; ISO
      8601; until defaults to now; 31 days at most) that the endpoint wants. They keep
      their ids (`webhook-id`): receivers dedupe on it.
    responses:
      202: {description: How many deliveries were queued}
      400: {description: Malformed body}
      401: {description: No valid API key}
      404: {description: "No such endpoint or message (or another account's)"}
    """
    endpoint_id = _endpoint_id(request)
    body = await _object(request, _REPLAY_FIELDS)
    count = await _webhooks(request).replay(
        caller.account,
        endpoint_id,
        message_id=body.get("message_id"),
        since=body.get("since"),
        until=body.get("until"),
    )
    return JSONResponse({"queued": count}, status_code=202)


# --- views ------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def endpoint_view(endpoint: WebhookEndpoint, *, secret: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": str(endpoint.id),
        "account_id": str(endpoint.account_id),
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "enabled": endpoint.disabled_at is None,
        "disabled_at": _time(endpoint.disabled_at),
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": _time(endpoint.failing_since),
        "created_at": _time(endpoint.created_at),
        "updated_at": _time(endpoint.updated_at),
    }
    if secret:
        view["secret"] = endpoint.secret
    return view


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    return {
        "id": str(attempt.id),
        "message_id": attempt.message_id,
        "started_at": _time(attempt.started_at),
        "status": attempt.status,
        "latency_ms": attempt.latency_ms,
        "body": attempt.body,
        "error": attempt.error,
    }
