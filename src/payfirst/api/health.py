"""Health for operators and load balancers: `/health/live` (the process answers),
`/health/ready` (it can do its work: database, chains, and every relayer can pay for gas),
and `/health` (database and chain reachability, as before)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.services import services
from payfirst.ports.chain import Chain
from payfirst.usecases.readiness import relayer_states


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


async def live(request: Request) -> Response:
    """
    summary: Liveness - the process answers (restart it when this fails).
    responses:
      200: {description: Alive}
    """
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """
    summary: Readiness - the database and every chain answer, and every relayer can pay
      for gas (2 x base fee x 1,000,000 gas at least).
    responses:
      200: {description: Ready}
      503: {description: Not ready; the body says what is missing}
    """
    svc = services(request)
    problems: list[str] = []
    try:
        await svc.store.ping()
    except Exception as exc:
        problems.append(f"database unreachable ({type(exc).__name__})")
    relayers: list[dict[str, Any]] = []
    for served in svc.served.all:
        for state in await relayer_states(svc.store, served):
            relayers.append(
                {
                    "network": state.network,
                    "address": state.address,
                    "balanceWei": None if state.balance_wei is None else str(state.balance_wei),
                    "neededWei": None if state.needed_wei is None else str(state.needed_wei),
                    "canPayGas": state.can_pay_gas,
                }
            )
            if state.balance_wei is None:
                problems.append(f"{state.network}: chain unreachable")
            elif not state.can_pay_gas:
                problems.append(f"{state.network}: relayer {state.address} cannot pay for gas")
    body = {
        "status": "ok" if not problems else "not_ready",
        "problems": problems,
        "relayers": relayers,
    }
    return JSONResponse(body, status_code=200 if not problems else 503)
