"""PaymentMiddleware against a scripted x402 facilitator (no chain, no database): what it
asks the facilitator, when it settles, and that content never leaves without settlement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.client import PayingClient
from payfirst.provider import EXPOSED_HEADERS, PaymentMiddleware, Price
from payfirst.x402 import PaymentRequiredV2, SettleResponse, decode_header, to_checksum_address

USDC = to_checksum_address("0x036cbd53842c8542d6f58d8d1c8f2ee98d7a3c2a")
SHOP = to_checksum_address("0x2222222222222222222222222222222222222222")
TX = "0x" + "ab" * 32
PRICE = Price(amount=10_000, asset=USDC, pay_to=SHOP, network="base-sepolia", description="w")


@dataclass
class Facilitator:
    """Answers /verify and /settle as told and records what it was sent."""

    verify_answer: dict[str, Any] = field(default_factory=lambda: {"isValid": True})
    settle_answer: dict[str, Any] = field(
        default_factory=lambda: {"success": True, "transaction": TX, "network": "eip155:84532"}
    )
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    broken: bool = False

    def app(self) -> Starlette:
        async def verify(request: Request) -> Response:
            body = await request.json()
            self.calls.append(("verify", body))
            self.events.append("verify")
            if self.broken:
                return Response("upstream down", 503)
            payer = body["paymentPayload"]["payload"]["authorization"]["from"]
            return JSONResponse({"payer": payer, **self.verify_answer})

        async def settle(request: Request) -> Response:
            self.calls.append(("settle", await request.json()))
            self.events.append("settle")
            return JSONResponse(self.settle_answer)

        return Starlette(
            routes=[
                Route("/x402/verify", verify, methods=["POST"]),
                Route("/x402/settle", settle, methods=["POST"]),
            ]
        )


def provider(facilitator: Facilitator, settle: str = "after") -> Starlette:
    async def weather(request: Request) -> Response:
        facilitator.events.append("handler")
        return JSONResponse({"weather": "sunny", "payer": request.state.x402.payer})

    async def broken(request: Request) -> Response:
        facilitator.events.append("handler")
        return JSONResponse({"error": "boom"}, 500)

    async def raising(request: Request) -> Response:
        facilitator.events.append("handler")
        raise RuntimeError("handler bug")

    async def free(request: Request) -> Response:
        return JSONResponse({"free": True})

    return Starlette(
        routes=[
            Route("/weather/{city}", weather),
            Route("/broken", broken),
            Route("/raising", raising),
            Route("/free", free),
        ],
        middleware=[
            Middleware(
                PaymentMiddleware,
                facilitator_url="http://facilitator.test/x402/",
                transport=httpx.ASGITransport(app=facilitator.app()),
                routes={"GET /weather/{city}": PRICE, "GET /broken": PRICE, "GET /raising": PRICE},
                settle=settle,
            )
        ],
    )


def paying(app: Starlette, version: int | None = None) -> PayingClient:
    return PayingClient(
        ANVIL_KEYS[1],
        x402_version=version,  # type: ignore[arg-type]
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://provider.test",
    )


def no_content(answer: Any) -> None:
    assert "sunny" not in answer.text


async def test_unpaid_is_402_with_both_forms_and_exposed_headers() -> None:
    facilitator = Facilitator()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=provider(facilitator)), base_url="http://provider.test"
    ) as http:
        answer = await http.get("/weather/paris?units=c")
        free = await http.get("/free")
    assert answer.status_code == 402
    body = answer.json()
    assert body["x402Version"] == 1
    [v1] = body["accepts"]
    assert v1["maxAmountRequired"] == "10000"
    assert (v1["network"], v1["payTo"], v1["asset"]) == ("base-sepolia", SHOP, USDC)
    assert v1["resource"] == "http://provider.test/weather/paris?units=c"
    assert v1["extra"] == {"name": "USDC", "version": "2"}
    v2 = PaymentRequiredV2.model_validate(decode_header(answer.headers["PAYMENT-REQUIRED"]))
    assert v2.accepts[0].amount == "10000" and v2.accepts[0].network == "eip155:84532"
    assert v2.resource is not None and v2.resource.url == v1["resource"]
    exposed = answer.headers["Access-Control-Expose-Headers"]
    assert all(name in exposed for name in EXPOSED_HEADERS)
    assert free.status_code == 200 and "Access-Control-Expose-Headers" not in free.headers
    assert facilitator.calls == []


@pytest.mark.parametrize("version", [2, 1])
async def test_paid_request_is_verified_served_then_settled(version: int) -> None:
    facilitator = Facilitator()
    async with paying(provider(facilitator), version) as client:
        answer = await client.get("/weather/paris")
    assert answer.status_code == 200, answer.text
    assert answer.json()["weather"] == "sunny"
    assert answer.json()["payer"] == client.payer.address
    assert facilitator.events == ["verify", "handler", "settle"]
    header = "PAYMENT-RESPONSE" if version == 2 else "X-PAYMENT-RESPONSE"
    assert header in answer.headers
    assert answer.settlement == SettleResponse(success=True, transaction=TX, network="eip155:84532")
    for _, body in facilitator.calls:
        assert set(body) == {"x402Version", "paymentPayload", "paymentRequirements"}
        assert body["x402Version"] == version
        assert body["paymentPayload"]["x402Version"] == version
        requirements = body["paymentRequirements"]
        assert requirements["payTo"] == SHOP and requirements["asset"] == USDC
        amount_key = "amount" if version == 2 else "maxAmountRequired"
        assert requirements[amount_key] == "10000"
    assert "PAYMENT-RESPONSE" in answer.headers["Access-Control-Expose-Headers"]


async def test_handler_error_is_passed_through_and_nothing_settled() -> None:
    facilitator = Facilitator()
    async with paying(provider(facilitator)) as client:
        broken = await client.get("/broken")
        raising = await client.get("/raising")
    assert broken.status_code == 500 and broken.json() == {"error": "boom"}
    assert raising.status_code == 500
    assert "PAYMENT-RESPONSE" not in broken.headers
    assert "settle" not in facilitator.events
    assert client.spent(USDC) == 0


async def test_invalid_payment_is_402_with_the_reason_and_the_handler_never_runs() -> None:
    facilitator = Facilitator(
        verify_answer={"isValid": False, "invalidReason": "insufficient_funds"}
    )
    async with paying(provider(facilitator)) as client:
        answer = await client.get("/weather/paris")
    assert answer.status_code == 402
    assert answer.json()["error"] == "insufficient_funds"
    assert "PAYMENT-REQUIRED" in answer.headers
    assert facilitator.events == ["verify"]
    no_content(answer)


@pytest.mark.parametrize(
    "settle_answer",
    [
        {"success": False, "errorReason": "transaction_failed", "transaction": "", "network": "x"},
        {"success": False, "errorReason": "settlement_pending", "transaction": TX, "network": "x"},
        {"success": True, "errorReason": "settlement_pending", "transaction": TX, "network": "x"},
        {"success": True, "transaction": TX, "network": "x", "extra": {"status": "pending"}},
        {"success": True, "transaction": "", "network": "x"},
        {"not": "x402"},
    ],
)
async def test_content_is_withheld_unless_settlement_is_confirmed(
    settle_answer: dict[str, Any],
) -> None:
    facilitator = Facilitator(settle_answer=settle_answer)
    async with paying(provider(facilitator)) as client:
        answer = await client.get("/weather/paris")
    assert answer.status_code == 402
    assert facilitator.events == ["verify", "handler", "settle"]
    no_content(answer)
    assert answer.json()["error"]
    assert client.spent(USDC) == 0


async def test_settle_before_settles_first_and_serves_only_on_success() -> None:
    facilitator = Facilitator()
    async with paying(provider(facilitator, settle="before")) as client:
        answer = await client.get("/weather/paris")
    assert answer.status_code == 200
    assert facilitator.events == ["verify", "settle", "handler"]
    assert answer.settlement is not None and answer.settlement.transaction == TX

    failing = Facilitator(
        settle_answer={"success": False, "errorReason": "settlement_pending", "transaction": TX}
        | {"network": "eip155:84532"}
    )
    async with paying(provider(failing, settle="before")) as client:
        answer = await client.get("/weather/paris")
    assert answer.status_code == 402
    assert answer.json()["error"] == "settlement_pending"
    assert failing.events == ["verify", "settle"]


async def test_facilitator_down_is_502_and_nothing_served() -> None:
    facilitator = Facilitator(broken=True)
    async with paying(provider(facilitator)) as client:
        answer = await client.get("/weather/paris")
    assert answer.status_code == 502
    assert answer.json()["error"] == "facilitator_unavailable"
    assert facilitator.events == ["verify"]


async def test_replayed_authorization_is_refused_by_the_middleware_itself() -> None:
    facilitator = Facilitator()  # a facilitator that would answer a replay idempotently
    app = provider(facilitator)
    async with paying(app) as client:
        first = await client.get("/weather/paris")
        assert first.payment is not None
        replay = await client.http.get(
            "/weather/paris", headers={first.payment.header_name: first.payment.header_value}
        )
    assert first.status_code == 200
    assert replay.status_code == 402
    assert replay.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert facilitator.events == ["verify", "handler", "settle"]


async def test_an_authorization_not_settled_may_be_sent_again() -> None:
    """A handler failure settles nothing, so the same authorization stays usable."""
    facilitator = Facilitator()
    async with paying(provider(facilitator)) as client:
        first = await client.get("/broken")
        assert first.payment is not None
        again = await client.http.get(
            "/broken", headers={first.payment.header_name: first.payment.header_value}
        )
    assert again.status_code == 500
    assert facilitator.events == ["verify", "handler", "verify", "handler"]


async def test_malformed_payment_header_is_402_invalid_payload() -> None:
    facilitator = Facilitator()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=provider(facilitator)), base_url="http://provider.test"
    ) as http:
        answer = await http.get("/weather/paris", headers={"PAYMENT-SIGNATURE": "not base64!"})
    assert answer.status_code == 402
    assert answer.json()["error"] == "invalid_payload"
    assert facilitator.calls == []


def test_price_and_routes_are_validated() -> None:
    with pytest.raises(ValueError, match="amount"):
        Price(amount=0, asset=USDC, pay_to=SHOP, network="base")
    with pytest.raises(ValueError, match="unknown network"):
        Price(amount=1, asset=USDC, pay_to=SHOP, network="nowhere")
    with pytest.raises(ValueError, match="METHOD /path"):
        PaymentMiddleware(Starlette(), facilitator_url="http://f", routes={"/weather": PRICE})
    with pytest.raises(ValueError, match="settle"):
        PaymentMiddleware(
            Starlette(),
            facilitator_url="http://f",
            routes={},
            settle="later",  # type: ignore[arg-type]
        )


async def test_a_pending_settlement_can_be_collected_with_the_same_payload() -> None:
    """settlement_pending withholds the content; the identical payload sent again is
    settled again (not verified: the nonce is known by then) and served once settled."""
    pending = {"success": False, "errorReason": "settlement_pending", "transaction": TX}
    facilitator = Facilitator(settle_answer=pending | {"network": "eip155:84532"})
    async with paying(provider(facilitator)) as client:
        first = await client.get("/weather/paris")
        assert first.status_code == 402 and first.payment is not None
        assert (
            first.settlement is not None and first.settlement.error_reason == "settlement_pending"
        )
        same = {first.payment.header_name: first.payment.header_value}
        still = await client.http.get("/weather/paris", headers=same)
        assert still.status_code == 402
        facilitator.settle_answer = {"success": True, "transaction": TX, "network": "eip155:84532"}
        collected = await client.http.get("/weather/paris", headers=same)
        replay = await client.http.get("/weather/paris", headers=same)
    assert collected.status_code == 200 and collected.json()["weather"] == "sunny"
    assert facilitator.events == ["verify", "handler", "settle"] + ["handler", "settle"] * 2
    assert replay.status_code == 402
    assert replay.json()["error"] == "invalid_exact_evm_nonce_already_used"
