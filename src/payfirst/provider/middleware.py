"""`PaymentMiddleware`: put an x402 price on routes of a Starlette / FastAPI app, with
payfirst (or any x402 facilitator) verifying and settling the payments.

The prices come from a local table (`routes=`, any facilitator) or from payfirst's registry
(`api_key=`, a provider key: the routes are the provider's endpoints registered in payfirst,
each request priced by payfirst's own 402; payfirst settles them for the provider and
credits its balance). Both may be given: the local table is looked at first.

For a priced route:
- no payment header: `402`, x402 v1 JSON body + v2 `PAYMENT-REQUIRED` header;
- a payment: facilitator `/verify`; invalid: `402` with the reason;
- `settle="after"` (default, as the x402 reference middleware): run the handler with its
  answer held back; an answer >= 400 goes out as it is and nothing is settled; else
  facilitator `/settle`, and only a confirmed settlement releases the answer, with a
  `PAYMENT-RESPONSE` (v2) / `X-PAYMENT-RESPONSE` (v1) header; a failed or pending
  settlement is a `402` and the content is never sent;
- `settle="before"`: settle first and run the handler only once settled.

Every answer of a priced route carries `Access-Control-Expose-Headers` naming the x402
headers, so browser clients can read them. The handler finds the verified payment in
`request.state.x402` (a `VerifiedPayment`).

The same payment authorization (payer, nonce) is accepted once per middleware instance
while it is valid, even if a facilitator would answer a re-sent payload idempotently; the
one exception is a payload whose settlement answered `settlement_pending`: sent again, it
is settled again (payfirst's `/settle` is idempotent and answers the payment's outcome),
and served if that settlement is now confirmed.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from re import Pattern
from typing import Any, Final, Literal

import httpx
from starlette.datastructures import URL, Headers, MutableHeaders, QueryParams
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payfirst import jsonsafe
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.provider.facilitator_client import (
    SETTLE_TIMEOUT_S,
    FacilitatorClient,
    FacilitatorError,
)
from payfirst.provider.registry import (
    REGISTRY_TTL_S,
    EndpointDisabled,
    EndpointRegistry,
    RegisteredPrice,
    RegistryUnavailable,
    UnitsRefused,
    units_of,
)
from payfirst.x402 import (
    MAX_TIMEOUT_SECONDS,
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    SCHEME_EXACT,
    X_PAYMENT_RESPONSE,
    PaymentPayloadV1,
    PaymentPayloadV2,
    PaymentRequiredV1,
    PaymentRequiredV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    ResourceInfo,
    SettleResponse,
    caip2,
    chain_id_of,
    encode_header,
    parse_payment_header,
    to_checksum_address,
    v1_network,
    wire,
)

log = logging.getLogger("payfirst.provider")

EXPOSED_HEADERS: Final = (PAYMENT_REQUIRED, PAYMENT_RESPONSE, X_PAYMENT_RESPONSE)
PAYMENT_REQUIRED_MESSAGE: Final = "payment required"
FACILITATOR_UNAVAILABLE: Final = "facilitator_unavailable"
# Settle answers that mean "not (yet) on chain" even if a facilitator says success.
_PENDING_STATES: Final = frozenset({"pending", "settlement_pending", "processing", "sent"})


@dataclass(frozen=True)
class Price:
    """What a route costs: `amount` atomic units of `asset` (an EIP-3009 token such as
    USDC) paid to `pay_to` on `network` (CAIP-2 `eip155:8453` or a v1 name `base`).
    `asset_name` / `asset_version` are the token's EIP-712 domain (Base USDC: "USD Coin",
    "2"; Base Sepolia USDC and payfirst's dev USDC: "USDC", "2")."""

    amount: int
    asset: str
    pay_to: str
    network: str
    asset_name: str = "USDC"
    asset_version: str = "2"
    description: str = ""
    mime_type: str = "application/json"
    max_timeout_seconds: int = MAX_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 1:
            raise ValueError(f"Price.amount must be a positive integer, not {self.amount!r}")
        object.__setattr__(self, "asset", to_checksum_address(self.asset))
        object.__setattr__(self, "pay_to", to_checksum_address(self.pay_to))
        chain_id_of(self.network)  # ValueError for an unknown network
        if self.max_timeout_seconds < 10:
            raise ValueError("Price.max_timeout_seconds must leave time to settle (>= 10)")

    @property
    def chain_id(self) -> int:
        return chain_id_of(self.network)

    def _extra(self) -> dict[str, Any]:
        return {"name": self.asset_name, "version": self.asset_version}

    def resource_info(self, resource: str) -> ResourceInfo:
        return ResourceInfo(
            url=resource, description=self.description or None, mime_type=self.mime_type
        )

    def requirements_v2(self) -> PaymentRequirementsV2:
        return PaymentRequirementsV2(
            scheme=SCHEME_EXACT,
            network=caip2(self.chain_id),
            amount=str(self.amount),
            asset=self.asset,
            pay_to=self.pay_to,
            max_timeout_seconds=self.max_timeout_seconds,
            extra=self._extra(),
        )

    def requirements_v1(self, resource: str) -> PaymentRequirementsV1:
        return PaymentRequirementsV1(
            scheme=SCHEME_EXACT,
            network=v1_network(self.chain_id),
            max_amount_required=str(self.amount),
            resource=resource,
            description=self.description,
            mime_type=self.mime_type,
            pay_to=self.pay_to,
            max_timeout_seconds=self.max_timeout_seconds,
            asset=self.asset,
            extra=self._extra(),
        )


#: What a paid request costs: a local `Price`, or the registry's requirements for it.
Offer = Price | RegisteredPrice


@dataclass(frozen=True)
class VerifiedPayment:
    """What the handler finds in `request.state.x402`."""

    payer: str | None
    price: Offer
    payload: PaymentPayloadV1 | PaymentPayloadV2
    requirements: PaymentRequirementsV1 | PaymentRequirementsV2
    settlement: SettleResponse | None = None  # set when settle="before"

    @property
    def units(self) -> int:
        """The units paid for: a per-unit endpoint's handler serves exactly this many."""
        return self.price.units if isinstance(self.price, RegisteredPrice) else 1


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: Pattern[str]
    price: Price


def _parse_routes(routes: Mapping[str, Price]) -> list[_Route]:
    parsed = []
    for key, price in routes.items():
        method, _, path = key.strip().partition(" ")
        path = path.strip()
        if not method or not path.startswith("/"):
            raise ValueError(f"route {key!r} must read 'METHOD /path' (e.g. 'GET /weather')")
        if not isinstance(price, Price):
            raise TypeError(f"route {key!r}: expected a Price, not {type(price).__name__}")
        pattern, _, _ = compile_path(path)
        parsed.append(_Route(method.upper(), pattern, price))
    return parsed


def _settled(settlement: SettleResponse) -> bool:
    """Only a successful, confirmed settlement with a transaction counts."""
    status = str((settlement.extra or {}).get("status", "")).lower()
    return (
        settlement.success
        and not settlement.error_reason
        and bool(settlement.transaction)
        and status not in _PENDING_STATES
    )


@dataclass
class _Claim:
    """An authorization this middleware has taken: held until `valid_before`."""

    valid_before: int
    signature: str
    pending: bool = False  # its settlement answered settlement_pending
    busy: bool = True  # a request is using it now


@dataclass
class _Held:
    """A handler's answer held back until settlement."""

    start: Message | None = None
    body: list[Message] = field(default_factory=list)  # body (and any later) messages


class PaymentMiddleware:
    """ASGI middleware pricing routes. `routes` maps "METHOD /path" (Starlette path
    syntax: "/items/{id}") to a `Price`; `api_key` (a payfirst provider key) prices the
    provider's endpoints registered in payfirst at `facilitator_url` instead, or as well.
    The facilitator is reached at `facilitator_url` through `http_client=` (an
    httpx.AsyncClient you own) or `transport=` (e.g. `httpx.ASGITransport(app=payfirst_app)`),
    else over the network."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        facilitator_url: str,
        routes: Mapping[str, Price] | None = None,
        api_key: str | None = None,
        registry_ttl_s: float = REGISTRY_TTL_S,
        settle: Literal["after", "before"] = "after",
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        facilitator_headers: dict[str, str] | None = None,
        settle_timeout_s: float = SETTLE_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settle not in ("after", "before"):
            raise ValueError(f"settle must be 'after' or 'before', not {settle!r}")
        if routes is None and not api_key:
            raise ValueError("give routes= (a price table) or api_key= (payfirst's registry)")
        self.app = app
        self.settle = settle
        self.routes = _parse_routes(routes or {})
        if api_key:
            # payfirst settles a registered endpoint's payment only for its provider's key.
            facilitator_headers = {
                "Authorization": f"Bearer {api_key}",
                **(facilitator_headers or {}),
            }
        self.facilitator = FacilitatorClient(
            facilitator_url,
            client=http_client,
            transport=transport,
            headers=facilitator_headers,
            settle_timeout_s=settle_timeout_s,
        )
        self.registry = (
            EndpointRegistry(self.facilitator.http, facilitator_url, api_key, ttl_s=registry_ttl_s)
            if api_key
            else None
        )
        self._clock = clock
        self._in_use: dict[tuple[str, str], _Claim] = {}
        self._expiries: list[tuple[int, tuple[str, str]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        price: Offer | None = self._price_of(scope)
        if price is None and self.registry is not None:
            try:
                price, receive = await self._registered_price(scope, receive)
            except RegistryUnavailable as exc:
                log.warning("x402 provider: %s", exc)
                await JSONResponse(
                    {
                        "error": FACILITATOR_UNAVAILABLE,
                        "message": "payfirst's registry is unreachable",
                    },
                    502,
                )(scope, receive, send)
                return
            except UnitsRefused as exc:
                await JSONResponse(
                    {"error": Reason.INVALID_REQUEST.value, "message": str(exc)}, 400
                )(scope, receive, send)
                return
            except EndpointDisabled:
                await JSONResponse(
                    {"error": Reason.NOT_FOUND.value, "message": "this endpoint is not for sale"},
                    404,
                )(scope, receive, send)
                return
        if price is None:
            await self.app(scope, receive, send)
            return
        await self._paid(scope, receive, _exposing(send), price)

    async def _registered_price(
        self, scope: Scope, receive: Receive
    ) -> tuple[RegisteredPrice | None, Receive]:
        """payfirst's price of this request if it is to one of the provider's endpoints,
        and the `receive` to hand on (the body replayed when it was read for the units)."""
        assert self.registry is not None
        endpoint = await self.registry.match(scope["method"], scope["path"])
        if endpoint is None:
            return None, receive
        if endpoint.disabled:
            raise EndpointDisabled(endpoint.id)
        units = 1
        if endpoint.unit_param is not None:
            units, receive = await _units(scope, receive, endpoint.unit_param)
            if endpoint.max_units is not None and units > endpoint.max_units:
                raise UnitsRefused(f"{endpoint.unit_param} is at most {endpoint.max_units}")
        url = str(URL(scope=scope).replace(query=""))
        return await self.registry.price(endpoint, units, url), receive

    async def aclose(self) -> None:
        """Close the facilitator client (done at lifespan shutdown too)."""
        await self.facilitator.aclose()

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return wrapped

    def _price_of(self, scope: Scope) -> Price | None:
        method, path = scope["method"], scope["path"]
        for route in self.routes:
            if route.method == method and route.pattern.match(path):
                return route.price
        return None

    # --- the paid request ------------------------------------------------------------

    async def _paid(self, scope: Scope, receive: Receive, send: Send, price: Offer) -> None:
        resource = str(URL(scope=scope))
        try:
            payload = parse_payment_header(Headers(scope=scope))
        except PaymentRejected as exc:
            await _required(price, resource, exc.reason, exc.message)(scope, receive, send)
            return
        if payload is None:
            await _required(price, resource, PAYMENT_REQUIRED_MESSAGE)(scope, receive, send)
            return
        requirements: PaymentRequirementsV1 | PaymentRequirementsV2 = (
            price.requirements_v2()
            if isinstance(payload, PaymentPayloadV2)
            else price.requirements_v1(resource)
        )
        claim = self._claim(payload)
        if claim is None:
            await _required(
                price,
                resource,
                Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED,
                "this payment authorization was already used here",
            )(scope, receive, send)
            return
        key, resuming = claim
        settle_attempted = False
        try:
            if resuming:
                # The same payload whose settlement was pending: the facilitator's /settle
                # is idempotent and re-verifies, while /verify would call the nonce used.
                payer: str | None = str(payload.payload["authorization"]["from"])
            else:
                try:
                    verified = await self.facilitator.verify(payload, requirements)
                except FacilitatorError as exc:
                    log.warning("x402 provider: %s", exc)
                    await JSONResponse(
                        {"error": FACILITATOR_UNAVAILABLE, "message": str(exc)}, 502
                    )(scope, receive, send)
                    return
                if not verified.is_valid:
                    reason = verified.invalid_reason or "invalid_payment"
                    stale = reason == Reason.INVALID_PAYMENT_REQUIREMENTS
                    if stale and self.registry and isinstance(price, RegisteredPrice):
                        self.registry.forget(price.endpoint_id)  # the price may have changed
                    log.info("x402 provider: payment refused by the facilitator: %s", reason)
                    await _required(price, resource, reason, verified.invalid_message or "")(
                        scope, receive, send
                    )
                    return
                payer = verified.payer
            paid = VerifiedPayment(payer, price, payload, requirements)
            if self.settle == "before":
                settle_attempted = True
                settlement = await self._settle(key, payload, requirements)
                if not _settled(settlement):
                    await _settle_failed(price, resource, payload, settlement)(scope, receive, send)
                    return
                scope.setdefault("state", {})["x402"] = VerifiedPayment(
                    payer, price, payload, requirements, settlement
                )
                await self.app(scope, receive, _with_settlement(send, payload, settlement))
                return
            scope.setdefault("state", {})["x402"] = paid
            # The answer is held in memory until settled: no zero-copy file sending.
            extensions = scope.get("extensions") or {}
            if "http.response.pathsend" in extensions:
                scope = dict(scope)
                scope["extensions"] = {
                    k: v for k, v in extensions.items() if k != "http.response.pathsend"
                }
            held = _Held()

            async def hold(message: Message) -> None:
                if message["type"] == "http.response.start" and held.start is None:
                    held.start = message
                else:
                    held.body.append(message)

            await self.app(scope, receive, hold)  # an exception: nothing settled
            if held.start is None:
                raise RuntimeError("the handler returned without starting a response")
            if held.start["status"] >= 400:
                log.info(
                    "x402 provider: handler answered %d, payment not settled",
                    held.start["status"],
                )
                await _replay(send, held)
                return
            settle_attempted = True
            settlement = await self._settle(key, payload, requirements)
            if not _settled(settlement):
                await _settle_failed(price, resource, payload, settlement)(scope, receive, send)
                return
            _headers(held.start).append(*_settlement_header(payload, settlement))
            await _replay(send, held)
        finally:
            if not settle_attempted:
                self._release(key, resuming)
            elif key in self._in_use:
                self._in_use[key].busy = False

    async def _settle(
        self,
        key: tuple[str, str],
        payload: PaymentPayloadV1 | PaymentPayloadV2,
        requirements: PaymentRequirementsV1 | PaymentRequirementsV2,
    ) -> SettleResponse:
        try:
            settlement = await self.facilitator.settle(payload, requirements)
        except FacilitatorError as exc:
            log.warning("x402 provider: %s", exc)
            return SettleResponse(
                success=False,
                error_reason=Reason.UNEXPECTED_SETTLE_ERROR,
                error_message=str(exc),
                transaction="",
                network=requirements.network,
            )
        claim = self._in_use.get(key)
        if claim is not None:
            # A pending settlement may still land: the same payload may come back for it.
            claim.pending = settlement.error_reason == Reason.SETTLEMENT_PENDING
        if not _settled(settlement):
            log.warning(
                "x402 provider: settlement not confirmed (%s %s), content withheld",
                settlement.error_reason,
                settlement.transaction,
            )
        else:
            log.info("x402 provider: settled in %s", settlement.transaction)
        return settlement

    # --- one use per authorization -------------------------------------------------------

    def _claim(
        self, payload: PaymentPayloadV1 | PaymentPayloadV2
    ) -> tuple[tuple[str, str], bool] | None:
        """Hold the payload's (payer, nonce) until its validBefore. None when it is held
        already; (key, True) when the identical payload comes back after a settlement that
        answered pending (it may be settled again: /settle is idempotent)."""
        now = int(self._clock())
        while self._expiries and self._expiries[0][0] < now:
            expiry, old = heapq.heappop(self._expiries)
            held = self._in_use.get(old)
            if held is not None and held.valid_before == expiry:
                del self._in_use[old]
        authorization = payload.payload.get("authorization")
        if not isinstance(authorization, dict):
            return ("", ""), False  # malformed: the facilitator refuses it; nothing held
        key = (
            str(authorization.get("from", "")).lower(),
            str(authorization.get("nonce", "")).lower(),
        )
        signature = str(payload.payload.get("signature", "")).lower()
        held = self._in_use.get(key)
        if held is not None:
            if held.pending and not held.busy and held.signature == signature:
                held.busy = True
                return key, True
            return None
        try:
            valid_before = int(authorization.get("validBefore", 0))
        except (TypeError, ValueError):
            valid_before = 0
        valid_before = max(valid_before, now + 1)
        self._in_use[key] = _Claim(valid_before, signature)
        heapq.heappush(self._expiries, (valid_before, key))
        return key, False

    def _release(self, key: tuple[str, str], resuming: bool) -> None:
        """No settlement was attempted: a new claim is released, a resumed one stays
        pending (its earlier settlement may still land)."""
        held = self._in_use.get(key)
        if held is None:
            return
        if resuming:
            held.busy = False
        else:
            del self._in_use[key]


# --- answers ---------------------------------------------------------------------------


def _required(price: Offer, resource: str, error: str, message: str = "") -> JSONResponse:
    """402 with the x402 v1 JSON body and the v2 PAYMENT-REQUIRED header."""
    body = wire(PaymentRequiredV1(error=error, accepts=[price.requirements_v1(resource)]))
    if message:
        body["message"] = message
    v2 = PaymentRequiredV2(
        error=error,
        resource=price.resource_info(resource),
        accepts=[price.requirements_v2()],
    )
    return JSONResponse(body, 402, headers={PAYMENT_REQUIRED: encode_header(v2)})


def _settlement_header(
    payload: PaymentPayloadV1 | PaymentPayloadV2, settlement: SettleResponse
) -> tuple[str, str]:
    name = PAYMENT_RESPONSE if isinstance(payload, PaymentPayloadV2) else X_PAYMENT_RESPONSE
    return name, encode_header(settlement)


def _settle_failed(
    price: Offer,
    resource: str,
    payload: PaymentPayloadV1 | PaymentPayloadV2,
    settlement: SettleResponse,
) -> JSONResponse:
    reason = settlement.error_reason or (
        Reason.SETTLEMENT_PENDING if settlement.success else Reason.TRANSACTION_FAILED
    )
    answer = _required(price, resource, reason, settlement.error_message or "settlement failed")
    answer.headers.append(*_settlement_header(payload, settlement))
    return answer


def _with_settlement(
    send: Send, payload: PaymentPayloadV1 | PaymentPayloadV2, settlement: SettleResponse
) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            _headers(message).append(*_settlement_header(payload, settlement))
        await send(message)

    return wrapped


async def _replay(send: Send, held: _Held) -> None:
    assert held.start is not None
    await send(held.start)
    for message in held.body:
        await send(message)
    if not held.body:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _headers(start: Message) -> MutableHeaders:
    """The mutable headers of an `http.response.start` message (ASGI lets it omit them)."""
    start.setdefault("headers", [])
    return MutableHeaders(scope=start)


def _exposing(send: Send) -> Send:
    """Add the x402 headers to Access-Control-Expose-Headers of the answer."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = _headers(message)
            present = [
                h.strip() for h in headers.get("access-control-expose-headers", "").split(",")
            ]
            names = [h for h in present if h]
            lowered = {h.lower() for h in names}
            names += [h for h in EXPOSED_HEADERS if h.lower() not in lowered]
            headers["Access-Control-Expose-Headers"] = ", ".join(names)
        await send(message)

    return wrapped


#: The most of a request body read to find its unit count.
MAX_UNITS_BODY: Final = 64 * 1024


async def _units(scope: Scope, receive: Receive, name: str) -> tuple[int, Receive]:
    """The unit count a per-unit request buys, read where a handler would read it: the
    query parameter `name` and the top-level field `name` of a JSON body (read whole, up
    to MAX_UNITS_BODY, and replayed to the app). Fails closed, so the price never counts
    fewer units than the handler serves: the count must be given, a non-empty body must be
    a JSON object whatever its Content-Type says, and query and body must agree."""
    given: set[object] = set()
    query = URL(scope=scope).query
    if query:
        given.update(QueryParams(query).getlist(name))
    body, receive = await _read_body(scope, receive)
    if body.strip():
        try:
            data = jsonsafe.loads(body)
        except ValueError as exc:
            raise UnitsRefused(f"a request that buys {name} carries a JSON body") from exc
        if not isinstance(data, dict):
            raise UnitsRefused(f"a request that buys {name} carries a JSON object")
        if name in data:
            given.add(data[name] if isinstance(data[name], str | int) else repr(data[name]))
    counts = {units_of(value) for value in given}
    if not counts:
        raise UnitsRefused(f"{name} is required: the number of units bought")
    if None in counts:
        raise UnitsRefused(f"{name} must be a whole number >= 1")
    if len(counts) > 1:
        raise UnitsRefused(f"{name} is given twice with different values")
    (count,) = counts
    assert count is not None
    return count, receive


async def _read_body(scope: Scope, receive: Receive) -> tuple[bytes, Receive]:
    """The request body (at most MAX_UNITS_BODY) and a `receive` that replays it."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise UnitsRefused("the request ended before its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_UNITS_BODY:
            raise UnitsRefused(f"a body that buys units is at most {MAX_UNITS_BODY} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
