"""PostgresStore's part for paid endpoints (the registry) and what a payment to one records. Its SQL is in
`sql/endpoints.sql`; PostgresStore inherits this class."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from payfirst.adapters.sql import QUERIES as _Q
from payfirst.adapters.store_rows import uuid_of
from payfirst.domain.endpoints import Endpoint, Pricing


class EndpointRows:
    _pool: asyncpg.Pool

    async def create_endpoint(self, endpoint: Endpoint, *, limit: int | None = None) -> bool:
        e = endpoint
        async with self._pool.acquire() as conn, conn.transaction():
            if limit is not None:
                await conn.execute(_Q["lock_endpoints_of_provider"], e.provider_id)
                if await conn.fetchval(_Q["count_enabled_endpoints"], e.provider_id) >= limit:
                    return False
            await conn.execute(
                _Q["insert_endpoint"],
                e.id,
                e.provider_id,
                *_terms(e),
                e.created_at,
                e.updated_at,
                e.disabled_at,
            )
        return True

    async def get_endpoint(self, endpoint_id: UUID) -> Endpoint | None:
        row = await self._pool.fetchrow(_Q["get_endpoint"], endpoint_id)
        return None if row is None else _endpoint(row)

    async def list_endpoints(
        self,
        limit: int,
        *,
        provider_id: UUID | None = None,
        after: UUID | None = None,
        include_disabled: bool = False,
    ) -> list[Endpoint]:
        rows = await self._pool.fetch(
            _Q["list_endpoints"], limit, provider_id, after, include_disabled
        )
        return [_endpoint(r) for r in rows]

    async def update_endpoint(self, endpoint: Endpoint) -> Endpoint | None:
        e = endpoint
        row = await self._pool.fetchrow(
            _Q["update_endpoint"],
            e.id,
            *_terms(e),
            e.updated_at,
        )
        return None if row is None else _endpoint(row)

    async def disable_endpoint(self, endpoint_id: UUID, at: datetime) -> Endpoint | None:
        row = await self._pool.fetchrow(_Q["disable_endpoint"], endpoint_id, at)
        return None if row is None else _endpoint(row)

    async def discoverable_endpoints(self, limit: int, offset: int) -> tuple[list[Endpoint], int]:
        rows = await self._pool.fetch(_Q["discoverable_endpoints"], limit, offset)
        if rows:
            return [_endpoint(r) for r in rows], int(rows[0]["total"])
        total = await self._pool.fetchval(_Q["count_discoverable_endpoints"])
        return [], int(total or 0)


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(
        id=uuid_of(row["id"]),
        provider_id=uuid_of(row["provider_id"]),
        method=row["method"],
        resource=row["resource"],
        pricing=Pricing(row["pricing"]),
        amount=int(row["amount"]),
        unit_param=row["unit_param"],
        max_units=None if row["max_units"] is None else int(row["max_units"]),
        asset=row["asset"],
        chain_id=int(row["chain_id"]),
        pay_to=row["pay_to"],
        description=row["description"],
        mime_type=row["mime_type"],
        input_schema=row["input_schema"],
        output_schema=row["output_schema"],
        discoverable=bool(row["discoverable"]),
        max_timeout_seconds=int(row["max_timeout_seconds"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        disabled_at=row["disabled_at"],
    )


def _terms(e: Endpoint) -> tuple[Any, ...]:
    """The columns an endpoint's registration sets (insert_endpoint and update_endpoint
    take them in this order)."""
    return (
        e.method,
        e.resource,
        e.pricing.value,
        e.amount,
        e.unit_param,
        e.max_units,
        e.asset,
        e.chain_id,
        e.pay_to,
        e.description,
        e.mime_type,
        e.input_schema,
        e.output_schema,
        e.discoverable,
        e.max_timeout_seconds,
    )
