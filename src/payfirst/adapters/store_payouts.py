"""PostgresStore's part for provider payouts and balances. Its SQL is in
`sql/payouts.sql`; PostgresStore inherits this class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from payfirst.adapters.sql import QUERIES as _Q
from payfirst.adapters.store_rows import checksum, upsert_ledger_accounts, uuid_of
from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import SignedTx
from payfirst.domain.payouts import (
    Balance,
    Payout,
    PayoutCandidate,
    PayoutRequest,
    PayoutStatus,
    PayoutTerms,
    PayoutTrigger,
    TermsChange,
    entries_for_payout,
)
from payfirst.domain.reasons import Reason


def _payout(row: asyncpg.Record) -> Payout:
    return Payout(
        id=uuid_of(row["id"]),
        provider_id=uuid_of(row["provider_id"]),
        asset=row["asset"],
        chain_id=int(row["chain_id"]),
        to_address=row["to_address"],
        amount=int(row["amount"]),
        status=PayoutStatus(row["status"]),
        trigger=PayoutTrigger(row["trigger"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        relayer=row["relayer"],
        tx_nonce=None if row["nonce"] is None else int(row["nonce"]),
        tx_hash=row["tx_hash"],
        raw_tx=row["raw_tx"],
        error=row["error"],
        completed_at=row["completed_at"],
    )


def _terms(row: asyncpg.Record) -> PayoutTerms:
    threshold = row["payout_threshold"]
    interval = row["payout_interval_s"]
    return PayoutTerms(
        payout_address=row["payout_address"],
        payout_threshold=None if threshold is None else int(threshold),
        payout_interval_s=None if interval is None else int(interval),
    )


class PayoutRows:
    _pool: asyncpg.Pool

    # -- creating and reading ------------------------------------------------------------

    async def create_payout(self, request: PayoutRequest) -> Payout:
        asset = checksum(request.asset)
        async with self._pool.acquire() as conn, conn.transaction():
            # The provider's row, locked: two requests for one provider take turns, so the
            # second sees the first's payout among those in flight.
            account = await conn.fetchrow(_Q["payout_lock_provider"], request.provider_id)
            if account is None or account["role"] != Role.PROVIDER.value:
                raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such provider")
            if account["payout_address"] is None:
                raise PaymentRejected(
                    Reason.NO_PAYOUT_ADDRESS, "set the account's payout_address first"
                )
            row = await conn.fetchrow(
                _Q["payout_available"], request.provider_id, asset, request.chain_id
            )
            assert row is not None
            available = int(row["balance"]) - int(row["in_payout"])
            amount = available if request.amount is None else request.amount
            if amount <= 0 or amount > available:
                raise PaymentRejected(
                    Reason.INSUFFICIENT_BALANCE,
                    f"{max(available, 0)} available, {amount} asked for"
                    if request.amount is not None
                    else "nothing available to pay out",
                )
            created = await conn.fetchrow(
                _Q["insert_payout"],
                uuid4(),
                request.provider_id,
                asset,
                request.chain_id,
                checksum(account["payout_address"]),
                amount,
                request.trigger.value,
            )
        assert created is not None
        return _payout(created)

    async def get_payout(self, payout_id: UUID) -> Payout | None:
        row = await self._pool.fetchrow(_Q["get_payout"], payout_id)
        return None if row is None else _payout(row)

    async def list_payouts(
        self, provider_id: UUID | None, limit: int, *, before: UUID | None = None
    ) -> list[Payout]:
        rows = await self._pool.fetch(_Q["list_payouts"], provider_id, limit, before)
        return [_payout(r) for r in rows]

    async def provider_balances(self, provider_id: UUID) -> list[Balance]:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            booked = await conn.fetch(_Q["provider_ledger_balances"], provider_id)
            payouts = await conn.fetch(_Q["provider_payout_sums"], provider_id)
            coming = await conn.fetch(_Q["provider_pending_payments"], provider_id)
        sums: dict[tuple[str, int], dict[str, int]] = {}

        def add(asset: str, chain_id: int, what: str, amount: Any) -> None:
            key = (checksum(asset), int(chain_id))
            entry = sums.setdefault(key, {})
            entry[what] = entry.get(what, 0) + int(amount)

        for r in booked:
            add(r["asset"], r["chain_id"], "balance", r["amount"])
        for r in payouts:
            add(r["asset"], r["chain_id"], "in_payout", r["in_payout"])
            add(r["asset"], r["chain_id"], "paid_out", r["paid_out"])
        for r in coming:
            add(r["asset"], r["chain_id"], "pending", r["amount"])
        return [
            Balance(
                asset=asset,
                chain_id=chain_id,
                balance=v.get("balance", 0),
                in_payout=v.get("in_payout", 0),
                paid_out=v.get("paid_out", 0),
                pending=v.get("pending", 0),
            )
            for (asset, chain_id), v in sorted(sums.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]

    async def payout_candidates(self, chain_id: int) -> list[PayoutCandidate]:
        rows = await self._pool.fetch(_Q["payout_candidates"], chain_id)
        return [
            PayoutCandidate(
                provider_id=uuid_of(r["provider_id"]),
                asset=r["asset"],
                available=int(r["available"]),
                threshold=None if r["payout_threshold"] is None else int(r["payout_threshold"]),
                interval_s=None if r["payout_interval_s"] is None else int(r["payout_interval_s"]),
                since_last_s=float(r["since_s"]),
            )
            for r in rows
        ]

    async def get_payout_terms(self, account_id: UUID) -> PayoutTerms | None:
        row = await self._pool.fetchrow(_Q["get_payout_terms"], account_id)
        return None if row is None else _terms(row)

    async def update_account_terms(
        self, account_id: UUID, change: TermsChange
    ) -> tuple[Account, PayoutTerms] | None:
        given = change.given
        row = await self._pool.fetchrow(
            _Q["update_account_terms"],
            account_id,
            "payout_address" in given,
            change.payout_address,
            "payout_threshold" in given,
            change.payout_threshold,
            "payout_interval_s" in given,
            change.payout_interval_s,
            "fee_bps" in given,
            change.fee_bps,
        )
        if row is None:
            return None
        account = Account(
            id=uuid_of(row["id"]),
            role=Role(row["role"]),
            name=row["name"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
            fee_bps=None if row["fee_bps"] is None else int(row["fee_bps"]),
            payout_address=row["payout_address"],
        )
        return account, _terms(row)

    # -- the pipeline --------------------------------------------------------------------

    async def claim_payouts(
        self,
        relayer: str,
        limit: int,
        sign: Callable[[Payout, int], SignedTx],
        *,
        chain_id: int,
    ) -> list[Payout]:
        if limit <= 0:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_Q["lock_pending_payouts"], limit, chain_id)
            if not rows:
                return []
            # Payout rows first (SKIP LOCKED), then the relayer row, as claim_payments does.
            await conn.execute(_Q["create_relayer"], relayer, chain_id)
            nonce = int(await conn.fetchval(_Q["lock_relayer"], relayer, chain_id))
            claimed: list[Payout] = []
            for row in rows:
                payout = _payout(row)
                signed = sign(payout, nonce)
                claimed.append(
                    replace(
                        payout,
                        status=PayoutStatus.PROCESSING,
                        relayer=relayer,
                        tx_nonce=nonce,
                        tx_hash=signed.hash,
                        raw_tx=signed.raw,
                    )
                )
                nonce += 1
            await conn.executemany(
                _Q["mark_payout_processing"],
                [(p.id, p.relayer, p.tx_nonce, p.tx_hash, p.raw_tx) for p in claimed],
            )
            await conn.execute(_Q["set_next_nonce"], relayer, nonce, chain_id)
        return claimed

    async def sent_payouts(self, relayer: str, limit: int, *, chain_id: int) -> list[Payout]:
        rows = await self._pool.fetch(_Q["sent_payouts"], relayer, limit, chain_id)
        return [_payout(r) for r in rows]

    async def complete_payout(
        self,
        payout_id: UUID,
        tx_hash: str,
        before_commit: Callable[[], None] | None = None,
    ) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_Q["lock_payout_to_decide"], payout_id)
            if row is None or row["status"] not in (
                PayoutStatus.PROCESSING.value,
                PayoutStatus.SENT.value,
            ):
                return False
            payout = _payout(row)
            await conn.execute(_Q["complete_payout"], payout_id, tx_hash)
            await _record_payout(conn, payout)
            if before_commit is not None:
                before_commit()
        return True

    async def fail_payout(self, payout_id: UUID, error: str) -> bool:
        status = await self._pool.execute(_Q["fail_payout"], payout_id, error)
        return status.split()[-1] != "0"

    async def treasury_books(
        self, holder: str, chain_id: int
    ) -> tuple[dict[str, int], list[Payout]]:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            holdings = await conn.fetch(_Q["ledger_holdings"], checksum(holder), chain_id)
            payouts = await conn.fetch(_Q["payouts_to_check"], chain_id)
        return (
            {r["asset"]: int(r["amount"]) for r in holdings},
            [_payout(r) for r in payouts],
        )


async def _record_payout(conn: Any, payout: Payout) -> None:
    """The payout's `payout` ledger transaction: its accounts created if missing, then the
    transaction and its entries in one statement (the entries' trigger checks the sum)."""
    entries = entries_for_payout(payout)
    await upsert_ledger_accounts(conn, (e.account for e in entries))
    await conn.execute(
        _Q["ledger_record_payout"],
        uuid4(),
        payout.id,
        list(range(len(entries))),
        [e.account.kind.value for e in entries],
        [e.account.owner for e in entries],
        [e.account.asset for e in entries],
        [e.account.chain_id for e in entries],
        [e.amount for e in entries],
    )
