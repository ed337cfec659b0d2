"""What the PostgresStore's parts share: rows -> domain records, and writing ledger
accounts."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import asyncpg
from eth_utils.address import to_checksum_address

from payfirst.adapters.sql import QUERIES as _Q
from payfirst.domain.ledger import Account as LedgerAccount
from payfirst.domain.models import Authorization, Payment
from payfirst.domain.statuses import PaymentStatus, PaymentType


def uuid_of(value: Any) -> UUID:
    # asyncpg hands back its own UUID subclass; the records hold plain uuid.UUID.
    return value if type(value) is UUID else UUID(str(value))


@functools.lru_cache(maxsize=65_536)
def checksum(address: str) -> str:
    """EIP-55 (ledger accounts are keyed by it); cached: a tick sees the same few payees."""
    return str(to_checksum_address(address))


def payment_of(row: asyncpg.Record) -> Payment:
    """A payment_queue row (every column the domain record holds)."""
    return Payment(
        id=uuid_of(row["id"]),
        payment_type=PaymentType(row["payment_type"]),
        payer=row["payer"],
        amount=int(row["amount"]),
        payment_asset=row["payment_asset"],
        pay_to=row["token_address"],
        quantity=int(row["quantity"]),
        authorization=Authorization.from_json(row["authorization"]),
        metadata=dict(row["metadata"] or {}),
        status=PaymentStatus(row["status"]),
        tx_hash=row["tx_hash"],
        tx_nonce=None if row["nonce"] is None else int(row["nonce"]),
        relayer=row["relayer"],
        raw_tx=row["raw_tx"],
        error=row["error"],
        created_at=row["created_at"],
        processed_at=row["processed_at"],
        result=row["result"],
        chain_id=None if row["chain_id"] is None else int(row["chain_id"]),
        endpoint_id=None if row["endpoint_id"] is None else uuid_of(row["endpoint_id"]),
    )


async def upsert_ledger_accounts(conn: Any, accounts: Iterable[LedgerAccount]) -> None:
    """Create the ledger accounts that do not exist yet, in a fixed order (no deadlock
    between two writers)."""
    ordered = sorted(set(accounts), key=lambda a: (a.kind.value, a.owner, a.asset, a.chain_id))
    await conn.execute(
        _Q["ledger_upsert_accounts"],
        [a.kind.value for a in ordered],
        [a.owner for a in ordered],
        [a.asset for a in ordered],
        [a.chain_id for a in ordered],
    )
