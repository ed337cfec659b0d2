"""What the status page shows of the queue (payfirst.usecases.status): one snapshot read
from the database in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Seconds; None when no payment of the window has the timestamps."""

    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class Failure:
    payment_id: UUID
    status: str  # failed or confirmation_failed
    error: str | None
    chain_id: int | None
    payer: str
    amount: int
    at: datetime  # when it failed


@dataclass(frozen=True, slots=True)
class StuckPayment:
    """A payment `sent` for longer than the confirmation timeout."""

    payment_id: UUID
    chain_id: int | None
    tx_hash: str | None
    relayer: str | None
    nonce: int | None
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    at: datetime  # the database's clock
    # Payments waiting in each unfinished status (pending, processing, sent,
    # awaiting_approval).
    depth: dict[str, int]
    # Accepted (created), completed and failed in the last `rate_window_s` seconds, and in
    # the last minute.
    rate_window_s: int
    recent: dict[str, int]
    last_minute: dict[str, int]
    # Latencies of the payments completed in the last `latency_window_s` seconds (at most
    # `latency_sample` of them, the latest): accepted -> sent, sent -> completed.
    latency_window_s: int
    latency_sample: int
    accept_to_sent: Percentiles
    sent_to_completed: Percentiles
    failures: tuple[Failure, ...]  # the latest first
    stuck_after_s: int
    stuck_count: int
    stuck: tuple[StuckPayment, ...]  # the longest sent first
