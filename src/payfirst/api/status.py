"""The status page: `/status` (HTML, vanilla JS and the vendored uPlot), its data as
server-sent events (`/v1/status/stream`) and the one-click "decide by the chain" of a stuck
payment (`/v1/status/stuck/{id}/decide`).

The page and its assets carry no data and need no key: a browser cannot send a Bearer
header when it navigates. The page's script asks for the operator key, keeps it in
sessionStorage (gone with the tab) and sends it as `Authorization: Bearer` on every data
call; no cookie, so no cross-site request can use it. PAYFIRST_STATUS_PAGE=0 makes every
route here 404."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from importlib import resources
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from payfirst.api.auth import refusal, require
from payfirst.api.http_limits import json_body
from payfirst.api.responses import rejection
from payfirst.api.services import Services, services
from payfirst.domain.accounts import Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.domain.status import Percentiles
from payfirst.usecases.status import Decision, Status

log = logging.getLogger("payfirst.status")

#: One event a second; a stream ends after 10 minutes (the page opens the next one), and the
#: key is checked again every 5 events (a revoked key stops its page within 5 s).
TICK_S: Final = 1.0
MAX_STREAM_S: Final = 600.0
RECHECK_EVERY: Final = 5
#: Open status streams per process; past it 503.
MAX_STREAMS: Final = 16

#: The vendored files the page loads (api/static), by the name in their URL.
ASSETS: Final = {
    "status.js": "text/javascript; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_WEI_PER_COIN: Final = 18


def _static(name: str) -> bytes:
    return (resources.files("payfirst.api") / "static" / name).read_bytes()


def _not_found(request: Request) -> Response:
    return JSONResponse({"error": Reason.NOT_FOUND.value, "message": request.url.path}, 404)


async def status_page(request: Request) -> Response:
    """The status page (no data in it: its script asks for the operator key)."""
    if not services(request).status_page:
        return _not_found(request)
    return Response(
        _static("status.html"),
        media_type="text/html; charset=utf-8",
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


async def status_asset(request: Request) -> Response:
    """One of the page's scripts or style sheets."""
    name = request.path_params["name"]
    if not services(request).status_page or name not in ASSETS:
        return _not_found(request)
    return Response(
        _static(name),
        media_type=ASSETS[name],
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


async def status_stream(request: Request) -> Response:
    """
    summary: The status page's data as server-sent events.
    description: >
      The operator's key. A `status` event at once and every second: queue depth per
      unfinished status, payments accepted, completed and failed per second (the last 10 s)
      and in the last minute, latency percentiles (p50, p95, p99) of accepted -> sent and
      sent -> completed over the payments completed in the last 5 minutes, each relayer's gas
      balance and nonces, the last 20 failures with their reasons, and the payments `sent`
      for longer than the confirmation timeout. An `error` event when a read fails (the
      stream goes on) or the key stops being valid (the stream ends). A stream ends after 10
      minutes. 404 when PAYFIRST_STATUS_PAGE=0.
    responses:
      200: {description: "text/event-stream of status events"}
      401: {description: No valid API key}
      403: {description: Not the operator's key}
      404: {description: The status page is disabled}
      503: {description: Too many status streams are open; retry later}
    """
    svc = services(request)
    if not svc.status_page:
        return _not_found(request)
    try:
        await require(request, Role.OPERATOR)
    except PaymentRejected as exc:
        return refusal(exc)
    if svc.status_streams >= MAX_STREAMS:
        return JSONResponse(
            {
                "error": Reason.TOO_MANY_WAITERS.value,
                "message": "too many status streams are open; retry",
            },
            status_code=503,
            headers={"Retry-After": "2"},
        )
    return StreamingResponse(
        _events(request, svc),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(request: Request, svc: Services) -> AsyncIterator[str]:
    # Counted from its first event (a stream never started holds no slot).
    svc.status_streams += 1
    try:
        yield "retry: 2000\n\n"
        started = time.monotonic()
        tick = 0
        while time.monotonic() - started < MAX_STREAM_S:
            if tick and tick % RECHECK_EVERY == 0:
                try:
                    await require(request, Role.OPERATOR)
                except PaymentRejected as exc:
                    yield _event("error", {"error": exc.reason.value, "message": exc.message})
                    return
            try:
                yield _event("status", status_view(await svc.status.snapshot()))
            except Exception as exc:
                # The type only: the text may carry a DSN or an RPC URL with its API key.
                log.warning("status page: a read failed: %s", type(exc).__name__)
                yield _event(
                    "error",
                    {"error": "unavailable", "message": f"read failed: {type(exc).__name__}"},
                )
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * TICK_S - time.monotonic()))
    finally:
        svc.status_streams -= 1


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def decide_stuck(request: Request) -> Response:
    """
    summary: Decide a stuck payment by the chain now (the `reset-stuck` logic).
    description: >
      The operator's key. The payment must be `sent`. What the chain says at the
      confirmation depth decides it, as the confirmer would: completed (with its mint
      items), failed, or back to pending when its tx was dropped; a tx not mined yet is
      re-sent and the payment stays `sent` (decided false). 404 when
      PAYFIRST_STATUS_PAGE=0.
    responses:
      200: {description: "payment_id, status (after), decided, error, tx_hash"}
      400: {description: "Not a payment id, or a body other than {}"}
      401: {description: No valid API key}
      403: {description: Not the operator's key}
      404: {description: Unknown payment, or the status page is disabled}
      409: {description: The payment is not sent}
      503: {description: This process holds no relayer key, or the chain is unreachable}
    """
    svc = services(request)
    if not svc.status_page:
        return _not_found(request)
    try:
        await require(request, Role.OPERATOR)
        if await json_body(request, Reason.INVALID_REQUEST, empty={}) != {}:
            raise PaymentRejected(Reason.INVALID_REQUEST, "the body must be empty or {}")
        try:
            payment_id = uuid.UUID(request.path_params["payment_id"])
        except ValueError:
            raise PaymentRejected(Reason.INVALID_PAYMENT_ID, "not a payment id") from None
        decision = await svc.status.decide(payment_id)
    except PaymentRejected as exc:
        return refusal(exc) if exc.reason is Reason.UNAUTHORIZED else rejection(exc)
    log.info(
        "status page: payment %s decided by the chain: %s",
        payment_id,
        decision.status.value,
        extra={"payment_id": str(payment_id)},
    )
    return JSONResponse(decision_view(decision))


def decision_view(decision: Decision) -> dict[str, Any]:
    return {
        "payment_id": str(decision.payment_id),
        "status": decision.status.value,
        "decided": decision.decided,
        "error": decision.error,
        "tx_hash": decision.tx_hash,
    }


def _percentiles(p: Percentiles) -> dict[str, float | None]:
    return {"p50": p.p50, "p95": p.p95, "p99": p.p99}


def _coins(wei: int | None) -> str | None:
    return None if wei is None else f"{Decimal(wei).scaleb(-_WEI_PER_COIN):.6f}"


def status_view(status: Status) -> dict[str, Any]:
    """The JSON of one `status` event."""
    q = status.queue
    window = q.rate_window_s
    return {
        "at": q.at.isoformat(),
        "queue": q.depth,
        "rates": {kind: q.recent[kind] / window for kind in q.recent},
        "rate_window_s": window,
        "last_minute": q.last_minute,
        "latency_s": {
            "accept_to_sent": _percentiles(q.accept_to_sent),
            "sent_to_completed": _percentiles(q.sent_to_completed),
            "window_s": q.latency_window_s,
            "sample": q.latency_sample,
        },
        "relayers": [
            {
                "network": r.network,
                "chain_id": r.chain_id,
                "address": r.state.address,
                "balance_wei": None if r.state.balance_wei is None else str(r.state.balance_wei),
                "balance": _coins(r.state.balance_wei),
                "needed_wei": None if r.state.needed_wei is None else str(r.state.needed_wei),
                "can_pay_gas": r.state.can_pay_gas,
                "stored_next_nonce": r.stored_next_nonce,
                "nonce_gap": r.state.nonce_gap,
            }
            for r in status.relayers
        ],
        "failures": [
            {
                "payment_id": str(f.payment_id),
                "status": f.status,
                "error": f.error,
                "chain_id": f.chain_id,
                "payer": f.payer,
                "amount": str(f.amount),
                "at": f.at.isoformat(),
            }
            for f in q.failures
        ],
        "stuck": {
            "after_s": q.stuck_after_s,
            "count": q.stuck_count,
            "payments": [
                {
                    "payment_id": str(s.payment_id),
                    "chain_id": s.chain_id,
                    "tx_hash": s.tx_hash,
                    "relayer": s.relayer,
                    "nonce": s.nonce,
                    "sent_at": s.sent_at.isoformat(),
                }
                for s in q.stuck
            ],
        },
    }
