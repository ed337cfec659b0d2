"""A client of any x402 facilitator (payfirst's own, or another): `POST /verify` and
`POST /settle` with the standard JSON body `{"x402Version", "paymentPayload",
"paymentRequirements"}`, as the official SDK's `HTTPFacilitatorClient` sends it."""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
from pydantic import ValidationError

from payfirst.x402 import (
    PaymentPayloadV1,
    PaymentPayloadV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    SettleResponse,
    VerifyResponse,
    wire,
)

VERIFY_TIMEOUT_S: Final = 15.0
# payfirst's /settle answers once the payment is confirmed on chain: give it time.
SETTLE_TIMEOUT_S: Final = 120.0


class FacilitatorError(Exception):
    """The facilitator could not be reached or gave an answer that is not x402."""


class FacilitatorClient:
    """`verify` and `settle` against `url` (e.g. `https://payfirst.example.com`).

    `client=` uses an httpx.AsyncClient you own; `transport=` (e.g.
    `httpx.ASGITransport(app=payfirst_app)`) makes one over that transport."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
        verify_timeout_s: float = VERIFY_TIMEOUT_S,
        settle_timeout_s: float = SETTLE_TIMEOUT_S,
    ) -> None:
        if client is not None and transport is not None:
            raise ValueError("pass either client= or transport=, not both")
        self.url = url.rstrip("/")
        self.verify_timeout_s = verify_timeout_s
        self.settle_timeout_s = settle_timeout_s
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(transport=transport, follow_redirects=True)

    @property
    def http(self) -> httpx.AsyncClient:
        """The httpx client it posts with (the middleware reads payfirst's registry with it)."""
        return self._client

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    @staticmethod
    def body(
        payload: PaymentPayloadV1 | PaymentPayloadV2,
        requirements: PaymentRequirementsV1 | PaymentRequirementsV2,
    ) -> dict[str, Any]:
        return {
            "x402Version": payload.x402_version,
            "paymentPayload": wire(payload),
            "paymentRequirements": wire(requirements),
        }

    async def verify(
        self,
        payload: PaymentPayloadV1 | PaymentPayloadV2,
        requirements: PaymentRequirementsV1 | PaymentRequirementsV2,
    ) -> VerifyResponse:
        status, data = await self._post(
            "verify", self.body(payload, requirements), self.verify_timeout_s
        )
        try:
            return VerifyResponse.model_validate(data)
        except ValidationError as exc:
            raise _not_x402("verify", status, data) from exc

    async def settle(
        self,
        payload: PaymentPayloadV1 | PaymentPayloadV2,
        requirements: PaymentRequirementsV1 | PaymentRequirementsV2,
    ) -> SettleResponse:
        status, data = await self._post(
            "settle", self.body(payload, requirements), self.settle_timeout_s
        )
        try:
            return SettleResponse.model_validate(data)
        except ValidationError as exc:
            raise _not_x402("settle", status, data) from exc

    async def _post(
        self, operation: str, body: dict[str, Any], timeout_s: float
    ) -> tuple[int, dict[str, Any]]:
        try:
            answer = await self._client.post(
                f"{self.url}/{operation}", json=body, headers=self._headers, timeout=timeout_s
            )
        except httpx.HTTPError as exc:
            raise FacilitatorError(f"facilitator {operation} unreachable: {exc!r}") from exc
        try:
            data = answer.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            data = None
        # Some facilitators answer a refused payment with 4xx and an x402 body: accept
        # any status whose body is an x402 answer; anything else is the facilitator's fault.
        if not isinstance(data, dict):
            raise FacilitatorError(
                f"facilitator {operation} answered HTTP {answer.status_code}: {answer.text[:200]!r}"
            )
        return answer.status_code, data


def _not_x402(operation: str, status: int, data: dict[str, Any]) -> FacilitatorError:
    return FacilitatorError(
        f"facilitator {operation} answered HTTP {status} without an x402 answer: "
        f"{json.dumps(data)[:200]}"
    )
