"""PostgresStore's part for what providers and operators read: payments and ledger entries by
page. Its SQL is in `sql/views.sql`; PostgresStore inherits this class."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from payfirst.adapters.sql import QUERIES as _Q
from payfirst.domain.ledger import AccountKind, TransactionKind
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.ports.store import (
    EntryKey,
    EntryRow,
    EntryScope,
    PaymentKey,
    PaymentRow,
    PaymentScope,
)


def _payment_row(row: asyncpg.Record) -> PaymentRow:
    return PaymentRow(
        id=row["id"],
        status=PaymentStatus(row["status"]),
        payment_type=PaymentType(row["payment_type"]),
        payer=row["payer"],
        amount=int(row["amount"]),
        asset=row["payment_asset"],
        chain_id=row["chain_id"],
        pay_to=row["token_address"],
        endpoint_id=row["endpoint_id"],
        provider_id=row["provider_id"],
        fee_bps=row["fee_bps"],
        tx_hash=row["tx_hash"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _entry_row(row: asyncpg.Record) -> EntryRow:
    return EntryRow(
        transaction_id=row["transaction_id"],
        transaction_kind=TransactionKind(row["transaction_kind"]),
        payment_id=row["payment_id"],
        position=row["position"],
        account_kind=AccountKind(row["account_kind"]),
        owner=row["owner"],
        asset=row["asset"],
        chain_id=row["chain_id"],
        amount=int(row["amount"]),
        created_at=row["created_at"],
    )


def _payments_query(
    scope: PaymentScope, limit: int, before: PaymentKey | None
) -> tuple[str, tuple[object, ...]]:
    """The statement and arguments of a page of payments in `scope`."""
    at, last_id = before if before is not None else (None, None)
    statuses = [s.value for s in scope.statuses] or None
    window = (statuses, scope.since, scope.until, limit)
    if scope.endpoint_id is not None:
        args: tuple[object, ...] = (scope.endpoint_id, scope.provider_id, at, last_id, *window)
        return _Q["view_payments_of_endpoint"], args
    if scope.provider_id is not None:
        return _Q["view_payments_of_provider"], (scope.provider_id, at, last_id, *window)
    return _Q["view_payments_all"], (at, last_id, *window)


def _entries_query(
    scope: EntryScope, limit: int, before: EntryKey | None
) -> tuple[str, tuple[object, ...]]:
    """The statement and arguments of a page of ledger entries in `scope`."""
    key = before if before is not None else (None, None, None)
    window = (scope.since, scope.until, *key, limit)
    if scope.account_kind is not None and scope.owner is not None:
        args = (scope.account_kind.value, scope.owner, scope.payment_id, *window)
        return _Q["view_entries_of_owner"], args
    if scope.owner is not None:
        raise ValueError("an owner is read with its accounts' kind")
    kind = None if scope.account_kind is None else scope.account_kind.value
    return _Q["view_entries_all"], (kind, scope.payment_id, *window)


def _counted(page_query: str) -> str:
    # The page statement itself, its size the most counted: the same scope, by construction.
    return f"SELECT count(*) FROM ({page_query}) page"


class ProviderViewRows:
    _pool: asyncpg.Pool

    async def view_payments(
        self, scope: PaymentScope, limit: int, before: PaymentKey | None = None
    ) -> list[PaymentRow]:
        query, args = _payments_query(scope, limit, before)
        return [_payment_row(r) for r in await self._pool.fetch(query, *args)]

    async def count_view_payments(self, scope: PaymentScope, most: int) -> int:
        query, args = _payments_query(scope, most, None)
        return int(await self._pool.fetchval(_counted(query), *args))

    async def view_payment(self, payment_id: UUID, provider_id: UUID | None) -> PaymentRow | None:
        row = await self._pool.fetchrow(_Q["view_payment"], payment_id, provider_id)
        return None if row is None else _payment_row(row)

    async def view_entries(
        self, scope: EntryScope, limit: int, before: EntryKey | None = None
    ) -> list[EntryRow]:
        query, args = _entries_query(scope, limit, before)
        return [_entry_row(r) for r in await self._pool.fetch(query, *args)]

    async def count_view_entries(self, scope: EntryScope, most: int) -> int:
        query, args = _entries_query(scope, most, None)
        return int(await self._pool.fetchval(_counted(query), *args))
