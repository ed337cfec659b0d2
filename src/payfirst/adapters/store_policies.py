"""PostgresStore's part for agents' payer addresses and spending policies. Its SQL is in `sql/policies.sql`;
PostgresStore inherits this class."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from payfirst.adapters.sql import QUERIES as _Q
from payfirst.adapters.store_rows import payment_of, uuid_of
from payfirst.domain.models import Payment
from payfirst.domain.policies import AgentPayer, Limits, PayerChallenge, SpendingPolicy
from payfirst.domain.statuses import PaymentType


class PolicyRows:
    _pool: asyncpg.Pool

    # -- payers ----------------------------------------------------------------------

    async def create_payer_challenge(self, challenge: PayerChallenge) -> None:
        c = challenge
        await self._pool.execute(
            _Q["insert_payer_challenge"], c.nonce, c.account_id, c.address, c.message, c.expires_at
        )

    async def open_payer_challenges(
        self, account_id: UUID, address: str, now: datetime
    ) -> list[PayerChallenge]:
        rows = await self._pool.fetch(_Q["open_payer_challenges"], account_id, address, now)
        return [
            PayerChallenge(
                nonce=r["nonce"],
                account_id=uuid_of(r["account_id"]),
                address=r["address"],
                message=r["message"],
                expires_at=r["expires_at"],
            )
            for r in rows
        ]

    async def register_payer(
        self, challenge_nonce: str, now: datetime
    ) -> tuple[AgentPayer | None, AgentPayer | None]:
        """ONE transaction: use the challenge, attach its address to its agent. (the payer
        created, None) ; (None, the payer as it already was: anyone's) ; (None, None): the
        challenge is used or expired, nothing changed."""
        async with self._pool.acquire() as conn, conn.transaction():
            used = await conn.fetchrow(_Q["use_payer_challenge"], challenge_nonce, now)
            if used is None:
                return None, None
            row = await conn.fetchrow(
                _Q["insert_agent_payer"], used["address"], used["account_id"], now
            )
            if row is not None:
                return _payer(row), None
            existing = await conn.fetchrow(_Q["get_agent_payer"], used["address"])
            assert existing is not None  # never deleted while the insert's conflict holds
            return None, _payer(existing)

    async def get_agent_payer(self, address: str) -> AgentPayer | None:
        row = await self._pool.fetchrow(_Q["get_agent_payer"], address)
        return None if row is None else _payer(row)

    async def list_agent_payers(
        self, account_id: UUID | None, limit: int, *, after: str | None = None
    ) -> list[AgentPayer]:
        rows = await self._pool.fetch(_Q["list_agent_payers"], account_id, limit, after)
        return [_payer(r) for r in rows]

    async def delete_agent_payer(self, address: str, account_id: UUID | None) -> bool:
        return await self._pool.fetchval(_Q["delete_agent_payer"], address, account_id) is not None

    # -- policies --------------------------------------------------------------------

    async def put_spending_policy(self, policy: SpendingPolicy, at: datetime) -> None:
        p = policy
        await self._pool.execute(
            _Q["upsert_spending_policy"],
            p.payer,
            _limits_out(p.max_per_payment),
            _limits_out(p.max_per_day),
            _limits_out(p.max_per_month),
            _limits_out(p.approval_threshold),
            None if p.allowed_providers is None else sorted(p.allowed_providers),
            None if p.allowed_endpoints is None else sorted(p.allowed_endpoints),
            None if p.allowed_pay_to is None else sorted(p.allowed_pay_to),
            None if p.allowed_networks is None else sorted(p.allowed_networks),
            at,
        )

    async def get_spending_policy(self, payer: str) -> SpendingPolicy | None:
        row = await self._pool.fetchrow(_Q["get_spending_policy"], payer)
        if row is None:
            return None
        return SpendingPolicy(
            payer=row["payer"],
            max_per_payment=_limits_in(row["max_per_payment"]),
            max_per_day=_limits_in(row["max_per_day"]),
            max_per_month=_limits_in(row["max_per_month"]),
            approval_threshold=_limits_in(row["approval_threshold"]),
            allowed_providers=_set(row["allowed_providers"], uuid_of),
            allowed_endpoints=_set(row["allowed_endpoints"], uuid_of),
            allowed_pay_to=_set(row["allowed_pay_to"], str),
            allowed_networks=_set(row["allowed_networks"], int),
            updated_at=row["updated_at"],
        )

    async def delete_spending_policy(self, payer: str) -> bool:
        return await self._pool.fetchval(_Q["delete_spending_policy"], payer) is not None

    async def policy_spent(self, payer: str, asset: str) -> tuple[int, int]:
        row = await self._pool.fetchrow(_Q["policy_spent"], payer, asset)
        assert row is not None
        return int(row["day"]), int(row["month"])

    # -- approvals -------------------------------------------------------------------

    async def list_awaiting_approval(self, account_id: UUID | None, limit: int) -> list[Payment]:
        rows = await self._pool.fetch(_Q["list_awaiting_approval"], account_id, limit)
        return [payment_of(r) for r in rows]

    async def approve_payment(self, payment_id: UUID, account_id: UUID | None) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            approved = await conn.fetchval(_Q["approve_payment"], payment_id, account_id)
            if approved is None:
                return False
            await conn.execute(_Q["wake_senders"])
        return True

    async def reject_payment(self, payment_id: UUID, account_id: UUID | None, error: str) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_Q["reject_payment"], payment_id, account_id, error)
            if row is None:
                return False
            if row["payment_type"] == PaymentType.MINT.value:
                await conn.execute(
                    _Q["release_reserved_supply"], row["token_address"], row["quantity"]
                )
        return True


def _payer(row: asyncpg.Record) -> AgentPayer:
    return AgentPayer(
        address=row["address"],
        account_id=uuid_of(row["account_id"]),
        verified_at=row["verified_at"],
        created_at=row["created_at"],
    )


def _limits_out(limits: Limits | None) -> dict[str, str] | None:
    return None if limits is None else {asset: str(v) for asset, v in limits.items()}


def _limits_in(value: Mapping[str, str] | None) -> dict[str, int] | None:
    return None if value is None else {asset: int(v) for asset, v in value.items()}


def _set(values: list[Any] | None, kind: Any) -> Any:
    return None if values is None else frozenset(kind(v) for v in values)
