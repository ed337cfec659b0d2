"""PostgresStore's part for webhook endpoints, the event outbox and deliveries. Its SQL is in `sql/webhooks.sql`;
PostgresStore inherits this class."""

from __future__ import annotations

import asyncpg


class WebhookRows:
    _pool: asyncpg.Pool
