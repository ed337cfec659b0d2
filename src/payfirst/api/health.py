"""Liveness for operators and load balancers: is the database and the chain reachable."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.services import services


async def health(request: Request) -> Response:
    """
    summary: Database and chain reachability.
    responses:
      200: {description: Both reachable}
      503: {description: One of them is not}
    """
    svc = services(request)
    body: dict[str, Any] = {"status": "ok"}
    try:
        await svc.store.ping()
        body["database"] = "ok"
    except Exception as exc:
        # The type only: the text may carry a DSN or an RPC URL with its API key.
        body["database"] = f"error: unreachable ({type(exc).__name__})"
        body["status"] = "degraded"
    if svc.chain is None:
        body["chain"] = "not configured"
    else:
        try:
            body["chain"] = {
                "chainId": await svc.chain.chain_id(),
                "block": await svc.chain.block_number(),
            }
        except Exception as exc:
            body["chain"] = f"error: unreachable ({type(exc).__name__})"
            body["status"] = "degraded"
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
