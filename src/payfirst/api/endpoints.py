"""Providers' paid endpoints (`/v1/endpoints`), the 402 payfirst answers for them, and the
x402 Bazaar listing of the discoverable ones (`/discovery/resources`).

The registry's routes need a provider's key (the operator's: every provider's endpoints);
another provider's endpoint is answered 404 exactly like one that does not exist. The 402
and the listing need no key (they say what anyone may pay), and are limited per client
address as the accept paths are. The use case is
payfirst.usecases.endpoints."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.accounts import _object, _page, admin
from payfirst.api.responses import rejection
from payfirst.api.services import services
from payfirst.domain.accounts import Credential, Role
from payfirst.domain.endpoints import Endpoint
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.usecases.accounts import check_id
from payfirst.usecases.endpoints import (
    FIELDS,
    PATCH_FIELDS,
    AssetInfo,
    EndpointRegistry,
    check_units,
    discovery_item,
    payment_required,
)
from payfirst.x402 import PAYMENT_REQUIRED, caip2

DISCOVERY_DEFAULT_LIMIT: Final = 20
DISCOVERY_MAX_LIMIT: Final = 100
DISCOVERY_MAX_OFFSET: Final = 10_000
_NUMBER: Final = re.compile(r"[0-9]{1,7}", re.ASCII)


def registry(request: Request) -> EndpointRegistry:
    return services(request).endpoints


@admin(Role.PROVIDER)
async def create_endpoint(request: Request, caller: Credential) -> Response:
    """
    summary: Register a paid endpoint.
    description: >
      A provider registers its own; the operator names the provider (provider_id).
      resource is a path pattern ("/weather/{city}") or a full URL (required for
      discoverable); pricing fixed (amount per call) or per_unit (amount per unit, the count
      from the request's unit_param, 1..max_units); amount in atomic units of the asset
      (a decimal string). network, asset and pay_to default to the default network, its
      default asset and its treasury; pay_to is never the zero address, the asset's
      contract, the network's settler or a token sold by mint. max_timeout_seconds
      10..86400 (default 300). input_schema and output_schema are JSON objects of at most
      16 KiB and 16 levels. A provider has at most 1000 enabled endpoints (disabling one
      frees its place). Unknown fields are refused.
    responses:
      201: {description: The endpoint}
      400: {description: "Malformed body, or the provider has 1000 enabled endpoints"}
      401: {description: No valid API key}
      403: {description: The key's role is agent}
      404: {description: No such provider account (operator)}
    """
    body = await _object(request, FIELDS)
    reg = registry(request)
    endpoint = await reg.create(caller.account, body)
    return JSONResponse(await _view(reg, endpoint), status_code=201)


@admin(Role.PROVIDER)
async def list_endpoints(request: Request, caller: Credential) -> Response:
    """
    summary: Paid endpoints, oldest first, a page at a time.
    description: >
      A provider's own; the operator's, everyone's or one provider's (provider_id).
      Disabled ones only with include_disabled=true. Paged as /v1/accounts (limit 1..100,
      after, has_more); after must be an endpoint of the listing (400 otherwise).
    responses:
      200: {description: A page of endpoints}
      400: {description: "Bad limit, after, provider_id or include_disabled"}
      401: {description: No valid API key}
      403: {description: The key's role is agent}
      404: {description: No such account (or not the caller's)}
    """
    limit, after = _page(request)
    given = request.query_params.get("provider_id")
    provider_id = None if given is None else check_id(given, "provider_id")
    flag = request.query_params.get("include_disabled", "false")
    if flag not in ("true", "false"):
        raise PaymentRejected(Reason.INVALID_REQUEST, "include_disabled must be true or false")
    reg = registry(request)
    page = await reg.endpoints(
        caller.account,
        limit=limit,
        provider_id=provider_id,
        after=after,
        include_disabled=flag == "true",
    )
    views = await _views(reg, page.items)
    return JSONResponse({"endpoints": views, "has_more": page.has_more})


@admin(Role.PROVIDER)
async def get_endpoint(request: Request, caller: Credential) -> Response:
    """
    summary: One paid endpoint.
    description: A provider's own only; the operator's, any.
    responses:
      200: {description: The endpoint}
      400: {description: Not an endpoint id}
      401: {description: No valid API key}
      403: {description: The key's role is agent}
      404: {description: No such endpoint (or not the caller's)}
    """
    reg = registry(request)
    endpoint = await reg.endpoint(caller.account, _endpoint_id(request))
    return JSONResponse(await _view(reg, endpoint))


@admin(Role.PROVIDER)
async def update_endpoint(request: Request, caller: Credential) -> Response:
    """
    summary: Change some of a paid endpoint's terms.
    description: >
      The fields of POST /v1/endpoints but provider_id, each optional; the result is
      checked whole. A change of network must give asset and pay_to on it as well (the
      same network named again changes nothing; null is refused). A price change applies
      to payments accepted after it.
    responses:
      200: {description: The endpoint}
      400: {description: Malformed body}
      401: {description: No valid API key}
      403: {description: The key's role is agent}
      404: {description: No such endpoint (or not the caller's)}
    """
    endpoint_id = _endpoint_id(request)
    body = await _object(request, PATCH_FIELDS)
    reg = registry(request)
    endpoint = await reg.update(caller.account, endpoint_id, body)
    return JSONResponse(await _view(reg, endpoint))


@admin(Role.PROVIDER)
async def disable_endpoint(request: Request, caller: Credential) -> Response:
    """
    summary: Disable a paid endpoint (it is kept, never deleted).
    description: >
      Its 402 answers 404 from now on and no payment for it is settled; payments and ledger
      entries keep pointing at it. Disabling again changes nothing.
    responses:
      200: {description: The disabled endpoint}
      400: {description: "Not an endpoint id, or a body"}
      401: {description: No valid API key}
      403: {description: The key's role is agent}
      404: {description: No such endpoint (or not the caller's)}
    """
    endpoint_id = _endpoint_id(request)
    await _object(request, ())
    reg = registry(request)
    endpoint = await reg.disable(caller.account, endpoint_id)
    return JSONResponse(await _view(reg, endpoint))


async def endpoint_requirements(request: Request) -> Response:
    """
    summary: The x402 payment requirements of a paid endpoint (402).
    description: >
      No key needed. Answers 402 as the mint route does (x402 v1 JSON body, v2
      PAYMENT-REQUIRED header): amount x units (units 1 for a fixed price, 1..max_units
      per unit), extra holding the asset's EIP-712 name and version and payfirst's
      {endpoint, units}. url is the concrete URL served for a path-pattern resource (its
      path must match the pattern).
    responses:
      400: {description: "Bad units or url"}
      402: {description: The payment requirements}
      404: {description: No such endpoint, or disabled}
    """
    try:
        services(request).admit_client(request)
        endpoint_id = _endpoint_id(request, Reason.UNKNOWN_ENDPOINT)
        units = check_units(request.query_params.get("units"))
        quote = await registry(request).quote(endpoint_id, units, request.query_params.get("url"))
    except PaymentRejected as exc:
        return rejection(exc)
    body, header = payment_required(quote)
    return JSONResponse(body, status_code=402, headers={PAYMENT_REQUIRED: header})


async def discovery_resources(request: Request) -> Response:
    """
    summary: The x402 Bazaar listing of discoverable paid endpoints.
    description: >
      No key needed. x402 DiscoveryResourcesResponse - x402Version, items (resource,
      type http, x402Version, accepts, lastUpdated, description, mimeType, extensions),
      pagination (limit, offset, total). type filters by protocol (only http is listed
      here); limit 1..100 (default 20); offset 0..10000. Each item's extensions.bazaar is
      x402's discovery extension, its info valid against its schema.
    responses:
      200: {description: A page of discoverable resources}
      400: {description: "Bad type, limit or offset"}
    """
    try:
        services(request).admit_client(request)
        limit = _number(request, "limit", DISCOVERY_DEFAULT_LIMIT, 1, DISCOVERY_MAX_LIMIT)
        offset = _number(request, "offset", 0, 0, DISCOVERY_MAX_OFFSET)
        kind = request.query_params.get("type")
        if kind is not None and (len(kind) > 32 or not kind.isascii()):
            raise PaymentRejected(Reason.INVALID_REQUEST, "type must be a protocol such as http")
    except PaymentRejected as exc:
        return rejection(exc)
    if kind is None or kind == "http":
        quotes, total = await registry(request).discoverable(limit, offset)
    else:
        quotes, total = [], 0
    return JSONResponse(
        {
            "x402Version": 2,
            "items": [discovery_item(q) for q in quotes],
            "pagination": {"limit": limit, "offset": offset, "total": total},
        }
    )


# --- parameters and views -------------------------------------------------------------------


def _endpoint_id(request: Request, reason: Reason = Reason.INVALID_REQUEST) -> UUID:
    text = request.path_params["endpoint_id"]
    try:
        return check_id(text, "the endpoint id")
    except PaymentRejected:
        if reason is Reason.UNKNOWN_ENDPOINT:
            raise PaymentRejected(reason, "no such endpoint") from None
        raise


def _number(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not _NUMBER.fullmatch(text) or not low <= int(text) <= high:
        raise PaymentRejected(Reason.INVALID_REQUEST, f"{name} must be an integer {low}..{high}")
    return int(text)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def _views(reg: EndpointRegistry, endpoints: list[Endpoint]) -> list[dict[str, Any]]:
    assets: dict[int, list[AssetInfo]] = {}
    views = []
    for e in endpoints:
        if e.chain_id not in assets:
            assets[e.chain_id] = await reg.assets(e.chain_id)
        known = next((a for a in assets[e.chain_id] if a.address.lower() == e.asset.lower()), None)
        views.append(endpoint_view(e, known))
    return views


async def _view(reg: EndpointRegistry, endpoint: Endpoint) -> dict[str, Any]:
    return endpoint_view(endpoint, await reg.asset(endpoint.chain_id, endpoint.asset))


def endpoint_view(endpoint: Endpoint, asset: AssetInfo | None) -> dict[str, Any]:
    """An endpoint as the API shows it: the amount a string of atomic units, the asset's
    decimals alongside (None for an asset no longer settled here)."""
    e = endpoint
    return {
        "id": str(e.id),
        "provider_id": str(e.provider_id),
        "method": e.method,
        "resource": e.resource,
        "pricing": e.pricing.value,
        "amount": str(e.amount),
        "unit_param": e.unit_param,
        "max_units": e.max_units,
        "network": caip2(e.chain_id),
        "asset": e.asset,
        "decimals": None if asset is None else asset.decimals,
        "pay_to": e.pay_to,
        "description": e.description,
        "mime_type": e.mime_type,
        "input_schema": e.input_schema,
        "output_schema": e.output_schema,
        "discoverable": e.discoverable,
        "max_timeout_seconds": e.max_timeout_seconds,
        "created_at": _time(e.created_at),
        "updated_at": _time(e.updated_at),
        "disabled_at": _time(e.disabled_at),
    }
