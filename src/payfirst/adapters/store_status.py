"""PostgresStore's part for the status page: one snapshot of the queue, read in one
transaction. Its SQL is in `sql/status.sql`; PostgresStore inherits this class."""

from __future__ import annotations

from typing import Final

import asyncpg

from payfirst.adapters.sql import QUERIES as _Q
from payfirst.domain.status import Failure, Percentiles, QueueSnapshot, StuckPayment

#: Accepted, completed and failed are also counted over this many last seconds (the rates).
RATE_WINDOW_S: Final = 10
#: Latency percentiles: the payments completed in the last 5 minutes, at most 5000 of them.
LATENCY_WINDOW_S: Final = 300
LATENCY_SAMPLE: Final = 5000
FAILURES: Final = 20
STUCK_LISTED: Final = 50
_DEPTH: Final = ("pending", "processing", "sent", "awaiting_approval")
_KINDS: Final = ("accepted", "completed", "failed")


class StatusRows:
    _pool: asyncpg.Pool

    async def queue_snapshot(self, *, stuck_after_s: int) -> QueueSnapshot:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            depth = await conn.fetchrow(_Q["status_depth"])
            recent = await conn.fetchrow(_Q["status_recent"], float(RATE_WINDOW_S))
            latency = await conn.fetchrow(
                _Q["status_latency"], float(LATENCY_WINDOW_S), LATENCY_SAMPLE
            )
            failures = await conn.fetch(_Q["status_failures"], FAILURES)
            stuck = await conn.fetch(_Q["status_stuck"], float(stuck_after_s), STUCK_LISTED)
            stuck_count = await conn.fetchval(_Q["status_stuck_count"], float(stuck_after_s))
        assert depth is not None and recent is not None and latency is not None
        return QueueSnapshot(
            at=depth["at"],
            depth={name: int(depth[name]) for name in _DEPTH},
            rate_window_s=RATE_WINDOW_S,
            recent={kind: int(recent[f"{kind}_recent"]) for kind in _KINDS},
            last_minute={kind: int(recent[kind]) for kind in _KINDS},
            latency_window_s=LATENCY_WINDOW_S,
            latency_sample=int(latency["n"]),
            accept_to_sent=_percentiles(latency["to_sent"]),
            sent_to_completed=_percentiles(latency["to_completed"]),
            failures=tuple(
                Failure(
                    payment_id=r["id"],
                    status=r["status"],
                    error=r["error"],
                    chain_id=r["chain_id"],
                    payer=r["payer"],
                    amount=int(r["amount"]),
                    at=r["updated_at"],
                )
                for r in failures
            ),
            stuck_after_s=stuck_after_s,
            stuck_count=int(stuck_count or 0),
            stuck=tuple(
                StuckPayment(
                    payment_id=r["id"],
                    chain_id=r["chain_id"],
                    tx_hash=r["tx_hash"],
                    relayer=r["relayer"],
                    nonce=r["nonce"],
                    sent_at=r["processed_at"],
                )
                for r in stuck
            ),
        )


def _percentiles(values: list[float] | None) -> Percentiles:
    """[p50, p95, p99] as percentile_cont gives them (NULL over no rows)."""
    if values is None or len(values) != 3 or any(v is None for v in values):
        return Percentiles(None, None, None)
    p50, p95, p99 = (max(0.0, float(v)) for v in values)
    return Percentiles(p50, p95, p99)
