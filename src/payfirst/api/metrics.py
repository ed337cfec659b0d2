"""`GET /metrics`: payfirst's Prometheus metrics in the text format.

The counters and histograms every process keeps (payfirst.metrics; all processes of the
host in multiprocess mode), and what is read at scrape time: the payments per status (the
queue's depth) and, per network, each relayer's gas balance and nonce gap (the nonces it
signed that the chain has not taken yet)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from payfirst.api.services import services
from payfirst.domain.statuses import PaymentStatus
from payfirst.metrics import metrics, multiprocess_dir
from payfirst.usecases.readiness import relayer_states

log = logging.getLogger("payfirst.metrics")

#: The most a scrape waits for the database and the chains.
SCRAPE_TIMEOUT_S: Final = 5.0


async def prometheus_metrics(request: Request) -> Response:
    """
    summary: Prometheus metrics (text format).
    responses:
      200: {description: The metrics}
    """
    kept = metrics().registry
    if kept is None:
        kept = CollectorRegistry()
        MultiProcessCollector(kept, path=multiprocess_dir())  # type: ignore[no-untyped-call]
    scraped = CollectorRegistry()
    await _scrape(request, scraped)
    body = generate_latest(kept) + generate_latest(scraped)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _scrape(request: Request, registry: CollectorRegistry) -> None:
    svc = services(request)
    depth = Gauge(
        "payfirst_payments",
        "Payments per status now (pending, processing, sent: the queue).",
        ["status"],
        registry=registry,
    )
    up = Gauge(
        "payfirst_scrape_database_up",
        "1 when the database answered this scrape.",
        registry=registry,
    )
    try:
        counts = await asyncio.wait_for(svc.store.count_payments_by_status(), SCRAPE_TIMEOUT_S)
    except Exception as exc:  # a scrape never fails: it says the database did not answer
        log.warning("metrics: payment counts unavailable: %s", type(exc).__name__)
        up.set(0)
        return
    up.set(1)
    for status in PaymentStatus:
        depth.labels(status.value).set(counts.get(status.value, 0))
    labels = ["network", "relayer"]
    balance = Gauge(
        "payfirst_relayer_balance_wei",
        "Each relayer's gas balance (the chain's own coin, in wei).",
        labels,
        registry=registry,
    )
    can_pay = Gauge(
        "payfirst_relayer_can_pay_gas",
        "1 when the relayer holds at least 2 x base fee x 1,000,000 gas (readiness).",
        labels,
        registry=registry,
    )
    gap = Gauge(
        "payfirst_relayer_nonce_gap",
        "Nonces the relayer signed that the chain has not taken yet.",
        labels,
        registry=registry,
    )
    for served in svc.served.all:
        for state in await relayer_states(svc.store, served):
            key = (state.network, state.address)
            if state.balance_wei is not None:
                balance.labels(*key).set(state.balance_wei)
            if state.nonce_gap is not None:
                gap.labels(*key).set(state.nonce_gap)
            can_pay.labels(*key).set(1 if state.can_pay_gas else 0)
