"""Providers' paid endpoints, without HTTP: registering and changing them (who may, and the
checks of what a caller gives), the payment requirements payfirst answers for them, the
Bazaar listing of the discoverable ones, and what a settlement for one must match.

The price is the registry's: a settlement naming an endpoint (`extra.payfirst.endpoint` of
its requirements) is refused unless its amount, asset, network and payTo are exactly what
the registry prices for the units it names. A change of price applies to the payments
accepted after it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from payfirst.domain.accounts import Account, Role
from payfirst.domain.endpoints import (
    ANY_METHOD,
    DEFAULT_MAX_UNITS,
    DEFAULT_MIME_TYPE,
    DEFAULT_TIMEOUT_S,
    MAX_DESCRIPTION_CHARS,
    MAX_ENDPOINTS_PER_PROVIDER,
    MAX_RESOURCE_CHARS,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    MAX_TIMEOUT_S,
    MAX_UNITS_LIMIT,
    METHODS,
    MIN_TIMEOUT_S,
    UINT256_MAX,
    Endpoint,
    Pricing,
    is_url,
    path_regex,
)
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.evm.abi import checksum
from payfirst.ports.store import Store
from payfirst.usecases.accounts import Now, Page, check_id, may_act_for, utc_now
from payfirst.usecases.deps import ServedNetwork, ServedNetworks, Tokens
from payfirst.x402 import (
    SCHEME_EXACT,
    PaymentRequiredV1,
    PaymentRequiredV2,
    PaymentRequirements,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    ResourceInfo,
    caip2,
    chain_id_of,
    encode_header,
    v1_network,
    wire,
)

#: The body fields of POST /v1/endpoints; PATCH takes the same but provider_id.
FIELDS: Final = frozenset(
    {
        "provider_id",
        "method",
        "resource",
        "pricing",
        "amount",
        "unit_param",
        "max_units",
        "network",
        "asset",
        "pay_to",
        "description",
        "mime_type",
        "input_schema",
        "output_schema",
        "discoverable",
        "max_timeout_seconds",
    }
)
PATCH_FIELDS: Final = FIELDS - {"provider_id"}
#: The key of payfirst's own part of a requirement's `extra`.
EXTRA_KEY: Final = "payfirst"
#: The `error` of a 402 payfirst answers for an endpoint (as the provider middleware's).
PAYMENT_REQUIRED_ERROR: Final = "payment required"
MAX_URL_CHARS: Final = 2048
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
#: What the Bazaar lists for an endpoint of any method (x402 falls back to GET as well).
BAZAAR_ANY_METHOD: Final = "GET"
ZERO_ADDRESS: Final = "0x" + "0" * 40
JSON_SCHEMA: Final = "https://json-schema.org/draft/2020-12/schema"

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_AMOUNT: Final = re.compile(r"[0-9]{1,78}", re.ASCII)
_UNIT_PARAM: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}", re.ASCII)
_MIME: Final = re.compile(
    r"[A-Za-z0-9!#$&^_.+\-]{1,64}/[A-Za-z0-9!#$&^_.+\-]{1,64}(;[ -~]{0,120})?"
)


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """An asset payfirst knows on a network: what payers sign (EIP-712 name, version)."""

    address: str
    name: str
    version: str
    decimals: int


@dataclass(frozen=True, slots=True)
class Quote:
    """What `units` of an endpoint cost, for the resource URL `resource`."""

    endpoint: Endpoint
    asset: AssetInfo
    units: int
    resource: str

    @property
    def amount(self) -> int:
        return self.endpoint.price(self.units)


@dataclass(frozen=True, slots=True)
class Sale:
    """A settlement for an endpoint, as the registry prices it: `provider_id` and `fee_bps`
    are set when the platform collects (payTo is the network's treasury)."""

    endpoint: Endpoint
    units: int
    provider_id: UUID | None = None
    fee_bps: int | None = None


def _invalid(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_REQUEST, message)


def _unknown() -> PaymentRejected:
    # The same answer for a missing endpoint and another provider's.
    return PaymentRejected(Reason.UNKNOWN_ENDPOINT, "no such endpoint")


def _mismatch(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_PAYMENT_REQUIREMENTS, message)


# --- checks of what a caller gives (PaymentRejected(INVALID_REQUEST) says what is wrong) ---


def check_method(value: object) -> str:
    if value is None:
        return ANY_METHOD
    if isinstance(value, str) and (value == ANY_METHOD or value in METHODS):
        return value
    raise _invalid(f"method must be one of {', '.join(METHODS)} or *")


def check_resource(value: object) -> str:
    """A path pattern ('/weather/{city}') or a full http(s) URL, 1..512 characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_RESOURCE_CHARS:
        raise _invalid(f"resource must be a path or URL of 1..{MAX_RESOURCE_CHARS} characters")
    if value.startswith("/"):
        try:
            path_regex(value)
        except ValueError as exc:
            raise _invalid(f"resource: {exc}") from None
        return value
    if not is_url(value) or not _url_ok(value):
        raise _invalid("resource must be a path starting with / or a full http(s) URL")
    return value


def _url_ok(value: str) -> bool:
    if not value.isascii() or not value.isprintable() or " " in value:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_pricing(value: object) -> Pricing:
    if value is None:
        return Pricing.FIXED
    if isinstance(value, str) and value in {p.value for p in Pricing}:
        return Pricing(value)
    raise _invalid("pricing must be fixed or per_unit")


def check_amount(value: object) -> int:
    """Atomic units, a decimal string or an integer, 1 .. 78 digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        amount = value
    elif isinstance(value, str) and _AMOUNT.fullmatch(value):
        amount = int(value)
    else:
        raise _invalid("amount must be atomic units: a decimal string or an integer")
    if not 0 < amount <= UINT256_MAX:
        raise _invalid("amount must be above 0 and fit in 256 bits")
    return amount


def check_unit_param(value: object) -> str:
    if isinstance(value, str) and _UNIT_PARAM.fullmatch(value):
        return value
    raise _invalid(
        "unit_param must name the query parameter or body field holding the unit count "
        "(1..64 of letters, digits, _ . -)"
    )


def check_max_units(value: object) -> int:
    if value is None:
        return DEFAULT_MAX_UNITS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_UNITS_LIMIT:
        raise _invalid(f"max_units must be an integer 1..{MAX_UNITS_LIMIT}")
    return value


def check_address(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise _invalid(f"{what} must be a 0x address of 40 hex digits")
    return checksum(value)


def check_description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_CHARS:
        raise _invalid(
            f"description must be a string of at most {MAX_DESCRIPTION_CHARS} characters"
        )
    if not value.replace("\n", " ").replace("\t", " ").isprintable():
        raise _invalid("description must hold printable characters only")
    return value


def check_mime_type(value: object) -> str:
    if value is None:
        return DEFAULT_MIME_TYPE
    if isinstance(value, str) and _MIME.fullmatch(value):
        return value
    raise _invalid("mime_type must be a media type such as application/json")


def check_schema(value: object, what: str) -> dict[str, Any] | None:
    """A JSON object of at most MAX_SCHEMA_DEPTH levels and MAX_SCHEMA_BYTES as JSON, no
    NUL character in a key or a string (PostgreSQL's jsonb cannot hold one)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"{what} must be a JSON object")
    _check_json(value, what)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_SCHEMA_BYTES:
        raise _invalid(f"{what} must be at most {MAX_SCHEMA_BYTES} bytes as JSON")
    return value


def _check_json(value: dict[str, Any], what: str) -> None:
    # Iterative: a schema at the body's own depth limit never nears the recursion limit.
    todo: list[tuple[object, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise _invalid(f"{what} must not hold a NUL character (\\u0000)")
        elif isinstance(item, dict | list):
            if depth > MAX_SCHEMA_DEPTH:
                raise _invalid(f"{what} must be at most {MAX_SCHEMA_DEPTH} levels deep")
            if isinstance(item, dict):
                todo.extend((key, depth) for key in item)
                todo.extend((child, depth + 1) for child in item.values())
            else:
                todo.extend((child, depth + 1) for child in item)


def check_flag(value: object, what: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise _invalid(f"{what} must be true or false")


def check_timeout(value: object) -> int:
    if value is None:
        return DEFAULT_TIMEOUT_S
    low, high = MIN_TIMEOUT_S, MAX_TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"max_timeout_seconds must be an integer {low}..{high}")
    return value


def check_units(text: str | None) -> int:
    """The `units` query parameter: 1 when absent."""
    if text is None:
        return 1
    if not text.isascii() or not text.isdigit() or len(text) > 7:
        raise _invalid("units must be a positive integer")
    return int(text)


def _fields(endpoint: Endpoint) -> dict[str, object]:
    """An endpoint's terms as a body would give them (what a partial change starts from)."""
    return {
        "method": endpoint.method,
        "resource": endpoint.resource,
        "pricing": endpoint.pricing.value,
        "amount": endpoint.amount,
        "unit_param": endpoint.unit_param,
        "max_units": endpoint.max_units,
        "network": caip2(endpoint.chain_id),
        "asset": endpoint.asset,
        "pay_to": endpoint.pay_to,
        "description": endpoint.description,
        "mime_type": endpoint.mime_type,
        "input_schema": endpoint.input_schema,
        "output_schema": endpoint.output_schema,
        "discoverable": endpoint.discoverable,
        "max_timeout_seconds": endpoint.max_timeout_seconds,
    }


class EndpointRegistry:
    def __init__(
        self,
        store: Store,
        networks: ServedNetworks,
        tokens: Tokens,
        *,
        platform_fee_bps: int = 0,
        now: Now = utc_now,
    ) -> None:
        self._store = store
        self._networks = networks
        self._tokens = tokens
        self._platform_fee_bps = platform_fee_bps
        self._now = now

    # --- the registry (the /v1/endpoints routes) ---------------------------------------

    async def create(self, caller: Account, body: Mapping[str, object]) -> Endpoint:
        """Register an endpoint from a body's fields (checked; unknown ones are the
        caller's to refuse). A provider registers its own; the operator names the
        provider (provider_id). A provider has at most MAX_ENDPOINTS_PER_PROVIDER enabled
        endpoints: one more is invalid_request (disabling one frees its place)."""
        given = body.get("provider_id")
        if caller.role is Role.OPERATOR:
            if given is None:
                raise _invalid("provider_id is required: the provider the endpoint is for")
            provider_id = check_id(given, "provider_id")
            provider = await self._store.get_account(provider_id)
            if provider is None or not provider.active or provider.role is not Role.PROVIDER:
                raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such provider account")
        else:
            provider_id = caller.id
            if given is not None and check_id(given, "provider_id") != caller.id:
                raise _invalid("a provider registers its own endpoints only")
        now = self._now()
        terms = await self._terms(body)
        endpoint = replace(terms, provider_id=provider_id, created_at=now, updated_at=now)
        if not await self._store.create_endpoint(endpoint, limit=MAX_ENDPOINTS_PER_PROVIDER):
            raise _invalid(
                f"a provider has at most {MAX_ENDPOINTS_PER_PROVIDER} enabled endpoints:"
                " disable one first"
            )
        return endpoint

    async def endpoint(self, caller: Account, endpoint_id: UUID) -> Endpoint:
        """An endpoint the caller may see (unknown_endpoint for any other)."""
        found = await self._store.get_endpoint(endpoint_id)
        if found is None or not may_act_for(caller, found.provider_id):
            raise _unknown()
        return found

    async def endpoints(
        self,
        caller: Account,
        *,
        limit: int,
        provider_id: UUID | None = None,
        after: UUID | None = None,
        include_disabled: bool = False,
    ) -> Page[Endpoint]:
        """A page of endpoints: a provider's own; the operator's, everyone's or one
        provider's. Another provider named by a provider: unknown_account. `after` must be
        one of the endpoints listed (invalid_request otherwise, the same for an unknown id
        and another provider's)."""
        if caller.role is not Role.OPERATOR:
            if provider_id is not None and provider_id != caller.id:
                raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")
            provider_id = caller.id
        if after is not None:
            found = await self._store.get_endpoint(after)
            if found is None or provider_id not in (None, found.provider_id):
                raise _invalid("after must be the id of an endpoint of this listing")
        rows = await self._store.list_endpoints(
            limit + 1, provider_id=provider_id, after=after, include_disabled=include_disabled
        )
        return Page(rows[:limit], len(rows) > limit)

    async def update(
        self, caller: Account, endpoint_id: UUID, body: Mapping[str, object]
    ) -> Endpoint:
        """Change some of an endpoint's terms; the result is checked whole. A change of
        network names the asset and payTo on it too (the same network named again
        changes nothing; null is refused); a fixed price drops the per-unit fields."""
        current = await self.endpoint(caller, endpoint_id)
        merged = _fields(current)
        if "network" in body:
            if body["network"] is None:
                raise _invalid("network cannot be null: name a network served here")
            served = self._network(body["network"])
            if served.network.chain_id != current.chain_id:
                missing = [key for key in ("asset", "pay_to") if body.get(key) is None]
                if missing:
                    raise _invalid(
                        f"a change of network needs {' and '.join(missing)} on it as well"
                    )
        if body.get("pricing") == Pricing.FIXED.value:
            for key in ("unit_param", "max_units"):
                if key not in body:
                    merged.pop(key)
        merged.update(body)
        terms = await self._terms(merged)
        changed = replace(
            terms,
            id=current.id,
            provider_id=current.provider_id,
            created_at=current.created_at,
            updated_at=self._now(),
            disabled_at=current.disabled_at,
        )
        stored = await self._store.update_endpoint(changed)
        if stored is None:
            raise _unknown()
        return stored

    async def disable(self, caller: Account, endpoint_id: UUID) -> Endpoint:
        await self.endpoint(caller, endpoint_id)
        disabled = await self._store.disable_endpoint(endpoint_id, self._now())
        if disabled is None:
            raise _unknown()
        return disabled

    async def _terms(self, body: Mapping[str, object]) -> Endpoint:
        """The endpoint a body describes (ids and times are the caller's to set)."""
        method = check_method(body.get("method"))
        resource = check_resource(body.get("resource"))
        pricing = check_pricing(body.get("pricing"))
        if "amount" not in body or body["amount"] is None:
            raise _invalid("amount is required (atomic units of the asset)")
        amount = check_amount(body["amount"])
        unit_param: str | None = None
        max_units: int | None = None
        if pricing is Pricing.PER_UNIT:
            if body.get("unit_param") is None:
                raise _invalid("unit_param is required for per_unit pricing")
            unit_param = check_unit_param(body["unit_param"])
            max_units = check_max_units(body.get("max_units"))
            if amount * max_units > UINT256_MAX:
                raise _invalid("amount x max_units must fit in 256 bits")
        elif body.get("unit_param") is not None or body.get("max_units") is not None:
            raise _invalid("unit_param and max_units are for per_unit pricing only")
        served = self._network(body.get("network"))
        asset = await self._asset_of(served, body.get("asset"))
        pay_to = self._pay_to(served, body.get("pay_to"))
        await self._check_pay_to(served, asset, pay_to)
        discoverable = check_flag(body.get("discoverable"), "discoverable")
        if discoverable and not is_url(resource):
            raise _invalid("a discoverable endpoint's resource must be a full URL")
        return Endpoint(
            id=uuid4(),
            provider_id=UUID(int=0),
            method=method,
            resource=resource,
            pricing=pricing,
            amount=amount,
            unit_param=unit_param,
            max_units=max_units,
            asset=asset.address,
            chain_id=served.network.chain_id,
            pay_to=pay_to,
            description=check_description(body.get("description")),
            mime_type=check_mime_type(body.get("mime_type")),
            input_schema=check_schema(body.get("input_schema"), "input_schema"),
            output_schema=check_schema(body.get("output_schema"), "output_schema"),
            discoverable=discoverable,
            max_timeout_seconds=check_timeout(body.get("max_timeout_seconds")),
            created_at=self._now(),
            updated_at=self._now(),
        )

    def _network(self, value: object) -> ServedNetwork:
        """The served network named (CAIP-2 or v1 name); absent: the default (the first)."""
        if value is None:
            if not self._networks.all:
                raise _invalid("this instance serves no network")
            return self._networks.all[0]
        served = self._networks.get(value) if isinstance(value, str) else None
        if served is None:
            raise _invalid(f"network must be one served here: {self._networks.describe()}")
        return served

    async def _asset_of(self, served: ServedNetwork, value: object) -> AssetInfo:
        chain_id = served.network.chain_id
        if value is None:
            known = await self.assets(chain_id)
            if not known:
                raise _invalid(f"asset is required: {served.network.caip2} has no default asset")
            return known[0]
        address = check_address(value, "asset")
        found = await self.asset(chain_id, address)
        if found is None:
            raise _invalid(f"asset {address} is not one payfirst settles on {served.network.caip2}")
        return found

    async def _check_pay_to(self, served: ServedNetwork, asset: AssetInfo, pay_to: str) -> None:
        """No payTo that would lose or trap the money: the zero address, the asset's own
        contract, the network's settler contract, a token payfirst sells by mint."""
        settler = served.network.settler_address
        if pay_to.lower() == ZERO_ADDRESS:
            raise _invalid("pay_to must not be the zero address")
        if pay_to.lower() == asset.address.lower():
            raise _invalid("pay_to must not be the asset's own contract")
        if settler is not None and pay_to.lower() == settler.lower():
            raise _invalid("pay_to must not be the network's settler contract")
        if pay_to in {t.address for t in await self._tokens.all()}:
            raise _invalid(f"pay_to {pay_to} is a token payfirst sells by mint")

    def _pay_to(self, served: ServedNetwork, value: object) -> str:
        if value is not None:
            return check_address(value, "pay_to")
        treasury = served.network.treasury_address
        if treasury is None:
            raise _invalid(f"pay_to is required: {served.network.caip2} has no treasury")
        return checksum(treasury)

    # --- assets ---------------------------------------------------------------------------

    async def assets(self, chain_id: int) -> list[AssetInfo]:
        """The assets payfirst settles on a chain, the network's own first (its first is
        the default), then those the tokens sold there are paid in."""
        served = self._networks.by_chain_id(chain_id)
        known: dict[str, AssetInfo] = {}
        if served is not None:
            for a in served.network.assets:
                known.setdefault(
                    a.address.lower(), AssetInfo(a.address, a.name, a.version, a.decimals)
                )
        tokens = sorted(
            (t for t in await self._tokens.all() if t.chain_id == chain_id),
            key=lambda t: t.address.lower(),
        )
        for t in tokens:
            known.setdefault(
                t.payment_asset.lower(),
                AssetInfo(t.payment_asset, t.asset_name, t.asset_version, t.asset_decimals),
            )
        return list(known.values())

    async def asset(self, chain_id: int, address: str) -> AssetInfo | None:
        wanted = address.lower()
        return next((a for a in await self.assets(chain_id) if a.address.lower() == wanted), None)

    # --- the 402 and the Bazaar listing (no key) --------------------------------------

    async def quote(self, endpoint_id: UUID, units: int, url: str | None) -> Quote:
        """What `units` of an enabled endpoint cost at `url` (a path-pattern resource: the
        concrete URL served, whose path must match; absent: the pattern itself; a
        full-URL resource: ignored)."""
        endpoint = await self._store.get_endpoint(endpoint_id)
        if endpoint is None or not endpoint.enabled:
            raise _unknown()
        if not endpoint.units_allowed(units):
            most = 1 if endpoint.pricing is Pricing.FIXED else endpoint.max_units
            raise _invalid(f"units must be 1..{most} for this endpoint")
        resource = (
            endpoint.resource if url is None or endpoint.is_url else _served_url(endpoint, url)
        )
        asset = await self.asset(endpoint.chain_id, endpoint.asset)
        if asset is None:
            raise PaymentRejected(
                Reason.SERVICE_UNAVAILABLE, "this endpoint's asset is not settled here any more"
            )
        return Quote(endpoint, asset, units, resource)

    async def discoverable(self, limit: int, offset: int) -> tuple[list[Quote], int]:
        """A page of the Bazaar listing (one unit each) and how many there are in all; an
        endpoint whose asset is no longer settled here is left out."""
        rows, total = await self._store.discoverable_endpoints(limit, offset)
        quotes = []
        for endpoint in rows:
            asset = await self.asset(endpoint.chain_id, endpoint.asset)
            if asset is not None:
                quotes.append(Quote(endpoint, asset, 1, endpoint.resource))
        return quotes, total

    # --- settlement ---------------------------------------------------------------------

    async def names_endpoint_of(
        self, caller: Account, requirements: PaymentRequirements, endpoint_id: UUID
    ) -> bool:
        """Whether the requirements name the endpoint `endpoint_id` (extra.payfirst) and
        the caller may act for it, enabled or not (a settlement already queued for it)."""
        tag = (requirements.extra or {}).get(EXTRA_KEY)
        try:
            named = check_id(tag.get("endpoint") if isinstance(tag, dict) else None, "endpoint")
        except PaymentRejected:
            return False
        if named != endpoint_id:
            return False
        endpoint = await self._store.get_endpoint(endpoint_id)
        return endpoint is not None and may_act_for(caller, endpoint.provider_id)

    async def sale(self, caller: Account, requirements: PaymentRequirements) -> Sale | None:
        """What a settlement whose requirements name an endpoint (extra.payfirst) records;
        None when they name none. INVALID_PAYMENT_REQUIREMENTS unless the endpoint is
        enabled, the caller's (the operator: any), and the requirements are exactly the
        registry's price for the units named."""
        tag = (requirements.extra or {}).get(EXTRA_KEY)
        if tag is None:
            return None
        if not isinstance(tag, dict):
            raise _mismatch("extra.payfirst must be an object: {endpoint, units}")
        try:
            endpoint_id = check_id(tag.get("endpoint"), "extra.payfirst.endpoint")
        except PaymentRejected as exc:
            raise _mismatch(exc.message) from None
        units = tag.get("units", 1)
        if isinstance(units, bool) or not isinstance(units, int):
            raise _mismatch("extra.payfirst.units must be an integer")
        endpoint = await self._store.get_endpoint(endpoint_id)
        if (
            endpoint is None
            or not endpoint.enabled
            or not may_act_for(caller, endpoint.provider_id)
        ):
            raise _mismatch("no such endpoint")
        if not endpoint.units_allowed(units):
            raise _mismatch(f"this endpoint does not sell {units} units in one payment")
        price = endpoint.price(units)
        if int(requirements.amount) != price:
            raise _mismatch(f"the amount is not the endpoint's price: {price} for {units} units")
        try:
            chain_id = chain_id_of(requirements.network)
        except ValueError:
            chain_id = None
        if chain_id != endpoint.chain_id:
            raise _mismatch(f"the endpoint is sold on {caip2(endpoint.chain_id)}")
        if requirements.asset.lower() != endpoint.asset.lower():
            raise _mismatch(f"the endpoint is paid in {endpoint.asset}")
        if requirements.pay_to.lower() != endpoint.pay_to.lower():
            raise _mismatch(f"the endpoint is paid to {endpoint.pay_to}")
        served = self._networks.by_chain_id(endpoint.chain_id)
        treasury = None if served is None else served.network.treasury_address
        if treasury is None or treasury.lower() != endpoint.pay_to.lower():
            return Sale(endpoint, units)
        provider = await self._store.get_account(endpoint.provider_id)
        if provider is None or not provider.active:
            raise _mismatch("no such endpoint")
        fee_bps = self._platform_fee_bps if provider.fee_bps is None else provider.fee_bps
        return Sale(endpoint, units, provider.id, fee_bps)


def _served_url(endpoint: Endpoint, url: str) -> str:
    if len(url) > MAX_URL_CHARS or not is_url(url) or not _url_ok(url):
        raise _invalid(f"url must be a full http(s) URL of at most {MAX_URL_CHARS} characters")
    path = urlsplit(url).path or "/"
    if path_regex(endpoint.resource).fullmatch(path) is None:
        raise _invalid(f"url's path does not match the endpoint's resource {endpoint.resource}")
    return url


# --- x402 answers ---------------------------------------------------------------------------


def _extra(quote: Quote) -> dict[str, Any]:
    return {
        "name": quote.asset.name,
        "version": quote.asset.version,
        EXTRA_KEY: {"endpoint": str(quote.endpoint.id), "units": quote.units},
    }


def _input_info(endpoint: Endpoint) -> dict[str, Any]:
    info: dict[str, Any] = {"type": "http"}
    if endpoint.method != ANY_METHOD:
        info["method"] = endpoint.method
    if endpoint.method in BODY_METHODS:
        info["bodyType"] = "json"
    return info


def _v1_output_schema(endpoint: Endpoint) -> dict[str, Any] | None:
    """x402 v1's `outputSchema`: how to call the resource (input) and what it answers."""
    if (
        endpoint.input_schema is None
        and endpoint.output_schema is None
        and not endpoint.discoverable
    ):
        return None
    given: dict[str, Any] = {**_input_info(endpoint), "discoverable": endpoint.discoverable}
    if endpoint.input_schema is not None:
        given["bodyFields" if endpoint.method in BODY_METHODS else "queryParams"] = (
            endpoint.input_schema
        )
    schema: dict[str, Any] = {"input": given}
    if endpoint.output_schema is not None:
        schema["output"] = endpoint.output_schema
    return schema


def requirements_v1(quote: Quote) -> PaymentRequirementsV1:
    e = quote.endpoint
    return PaymentRequirementsV1(
        scheme=SCHEME_EXACT,
        network=v1_network(e.chain_id),
        max_amount_required=str(quote.amount),
        resource=quote.resource,
        description=e.description,
        mime_type=e.mime_type,
        pay_to=e.pay_to,
        max_timeout_seconds=e.max_timeout_seconds,
        asset=e.asset,
        output_schema=_v1_output_schema(e),
        extra=_extra(quote),
    )


def requirements_v2(quote: Quote) -> PaymentRequirementsV2:
    e = quote.endpoint
    return PaymentRequirementsV2(
        scheme=SCHEME_EXACT,
        network=caip2(e.chain_id),
        amount=str(quote.amount),
        asset=e.asset,
        pay_to=e.pay_to,
        max_timeout_seconds=e.max_timeout_seconds,
        extra=_extra(quote),
    )


def bazaar_extension(endpoint: Endpoint) -> dict[str, Any]:
    """The Bazaar discovery extension of an endpoint, shaped as x402's own
    (createQueryDiscoveryExtension, createBodyDiscoveryExtension, with the method the
    resource server names): `info`, how it is called, with examples, and `schema`, the
    JSON Schema `info` is checked against (a facilitator drops an extension whose info
    fails it), holding the registry's input and output schemas. A method that takes a body
    has `bodyType` json and a `body` example, any other `queryParams`; `output` is {type
    json, example} when there is an output schema."""
    method = BAZAAR_ANY_METHOD if endpoint.method == ANY_METHOD else endpoint.method
    given = _embedded(endpoint.input_schema)
    input_info: dict[str, Any] = {"type": "http", "method": method}
    input_properties: dict[str, Any] = {
        "type": {"type": "string", "const": "http"},
        "method": {"type": "string", "enum": [method]},
    }
    required = ["type", "method"]
    if method in BODY_METHODS:
        body_schema = given if given is not None else {"properties": {}}
        input_info.update(bodyType="json", body=example_of(body_schema))
        input_properties["bodyType"] = {"type": "string", "enum": ["json", "form-data", "text"]}
        input_properties["body"] = body_schema
        required += ["bodyType", "body"]
    else:
        query_schema = {"type": "object", **(given if given is not None else {"properties": {}})}
        input_info["queryParams"] = example_of(query_schema)
        input_properties["queryParams"] = query_schema
    info: dict[str, Any] = {"input": input_info}
    properties: dict[str, Any] = {
        "input": {
            "type": "object",
            "properties": input_properties,
            "required": required,
            "additionalProperties": False,
        }
    }
    output = _embedded(endpoint.output_schema)
    if output is not None:
        example_schema = {"type": "object", **output}
        info["output"] = {"type": "json", "example": example_of(example_schema)}
        properties["output"] = {
            "type": "object",
            "properties": {"type": {"type": "string"}, "example": example_schema},
            "required": ["type"],
        }
    schema = {
        "$schema": JSON_SCHEMA,
        "type": "object",
        "properties": properties,
        "required": ["input"],
    }
    return {"info": info, "schema": schema}


def _embedded(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """A registry schema as a part of the extension's: its own `$schema` dropped (a JSON
    Schema names its dialect at its root only)."""
    if schema is None:
        return None
    return {k: v for k, v in schema.items() if k != "$schema"}


_MAX_EXAMPLE_ITEMS: Final = 16
_MAX_EXAMPLE_CHARS: Final = 256
_FORMAT_EXAMPLES: Final = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "agent@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_of(schema: object, depth: int = 0) -> Any:
    """A value a JSON Schema accepts, for its common keywords: its own example (const,
    examples, default, enum), else the least value of its type (an object with its
    required properties, the fewest items, the shortest string, the minimum). A schema
    needing more (a pattern, a $ref) may not accept it: the Bazaar then has the provider's
    schema, but not an example that passes it."""
    if not isinstance(schema, dict) or depth > MAX_SCHEMA_DEPTH:
        return {}
    if "const" in schema:
        return schema["const"]
    for key in ("examples", "enum"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return options[0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and "type" not in schema:
            return example_of(options[0], depth + 1)
    parts = schema.get("allOf")
    if isinstance(parts, list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in parts:
            if isinstance(part, dict):
                merged = _merged(merged, part)
        return example_of(merged, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "array" if "items" in schema else "object"
    match kind:
        case "object":
            return _object_example(schema, depth)
        case "array":
            count = _bounded(schema.get("minItems"), _MAX_EXAMPLE_ITEMS)
            return [example_of(schema.get("items", {}), depth + 1) for _ in range(count)]
        case "string":
            if schema.get("format") in _FORMAT_EXAMPLES:
                return _FORMAT_EXAMPLES[schema["format"]]
            return "x" * _bounded(schema.get("minLength"), _MAX_EXAMPLE_CHARS)
        case "integer" | "number":
            return _number_example(schema)
        case "boolean":
            return False
        case "null":
            return None
    return {}


def _object_example(schema: dict[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
    extra = schema.get("additionalProperties")
    return {
        name: example_of(properties.get(name, extra if isinstance(extra, dict) else {}), depth + 1)
        for name in names
    }


def _number_example(schema: dict[str, Any]) -> int:
    def bound(key: str) -> float | None:
        value = schema.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None

    low, above, high = bound("minimum"), bound("exclusiveMinimum"), bound("maximum")
    value = 0
    if low is not None:
        value = math.ceil(low)
    elif above is not None:
        value = math.floor(above) + 1
    elif high is not None and high < 0:
        value = math.floor(high)
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        value = -(-value // step) * step
    return value


def _bounded(value: object, most: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, min(value, most))
    return 0


def _merged(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two schemas an instance must both pass, as one (their properties and required
    names joined; b's other keywords win)."""
    merged = {**a, **b}
    props_a, props_b = a.get("properties"), b.get("properties")
    if isinstance(props_a, dict) and isinstance(props_b, dict):
        merged["properties"] = {**props_a, **props_b}
    req_a, req_b = a.get("required"), b.get("required")
    if isinstance(req_a, list) and isinstance(req_b, list):
        merged["required"] = [*req_a, *(n for n in req_b if n not in req_a)]
    return merged


def payment_required(
    quote: Quote, error: str = PAYMENT_REQUIRED_ERROR
) -> tuple[dict[str, Any], str]:
    """The 402 answer for a quote, as the mint route and the provider middleware give
    theirs: the v1 JSON body and the base64 v2 `PAYMENT-REQUIRED` header value."""
    e = quote.endpoint
    v1 = PaymentRequiredV1(error=error, accepts=[requirements_v1(quote)])
    extensions = {"bazaar": bazaar_extension(e)} if e.discoverable else None
    v2 = PaymentRequiredV2(
        error=error,
        resource=ResourceInfo(
            url=quote.resource, description=e.description or None, mime_type=e.mime_type
        ),
        accepts=[requirements_v2(quote)],
        extensions=extensions,
    )
    return wire(v1), encode_header(v2)


def discovery_item(quote: Quote) -> dict[str, Any]:
    """One resource of the Bazaar listing (x402 DiscoveryResource)."""
    e = quote.endpoint
    item: dict[str, Any] = {
        "resource": e.resource,
        "type": "http",
        "x402Version": 2,
        "accepts": [wire(requirements_v2(quote))],
        "lastUpdated": e.updated_at.isoformat(),
        "mimeType": e.mime_type,
        "extensions": {"bazaar": bazaar_extension(e)},
    }
    if e.description:
        item["description"] = e.description
    return item
