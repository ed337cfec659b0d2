"""The provider's routes as payfirst's registry prices them (`PaymentMiddleware(api_key=...)`).

The provider keeps no price table: the middleware reads its endpoints from payfirst
(`GET /v1/endpoints` with its key, again every `ttl_s`) to know which requests are paid, and
payfirst's 402 for each endpoint (`GET /v1/endpoints/{id}/requirements`, once per `ttl_s`),
so the price, asset, network and payee are always payfirst's. A request's own requirements
are that 402 with its URL and, for a per-unit price, units x the unit price: unpaid
requests never reach payfirst one by one. payfirst checks the requirements against the
registry again when it verifies and settles the payment."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from re import Pattern
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError
from starlette.routing import compile_path

from payfirst.domain.errors import PaymentRejected
from payfirst.x402 import (
    PAYMENT_REQUIRED,
    PaymentRequiredV1,
    PaymentRequiredV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    ResourceInfo,
    decode_header,
)

log = logging.getLogger("payfirst.provider")

#: How long the endpoint list and an endpoint's requirements are reused.
REGISTRY_TTL_S: Final = 30.0
#: Requirements kept for this many (endpoint, units, URL) at most.
MAX_CACHED_REQUIREMENTS: Final = 1024
#: The unit count of a per-unit request: digits, and not more than this many.
MAX_UNIT_DIGITS: Final = 9
_PAGE: Final = 100
_MAX_PAGES: Final = 100


class RegistryUnavailable(Exception):
    """payfirst's registry could not be read (unreachable, or an answer not understood)."""


class EndpointDisabled(Exception):
    """The request is to one of the provider's endpoints that is disabled: not for sale,
    and not served free either."""


class UnitsRefused(Exception):
    """payfirst refused the request's unit count (or the URL) for this endpoint; the
    message says why."""


@dataclass(frozen=True)
class RegisteredEndpoint:
    """One endpoint of the provider, as payfirst lists it."""

    id: str
    method: str  # "*" for any
    pattern: Pattern[str]
    unit_param: str | None  # per-unit pricing: the query parameter or JSON field
    max_units: int | None = None
    disabled: bool = False


@dataclass(frozen=True)
class RegisteredPrice:
    """What payfirst asks for one request to an endpoint: its 402's requirements."""

    endpoint_id: str
    v1: PaymentRequirementsV1
    v2: PaymentRequirementsV2
    resource: ResourceInfo
    units: int = 1
    description: str = ""
    mime_type: str = "application/json"

    def for_request(self, units: int, url: str) -> RegisteredPrice:
        """These requirements for `units` at `url`: units x the unit price, the URL as
        the resource, and the units in extra.payfirst (what payfirst prices again)."""
        amount = int(self.v2.amount) * units
        extra = dict(self.v2.extra or {})
        extra["payfirst"] = {**dict(extra.get("payfirst") or {}), "units": units}
        return replace(
            self,
            units=units,
            v1=self.v1.model_copy(
                update={"max_amount_required": str(amount), "resource": url, "extra": extra}
            ),
            v2=self.v2.model_copy(update={"amount": str(amount), "extra": extra}),
            resource=self.resource.model_copy(update={"url": url}),
        )

    def requirements_v1(self, resource: str) -> PaymentRequirementsV1:
        return self.v1

    def requirements_v2(self) -> PaymentRequirementsV2:
        return self.v2

    def resource_info(self, resource: str) -> ResourceInfo:
        return self.resource


def parse_endpoint(data: Mapping[str, Any]) -> RegisteredEndpoint:
    """An endpoint of `GET /v1/endpoints`; a full-URL resource matches by its path."""
    resource = str(data["resource"])
    path = resource if resource.startswith("/") else (urlsplit(resource).path or "/")
    pattern, _, _ = compile_path(path)
    per_unit = data.get("pricing") == "per_unit"
    unit_param = data.get("unit_param") if per_unit else None
    max_units = data.get("max_units") if per_unit else None
    return RegisteredEndpoint(
        id=str(data["id"]),
        method=str(data.get("method") or "*").upper(),
        pattern=pattern,
        unit_param=str(unit_param) if unit_param else None,
        max_units=max_units if isinstance(max_units, int) else None,
        disabled=bool(data.get("disabled_at")),
    )


class EndpointRegistry:
    """The provider's endpoints and their requirements, read from payfirst at `url`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        api_key: str,
        *,
        ttl_s: float = REGISTRY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._ttl_s = ttl_s
        self._clock = clock
        self._endpoints: list[RegisteredEndpoint] | None = None
        self._loaded_at = 0.0
        self._prices: OrderedDict[str, tuple[float, RegisteredPrice]] = OrderedDict()

    async def match(self, method: str, path: str) -> RegisteredEndpoint | None:
        """The first of the provider's endpoints (disabled ones too: the caller refuses
        them) that matches the request; HEAD matches GET, as Starlette serves it. Raises
        RegistryUnavailable while no whole list was ever read: a paid route is never
        served free because payfirst could not be asked."""
        methods = ("*", method, "GET") if method == "HEAD" else ("*", method)
        for endpoint in await self._current():
            if endpoint.method in methods and endpoint.pattern.match(path):
                return endpoint
        return None

    async def price(self, endpoint: RegisteredEndpoint, units: int, url: str) -> RegisteredPrice:
        """payfirst's requirements for `units` of `endpoint` served at `url`."""
        now = self._clock()
        cached = self._prices.get(endpoint.id)
        if cached is not None and now - cached[0] < self._ttl_s:
            self._prices.move_to_end(endpoint.id)
            return cached[1].for_request(units, url)
        template = await self._fetch_price(endpoint)
        self._prices[endpoint.id] = (now, template)
        self._prices.move_to_end(endpoint.id)
        while len(self._prices) > MAX_CACHED_REQUIREMENTS:
            self._prices.popitem(last=False)
        return template.for_request(units, url)

    def forget(self, endpoint_id: str) -> None:
        """Read the list and this endpoint's price again at the next request (payfirst
        refused a price: it changed)."""
        self._prices.pop(endpoint_id, None)
        self._loaded_at = float("-inf")

    async def _current(self) -> list[RegisteredEndpoint]:
        if self._endpoints is not None and self._clock() - self._loaded_at < self._ttl_s:
            return self._endpoints
        try:
            self._endpoints = await self._fetch_endpoints()
            self._loaded_at = self._clock()
        except RegistryUnavailable as exc:
            if self._endpoints is None:
                raise
            log.warning("x402 provider: endpoint list not refreshed, the last one kept: %s", exc)
            self._loaded_at = self._clock()  # ask again after a ttl, not at every request
        return self._endpoints

    async def _fetch_endpoints(self) -> list[RegisteredEndpoint]:
        endpoints: list[RegisteredEndpoint] = []
        after: str | None = None
        for _ in range(_MAX_PAGES):
            params = {"limit": str(_PAGE), "include_disabled": "true"}
            data = await self._get_json(
                "/v1/endpoints", params | ({"after": after} if after else {})
            )
            try:
                page = data["endpoints"]
                endpoints += [parse_endpoint(e) for e in page]
                if not data.get("has_more") or not page:
                    return endpoints
                after = str(page[-1]["id"])
            except (KeyError, TypeError, ValueError) as exc:
                raise RegistryUnavailable(f"unexpected endpoint list: {exc!r}") from exc
        # A partial list could leave a paid route unmatched, and so free.
        raise RegistryUnavailable(f"more than {_PAGE * _MAX_PAGES} endpoints")

    async def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        answer = await self._get(path, params)
        if answer.status_code != 200:
            raise RegistryUnavailable(f"GET {path} answered HTTP {answer.status_code}")
        data = _json(answer)
        if not isinstance(data, dict):
            raise RegistryUnavailable(f"GET {path} answered no JSON object")
        return data

    async def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        try:
            return await self._client.get(
                f"{self._url}{path}", params=params, headers=self._headers, timeout=15.0
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"payfirst unreachable: {exc!r}") from exc

    async def _fetch_price(self, endpoint: RegisteredEndpoint) -> RegisteredPrice:
        """payfirst's 402 for one unit of `endpoint`."""
        path = f"/v1/endpoints/{endpoint.id}/requirements"
        answer = await self._get(path, {"units": "1"})
        data = _json(answer)
        if answer.status_code == 400:
            message = data.get("message") if isinstance(data, dict) else None
            raise UnitsRefused(str(message or "refused by payfirst"))
        if answer.status_code != 402 or not isinstance(data, dict):
            self._loaded_at = 0.0  # the endpoint may be gone: read the list again
            raise RegistryUnavailable(f"GET {path} answered HTTP {answer.status_code}")
        try:
            v1 = PaymentRequiredV1.model_validate(data)
            v2 = PaymentRequiredV2.model_validate(decode_header(answer.headers[PAYMENT_REQUIRED]))
            resource = v2.resource or ResourceInfo(url=v1.accepts[0].resource)
            return RegisteredPrice(
                endpoint_id=endpoint.id,
                v1=v1.accepts[0],
                v2=v2.accepts[0],
                resource=resource,
                description=resource.description or "",
                mime_type=resource.mime_type or "application/json",
            )
        except (KeyError, IndexError, ValidationError, ValueError, PaymentRejected) as exc:
            raise RegistryUnavailable(f"GET {path}: not an x402 402: {exc!r}") from exc


def units_of(value: object) -> int | None:
    """A unit count as a request gives it (a query value or a JSON field), or None when it
    is not a whole number 1..10^9-1 (payfirst applies the endpoint's own bounds)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value < 10**MAX_UNIT_DIGITS else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value) if len(value) <= MAX_UNIT_DIGITS and int(value) >= 1 else None
    return None


def _json(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
