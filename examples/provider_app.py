"""A provider's API with no price table: `PaymentMiddleware(api_key=...)` asks payfirst
which requests are paid and what they cost (the provider's registered endpoints), and has
payfirst verify and settle each payment before the answer is released.

    PAYFIRST_URL=http://127.0.0.1:4021 PAYFIRST_API_KEY=pf_test_... python -m examples.provider_app

serves http://127.0.0.1:8001: `GET /weather/{city}` is paid (as registered by
`examples.setup_provider`), `GET /` is free."""

from __future__ import annotations

import os

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payfirst.provider import PaymentMiddleware, VerifiedPayment


async def weather(request: Request) -> Response:
    paid: VerifiedPayment = request.state.x402
    city = request.path_params["city"]
    return JSONResponse({"city": city, "forecast": "sunny", "paid_by": paid.payer})


async def home(request: Request) -> Response:
    return JSONResponse({"try": "/weather/paris"})


def build_app(payfirst_url: str, api_key: str) -> Starlette:
    return Starlette(
        routes=[Route("/", home), Route("/weather/{city}", weather)],
        middleware=[Middleware(PaymentMiddleware, facilitator_url=payfirst_url, api_key=api_key)],
    )


def main() -> None:
    app = build_app(
        os.environ.get("PAYFIRST_URL", "http://127.0.0.1:4021"), os.environ["PAYFIRST_API_KEY"]
    )
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))


if __name__ == "__main__":
    main()
