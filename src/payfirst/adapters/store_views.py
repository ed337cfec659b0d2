"""PostgresStore's part for what providers and operators read: payments and ledger entries by page. Its SQL is in
`sql/views.sql`; PostgresStore inherits this class."""

from __future__ import annotations

import asyncpg


class ProviderViewRows:
    _pool: asyncpg.Pool
