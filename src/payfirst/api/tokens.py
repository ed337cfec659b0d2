"""Token catalogue: what is for sale, at what price, and how much is left."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.mint import load_token
from payfirst.api.responses import rejection, token_view
from payfirst.api.services import services
from payfirst.domain.errors import PaymentRejected


async def list_tokens(request: Request) -> Response:
    """
    summary: Tokens for sale.
    responses:
      200: {description: "Price, mint amount, cap, remaining supply, payment asset, network"}
    """
    tokens = await services(request).store.list_tokens()
    return JSONResponse({"tokens": [token_view(t) for t in tokens]})


async def get_token(request: Request) -> Response:
    """
    summary: One token for sale.
    responses:
      200: {description: "Price, mint amount, cap, remaining supply, payment asset, network"}
      400: {description: Not an address}
      404: {description: Unknown token}
    """
    try:
        token = await load_token(services(request), request.path_params["address"])
    except PaymentRejected as exc:
        return rejection(exc)
    return JSONResponse(token_view(token))
