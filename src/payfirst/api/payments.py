"""Payment status for clients that were answered 202, and queue statistics.

Waiting (`?wait=N` long-poll, and the server-sent events of `/api/payment/{id}/events`) is
driven by the store's change notices, never by polling: a waiter sleeps until its payment
changes. A finished payment is answered at once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from payfirst.api.responses import payment_view, rejection
from payfirst.api.services import Services, services
from payfirst.api.waiters import TooManyWaiters, wait_for
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import MintStatus, PaymentStatus

MAX_WAIT_S = 60.0
# How long one event stream stays open, and how often it says it is alive meanwhile.
MAX_STREAM_S = 600.0
KEEPALIVE_S = 15.0


async def get_payment(request: Request) -> Response:
    """
    summary: Status of a queued payment, with its mint items.
    description: >
      With ?wait=N (seconds, at most 60) the answer is held until the payment's status
      or one of its mint items' statuses differs from what it was when the request
      arrived, or N seconds pass; a finished payment (failed, or completed with every
      mint item final) is answered at once. For every change as it happens, use
      /api/payment/{id}/events (server-sent events).
    parameters:
      - {name: wait, in: query, required: false, schema: {type: number}}
    responses:
      200: {description: "status, tx_hash, payer, amount, error, created_at, processed_at, result, mints"}
      400: {description: Not a payment id, or a bad wait}
      404: {description: Unknown payment}
    """
    try:
        payment_id = _payment_id(request)
        wait = _wait_s(request)
    except PaymentRejected as exc:
        return rejection(exc)
    svc = services(request)
    view = await _view(svc, payment_id)
    if view is None:
        return rejection(PaymentRejected(Reason.UNKNOWN_PAYMENT, "no such payment"))
    if wait <= 0 or _finished(view):
        return JSONResponse(view)
    try:
        svc.admit_client(request)  # a held request costs more than an answer
    except PaymentRejected as exc:
        return rejection(exc)
    gone = asyncio.ensure_future(_hung_up(request))
    try:
        await svc.waiters.start(svc.store)
        with svc.waiters.waiting(payment_id) as changed:
            deadline = time.monotonic() + wait
            # Registered before this read: a change committed since the first read wakes us.
            latest = await _view(svc, payment_id)
            while latest is not None and _progress(latest) == _progress(view):
                left = deadline - time.monotonic()
                if left <= 0 or not await wait_for(changed, left, gone=gone):
                    break
                changed.clear()
                latest = await _view(svc, payment_id)
    except TooManyWaiters:
        latest = await _view(svc, payment_id)
        return JSONResponse(latest or view, headers={"Retry-After": "2"})
    finally:
        gone.cancel()
    return JSONResponse(latest or view)


async def _hung_up(request: Request) -> None:
    """Returns when the client disconnects (its waiter slot is freed at once)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def payment_events(request: Request) -> Response:
    """
    summary: A payment's progress as server-sent events.
    description: >
      A `payment` event with the payment's view (as GET /api/payment/{id}) at once and at
      every change of its status or of its mint items' statuses; the stream ends after
      the event in which the payment is finished (failed, or completed with every mint
      item final), or after 10 minutes. Comment lines keep idle connections alive.
    responses:
      200: {description: "text/event-stream of payment events"}
      400: {description: Not a payment id}
      404: {description: Unknown payment}
      503: {description: Too many clients are waiting; retry later}
    """
    try:
        payment_id = _payment_id(request)
    except PaymentRejected as exc:
        return rejection(exc)
    svc = services(request)
    try:
        svc.admit_client(request)
    except PaymentRejected as exc:
        return rejection(exc)
    if await _view(svc, payment_id) is None:
        return rejection(PaymentRejected(Reason.UNKNOWN_PAYMENT, "no such payment"))
    await svc.waiters.start(svc.store)
    if svc.waiters.count >= svc.waiters.max_waiters:
        return JSONResponse(
            {
                "error": Reason.TOO_MANY_WAITERS.value,
                "message": "too many clients are waiting; retry",
            },
            status_code=503,
            headers={"Retry-After": "2"},
        )
    return StreamingResponse(
        _events(svc, payment_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(svc: Services, payment_id: uuid.UUID) -> AsyncIterator[str]:
    try:
        with svc.waiters.waiting(payment_id) as changed:
            deadline = time.monotonic() + MAX_STREAM_S
            sent: object = None
            while time.monotonic() < deadline:
                changed.clear()
                view = await _view(svc, payment_id)
                if view is None:
                    return
                if _progress(view) != sent:
                    sent = _progress(view)
                    yield f"event: payment\ndata: {json.dumps(view, separators=(',', ':'))}\n\n"
                    if _finished(view):
                        return
                left = min(KEEPALIVE_S, deadline - time.monotonic())
                if not await wait_for(changed, left):
                    yield ": keep-alive\n\n"
    except TooManyWaiters:
        yield 'event: error\ndata: {"error":"too_many_waiters"}\n\n'


def _payment_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["payment_id"])
    except ValueError:
        raise PaymentRejected(Reason.INVALID_PAYMENT_ID, "not a payment id") from None


def _wait_s(request: Request) -> float:
    raw = request.query_params.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        raise PaymentRejected(Reason.INVALID_REQUEST, "wait must be a number") from None
    if wait != wait:  # NaN
        raise PaymentRejected(Reason.INVALID_REQUEST, "wait must be a number")
    return min(max(wait, 0.0), MAX_WAIT_S)


async def _view(svc: Services, payment_id: uuid.UUID) -> dict[str, Any] | None:
    # The payment first, then its mint items: they are created in the transaction that
    # completes it, so a completed payment read first always finds them.
    payment = await svc.store.get_payment(payment_id)
    if payment is None:
        return None
    return payment_view(payment, await svc.store.get_mint_items(payment_id))


def _progress(view: dict[str, Any]) -> object:
    return (view["status"], [(m["id"], m["status"]) for m in view["mints"]])


_FINAL_MINT_STATUSES = {MintStatus.COMPLETED.value, MintStatus.FAILED.value}


def _finished(view: dict[str, Any]) -> bool:
    """Nothing more will happen: the payment failed, or completed and, for a mint, every
    mint item is final."""
    status = PaymentStatus(view["status"])
    if not status.is_terminal:
        return False
    if status is PaymentStatus.COMPLETED and view["payment_type"] == "mint" and not view["mints"]:
        return False  # never: its items come with it; but an empty list proves nothing
    return all(m["status"] in _FINAL_MINT_STATUSES for m in view["mints"])


async def payment_stats(request: Request) -> Response:
    """
    summary: Queue depths and rates.
    responses:
      200: {description: "counts per status of payments and mint items, oldest sent age, completions in the last minute"}
    """
    return JSONResponse(await services(request).store.payment_stats())
