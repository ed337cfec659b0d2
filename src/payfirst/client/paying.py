"""`PayingClient`: an httpx.AsyncClient wrapper that pays x402 `402` answers by itself.

On a `402` it reads the requirements (the v2 `PAYMENT-REQUIRED` header, else the v1 JSON
body), keeps the `exact` EVM ones it can sign, checks them against its `SpendingPolicy`
BEFORE signing, signs the cheapest allowed one with its `Payer`, and sends the request once
more with `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1). The answer comes back as a
`PaidResponse`: the httpx response, what was paid, and the decoded `PAYMENT-RESPONSE` /
`X-PAYMENT-RESPONSE` settlement when the server sent one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from payfirst.client.policy import PaymentRefused, Quote, SpendingLedger, SpendingPolicy
from payfirst.client.signing import Payer
from payfirst.domain.errors import PaymentRejected
from payfirst.x402 import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    SCHEME_EXACT,
    X_PAYMENT,
    X_PAYMENT_RESPONSE,
    PaymentRequiredV1,
    PaymentRequiredV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    ResourceInfo,
    SettleResponse,
    decode_header,
    is_known_network,
)

log = logging.getLogger("payfirst.client")


class PaymentError(Exception):
    """A 402 the client could not act on (no readable requirements, nothing it can sign)."""


@dataclass(frozen=True)
class PaymentMade:
    """The payment the client signed and sent."""

    x402_version: int
    requirements: PaymentRequirementsV1 | PaymentRequirementsV2
    header_name: str
    header_value: str
    payer: str

    @property
    def amount(self) -> int:
        return int(self.requirements.amount)

    @property
    def asset(self) -> str:
        return self.requirements.asset

    @property
    def network(self) -> str:
        return self.requirements.network

    @property
    def pay_to(self) -> str:
        return self.requirements.pay_to


@dataclass(frozen=True)
class PaidResponse:
    """The final answer, what was paid for it (None: no 402, nothing paid), and the
    server's settlement header decoded (None when it sent none, as payfirst's mint
    endpoint, which settles later)."""

    response: httpx.Response
    payment: PaymentMade | None = None
    settlement: SettleResponse | None = None

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    @property
    def content(self) -> bytes:
        return self.response.content

    @property
    def text(self) -> str:
        return self.response.text

    def json(self) -> Any:
        return self.response.json()

    @property
    def accepted(self) -> bool:
        """A payment was made and the server answered 2xx to it."""
        return self.payment is not None and self.response.is_success


@dataclass(frozen=True)
class _Offer:
    version: Literal[1, 2]
    requirements: PaymentRequirementsV1 | PaymentRequirementsV2
    resource: ResourceInfo | None


class PayingClient:
    """An HTTP client that pays `402 Payment Required` answers within a spending policy.

    `payer` is a `Payer` or a private key (0x-hex). `policy` defaults to no limits.
    `x402_version=1` forces x402 v1 (the JSON body's requirements and `X-PAYMENT`);
    the default prefers v2 (the `PAYMENT-REQUIRED` header) and falls back to v1.
    Pass `client=` to use an httpx.AsyncClient you own, or any httpx.AsyncClient
    argument (`base_url=`, `transport=`, `timeout=`, ...) to have one made (closed by
    `aclose()` / `async with`). `ledger=` shares the daily spending record between
    clients; by default each client has its own, in memory."""

    def __init__(
        self,
        payer: Payer | str,
        policy: SpendingPolicy | None = None,
        *,
        x402_version: Literal[1, 2] | None = None,
        client: httpx.AsyncClient | None = None,
        ledger: SpendingLedger | None = None,
        **httpx_options: Any,
    ) -> None:
        if x402_version not in (None, 1, 2):
            raise ValueError(f"x402_version must be 1, 2 or None, not {x402_version!r}")
        if client is not None and httpx_options:
            raise ValueError("pass either client= or httpx.AsyncClient options, not both")
        self.payer = payer if isinstance(payer, Payer) else Payer(payer)
        self.policy = policy or SpendingPolicy()
        self.ledger = ledger or SpendingLedger()
        self.x402_version = x402_version
        self._owns_client = client is None
        self.http = client or httpx.AsyncClient(**httpx_options)

    async def __aenter__(self) -> PayingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self.http.aclose()

    def spent(self, asset: str) -> int:
        """What this client's ledger counts as spent in `asset` in the last 24 h."""
        return self.ledger.spent(asset)

    async def get(self, url: str, **kwargs: Any) -> PaidResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> PaidResponse:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> PaidResponse:
        return await self.request("PUT", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> PaidResponse:
        return await self.request("DELETE", url, **kwargs)

    async def request(self, method: str, url: str, **kwargs: Any) -> PaidResponse:
        """Send a request (httpx.AsyncClient.request arguments); pay a 402 once.

        Raises PaymentRefused when the policy refuses every offered payment (nothing is
        signed or sent), PaymentError when the 402 offers nothing this client can pay."""
        first = await self.http.request(method, url, **kwargs)
        if first.status_code != 402:
            return PaidResponse(first)
        offer = self._choose(self._offers(first))
        quote = _quote(offer.requirements)
        reservation = self.ledger.reserve(self.policy, quote)  # raises PaymentRefused
        try:
            if offer.version == 2:
                assert isinstance(offer.requirements, PaymentRequirementsV2)
                name, value = (
                    PAYMENT_SIGNATURE,
                    self.payer.pay_v2(offer.requirements, offer.resource),
                )
            else:
                assert isinstance(offer.requirements, PaymentRequirementsV1)
                name, value = X_PAYMENT, self.payer.pay_v1(offer.requirements)
            headers = httpx.Headers(kwargs.pop("headers", None))
            headers[name] = value
            answer = await self.http.request(method, url, headers=headers, **kwargs)
        except BaseException:
            self.ledger.release(reservation)
            raise
        if answer.is_success:
            self.ledger.commit(reservation)
        else:
            self.ledger.release(reservation)
        made = PaymentMade(offer.version, offer.requirements, name, value, self.payer.address)
        settlement = _settlement(answer)
        log.info(
            "x402: paid %s %s of %s to %s on %s -> HTTP %d",
            method,
            made.amount,
            made.asset,
            made.pay_to,
            made.network,
            answer.status_code,
        )
        return PaidResponse(answer, made, settlement)

    # --- choosing what to pay ----------------------------------------------------------

    def _offers(self, answer: httpx.Response) -> list[_Offer]:
        offers: list[_Offer] = []
        header = answer.headers.get(PAYMENT_REQUIRED)
        if header and self.x402_version != 1:
            try:
                v2 = PaymentRequiredV2.model_validate(decode_header(header))
                offers = [_Offer(2, r, v2.resource) for r in v2.accepts]
            except (PaymentRejected, ValidationError) as exc:
                log.warning("x402: unreadable PAYMENT-REQUIRED header: %s", exc)
        if offers:
            return offers
        body = _json(answer)
        if body is not None:
            version = body.get("x402Version", 1 if "accepts" in body else None)
            try:
                if version == 2 and self.x402_version != 1:
                    v2 = PaymentRequiredV2.model_validate(body)
                    return [_Offer(2, r, v2.resource) for r in v2.accepts]
                if version == 1 and self.x402_version != 2:
                    v1 = PaymentRequiredV1.model_validate(body)
                    return [_Offer(1, r, None) for r in v1.accepts]
            except ValidationError as exc:
                log.warning("x402: unreadable 402 body: %s", exc)
        wanted = f"x402 v{self.x402_version}" if self.x402_version else "x402"
        raise PaymentError(
            f"402 from {answer.request.url} carries no readable {wanted} requirements"
        )

    def _choose(self, offers: list[_Offer]) -> _Offer:
        """The cheapest signable offer the policy allows (checked without reserving:
        the reservation re-checks); PaymentRefused with every reason otherwise."""
        signable = [o for o in offers if _signable(o.requirements)]
        if not signable:
            kinds = ", ".join(f"{o.requirements.scheme}@{o.requirements.network}" for o in offers)
            raise PaymentError(f"no exact EVM requirements this client can sign among: {kinds}")
        refusals: list[PaymentRefused] = []
        for offer in sorted(signable, key=lambda o: int(o.requirements.amount)):
            quote = _quote(offer.requirements)
            try:
                self.policy.check(quote, self.ledger.spent(quote.asset))
            except PaymentRefused as refused:
                refusals.append(refused)
                continue
            return offer
        if len(refusals) == 1:
            raise refusals[0]
        first = refusals[0]
        raise PaymentRefused(
            first.rule,
            "every offered payment breaks the policy: "
            + "; ".join(str(r).split(": ", 1)[1] for r in refusals),
            amount=first.amount,
            limit=first.limit,
            spent=first.spent,
            asset=first.asset,
            network=first.network,
            pay_to=first.pay_to,
        )


def _signable(requirements: PaymentRequirementsV1 | PaymentRequirementsV2) -> bool:
    extra = requirements.extra or {}
    return (
        requirements.scheme == SCHEME_EXACT
        and is_known_network(requirements.network)
        and isinstance(extra.get("name"), str)
        and isinstance(extra.get("version"), str)
        and requirements.amount.isdigit()
    )


def _quote(requirements: PaymentRequirementsV1 | PaymentRequirementsV2) -> Quote:
    return Quote(
        amount=int(requirements.amount),
        asset=requirements.asset,
        network=requirements.network,
        pay_to=requirements.pay_to,
    )


def _json(answer: httpx.Response) -> dict[str, Any] | None:
    try:
        data = answer.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _settlement(answer: httpx.Response) -> SettleResponse | None:
    value = answer.headers.get(PAYMENT_RESPONSE) or answer.headers.get(X_PAYMENT_RESPONSE)
    if not value:
        return None
    try:
        return SettleResponse.model_validate(decode_header(value))
    except (PaymentRejected, ValidationError) as exc:
        log.warning("x402: unreadable payment response header: %s", exc)
        return None
