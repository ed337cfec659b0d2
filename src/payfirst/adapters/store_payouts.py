"""PostgresStore's part for provider payouts and balances. Its SQL is in
`sql/payouts.sql`; PostgresStore inherits this class."""

from __future__ import annotations

import asyncpg


class PayoutRows:
    _pool: asyncpg.Pool
