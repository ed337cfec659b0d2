"""PostgresStore's part for agents' payer addresses and spending policies. Its SQL is in `sql/policies.sql`;
PostgresStore inherits this class."""

from __future__ import annotations

import asyncpg


class PolicyRows:
    _pool: asyncpg.Pool
