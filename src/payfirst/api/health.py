"""Liveness for operators and load balancers: is the database and the chain reachable."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.services import services
from payfirst.ports.chain import Chain


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
    chains = [s for s in svc.served.all if s.chain is not None]
    if not chains and svc.chain is not None:
        body["chain"] = await _chain(svc.chain, body)
    elif not chains:
        body["chain"] = "not configured"
    else:
        # The first network's under "chain" (as a single-chain setup reports it); every
        # network's under "networks".
        reports = {s.network.caip2: await _chain(s.chain, body) for s in chains if s.chain}
        body["chain"] = next(iter(reports.values()))
        body["networks"] = reports
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


async def _chain(chain: Chain, body: dict[str, Any]) -> dict[str, int] | str:
    """The chain's id and head, or why not (and `body` marked degraded)."""
    try:
        return {"chainId": await chain.chain_id(), "block": await chain.block_number()}
    except Exception as exc:
        body["status"] = "degraded"
        return f"error: unreachable ({type(exc).__name__})"
