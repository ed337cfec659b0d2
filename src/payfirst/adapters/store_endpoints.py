"""PostgresStore's part for paid endpoints (the registry) and what a payment to one records. Its SQL is in
`sql/endpoints.sql`; PostgresStore inherits this class."""

from __future__ import annotations

import asyncpg


class EndpointRows:
    _pool: asyncpg.Pool
