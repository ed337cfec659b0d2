"""PostgresStore's part for webhook endpoints, the event outbox and deliveries. Its SQL is in `sql/webhooks.sql`;
PostgresStore inherits this class.

The outbox itself is written by triggers (migration 0016) in the transactions that change
a payment's, a mint item's or a payout's status; this part registers endpoints, claims and
settles deliveries, and replays messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from payfirst.adapters.sql import QUERIES as _Q
from payfirst.adapters.store_rows import uuid_of
from payfirst.domain.webhooks import (
    Attempt,
    AttemptResult,
    DueDelivery,
    EndpointChange,
    EventType,
    WebhookEndpoint,
)

#: The NOTIFY channel the outbox triggers signal on (PostgresStore's LISTEN connection).
WEBHOOK_CHANNEL = "payfirst_webhook_message"


def _endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=uuid_of(row["id"]),
        account_id=uuid_of(row["account_id"]),
        url=row["url"],
        event_types=tuple(row["event_types"]),
        secret=row["secret"],
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"],
        failing_since=row["failing_since"],
    )


def _attempt(row: asyncpg.Record) -> Attempt:
    return Attempt(
        id=int(row["id"]),
        delivery_id=int(row["delivery_id"]),
        endpoint_id=uuid_of(row["endpoint_id"]),
        message_id=row["message_id"],
        started_at=row["started_at"],
        latency_ms=int(row["latency_ms"]),
        status=row["response_status"],
        body=row["response_body"],
        error=row["error"],
    )


class WebhookRows:
    _pool: asyncpg.Pool
    _webhook_watchers: list[Callable[[], None]]

    async def _listen(self) -> None: ...  # PostgresStore's LISTEN connection

    # -- endpoints ------------------------------------------------------------------------

    async def create_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None:
        await self._pool.execute(
            _Q["insert_webhook_endpoint"],
            endpoint.id,
            endpoint.account_id,
            endpoint.url,
            list(endpoint.event_types),
            endpoint.secret,
            endpoint.description,
            endpoint.created_at,
        )

    async def webhook_endpoint(self, endpoint_id: UUID) -> WebhookEndpoint | None:
        row = await self._pool.fetchrow(_Q["webhook_endpoint"], endpoint_id)
        return None if row is None else _endpoint(row)

    async def webhook_endpoints(
        self, account_id: UUID | None, limit: int, after: UUID | None = None
    ) -> list[WebhookEndpoint]:
        rows = await self._pool.fetch(_Q["webhook_endpoints_page"], account_id, after, limit)
        return [_endpoint(r) for r in rows]

    async def update_webhook_endpoint(
        self, endpoint_id: UUID, change: EndpointChange, at: datetime
    ) -> WebhookEndpoint | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_Q["webhook_endpoint"] + " FOR UPDATE", endpoint_id)
            if row is None:
                return None
            now = _endpoint(row)
            given = change.given
            url = change.url if "url" in given and change.url is not None else now.url
            types = (
                change.event_types
                if "event_types" in given and change.event_types is not None
                else now.event_types
            )
            description = (
                change.description
                if "description" in given and change.description is not None
                else now.description
            )
            updated = await conn.fetchrow(
                _Q["update_webhook_endpoint"], endpoint_id, url, list(types), description, at
            )
            return None if updated is None else _endpoint(updated)

    async def rotate_webhook_secret(
        self, endpoint_id: UUID, secret: str, previous_until: datetime
    ) -> WebhookEndpoint | None:
        row = await self._pool.fetchrow(
            _Q["rotate_webhook_secret"], endpoint_id, secret, previous_until
        )
        return None if row is None else _endpoint(row)

    async def delete_webhook_endpoint(self, endpoint_id: UUID) -> bool:
        return await self._pool.fetchval(_Q["delete_webhook_endpoint"], endpoint_id) is not None

    async def enable_webhook_endpoint(
        self, endpoint_id: UUID, at: datetime
    ) -> WebhookEndpoint | None:
        row = await self._pool.fetchrow(_Q["enable_webhook_endpoint"], endpoint_id, at)
        return None if row is None else _endpoint(row)

    async def webhook_attempts(
        self, endpoint_id: UUID, limit: int, before: int | None = None
    ) -> list[Attempt]:
        rows = await self._pool.fetch(_Q["webhook_attempts_page"], endpoint_id, before, limit)
        return [_attempt(r) for r in rows]

    async def replay_webhook_messages(
        self,
        endpoint_id: UUID,
        *,
        message_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _Q["replay_webhook_messages"], endpoint_id, message_id, since, until
            )
            if rows:
                await conn.execute(_Q["notify_webhook_message"])
        return len(rows)

    async def emit_webhook_event(
        self, account_ids: list[UUID], event_type: EventType, data: dict[str, Any]
    ) -> None:
        await self._pool.execute(_Q["emit_webhook_event"], account_ids, str(event_type), data)

    # -- the dispatcher -------------------------------------------------------------------

    async def claim_webhook_deliveries(self, limit: int, lease_s: float) -> list[DueDelivery]:
        lease = uuid4()
        rows = await self._pool.fetch(_Q["claim_webhook_deliveries"], limit, lease_s, lease)
        return [
            DueDelivery(
                id=int(r["id"]),
                lease=lease,
                attempts=int(r["attempts"]),
                started_at=r["started_at"],
                message_id=r["message_id"],
                event_type=r["event_type"],
                payload=r["payload"],
                endpoint_id=uuid_of(r["endpoint_id"]),
                account_id=uuid_of(r["account_id"]),
                url=r["url"],
                secret=r["secret"],
                previous_secret=r["previous_secret"],
            )
            for r in rows
        ]

    async def record_webhook_attempts(
        self, outcomes: Sequence[tuple[DueDelivery, AttemptResult, datetime | None]]
    ) -> list[bool]:
        """ONE transaction for all: log the attempts; under each delivery's lease, mark it
        delivered (2xx) or due again at its retry time (None: failed), and its endpoint
        succeeding or failing. Per outcome, whether its lease still held (False: another
        dispatcher or a replay took it over; only logged)."""
        if not outcomes:
            return []
        ok = [(d, r) for d, r, _ in outcomes if r.delivered]
        failed = [(d, r, at) for d, r, at in outcomes if not r.delivered]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _Q["record_webhook_attempts"],
                [d.id for d, _, _ in outcomes],
                [d.endpoint_id for d, _, _ in outcomes],
                [d.message_id for d, _, _ in outcomes],
                [r.started_at for _, r, _ in outcomes],
                [r.status for _, r, _ in outcomes],
                [r.latency_ms for _, r, _ in outcomes],
                [r.body for _, r, _ in outcomes],
                [r.error for _, r, _ in outcomes],
            )
            held: set[int] = set()
            if ok:
                rows = await conn.fetch(
                    _Q["webhooks_delivered"],
                    [d.id for d, _ in ok],
                    [d.lease for d, _ in ok],
                    [r.started_at for _, r in ok],
                )
                held.update(int(r["id"]) for r in rows)
                await conn.execute(
                    _Q["webhooks_endpoints_succeeded"], list({d.endpoint_id for d, _ in ok})
                )
            if failed:
                rows = await conn.fetch(
                    _Q["webhooks_retry"],
                    [d.id for d, _, _ in failed],
                    [d.lease for d, _, _ in failed],
                    [r.started_at for _, r, _ in failed],
                    [at for _, _, at in failed],
                )
                held.update(int(r["id"]) for r in rows)
                # An endpoint that also succeeded in this batch is not failing.
                good = {d.endpoint_id for d, _ in ok}
                bad = [
                    (d.endpoint_id, r.started_at) for d, r, _ in failed if d.endpoint_id not in good
                ]
                if bad:
                    await conn.execute(
                        _Q["webhooks_endpoints_failed"],
                        [e for e, _ in bad],
                        [at for _, at in bad],
                    )
        return [d.id in held for d, _, _ in outcomes]

    async def disable_failing_webhook_endpoints(
        self, failing_before: datetime, reason: str
    ) -> list[WebhookEndpoint]:
        """ONE transaction: disable the endpoints failing since before `failing_before`,
        fail their pending deliveries and tell each owner (a `webhook.disabled` message to
        its other endpoints)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_Q["disable_failing_webhook_endpoints"], failing_before, reason)
            disabled = [_endpoint(r) for r in rows]
            if disabled:
                await conn.execute(_Q["fail_disabled_webhook_deliveries"], [e.id for e in disabled])
            for endpoint in disabled:
                data = {
                    "endpoint_id": str(endpoint.id),
                    "url": endpoint.url,
                    "reason": reason,
                    "failing_since": None
                    if endpoint.failing_since is None
                    else endpoint.failing_since.isoformat(),
                    "disabled_at": None
                    if endpoint.disabled_at is None
                    else endpoint.disabled_at.isoformat(),
                }
                await conn.execute(
                    _Q["emit_webhook_event"],
                    [endpoint.account_id],
                    str(EventType.WEBHOOK_DISABLED),
                    data,
                )
        return disabled

    async def watch_webhook_messages(self, callback: Callable[[], None]) -> None:
        await self._listen()
        self._webhook_watchers.append(callback)

    def _on_webhook_message(self, conn: object, pid: int, channel: str, payload: object) -> None:
        for watcher in self._webhook_watchers:
            watcher()
