"""Payment status for clients that were answered 202, and queue statistics."""

from __future__ import annotations

import asyncio
import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payfirst.api.responses import payment_view, rejection
from payfirst.api.services import services
from payfirst.domain.errors import PaymentRejected

MAX_WAIT_S = 60.0
WAIT_POLL_S = 0.2


async def get_payment(request: Request) -> Response:
    """
    summary: Status of a queued payment, with its mint items.
    description: >
      With ?wait=N (seconds, at most 60) the answer is held until the payment's status
      or one of its mint items' statuses differs from what it was when the request
      arrived, or N seconds pass: a client waits for the next change without polling.
    parameters:
      - {name: wait, in: query, required: false, schema: {type: number}}
    responses:
      200: {description: "status, tx_hash, payer, amount, error, created_at, processed_at, result, mints"}
      400: {description: Not a payment id, or a bad wait}
      404: {description: Unknown payment}
    """
    try:
        payment_id = uuid.UUID(request.path_params["payment_id"])
    except ValueError:
        return rejection(PaymentRejected(400, "invalid_payment_id", "not a payment id"))
    try:
        wait = min(float(request.query_params.get("wait", "0")), MAX_WAIT_S)
    except ValueError:
        return rejection(PaymentRejected(400, "invalid_request", "wait must be a number"))
    store = services(request).store
    payment = await store.get_payment(payment_id)
    if payment is None:
        return rejection(PaymentRejected(404, "unknown_payment", "no such payment"))
    view = payment_view(payment, await store.get_mint_items(payment_id))
    deadline = time.monotonic() + max(wait, 0.0)
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(WAIT_POLL_S)
        payment = await store.get_payment(payment_id)
        assert payment is not None
        latest = payment_view(payment, await store.get_mint_items(payment_id))
        if _progress(latest) != _progress(view):
            return JSONResponse(latest)
    return JSONResponse(view)


def _progress(view: dict[str, object]) -> object:
    return (view["status"], view["mints"])


async def payment_stats(request: Request) -> Response:
    """
    summary: Queue depths and rates.
    responses:
      200: {description: "counts per status of payments and mint items, oldest sent age, completions in the last minute"}
    """
    return JSONResponse(await services(request).store.payment_stats())
