"""The PostgreSQL store: the Store port over an asyncpg pool.

Amounts are NUMERIC(78,0) (exact Python ints in and out), json columns are jsonb (dicts in
and out through the codecs registered on every pooled connection), timestamps timestamptz.
The SQL is in `sql/queries.sql`, each statement looked up by its name in `_Q`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID, uuid4

import asyncpg

from payfirst.adapters.migrate import MIGRATION_LOCK_KEY
from payfirst.adapters.migrate import migrate as run_migrations
from payfirst.adapters.sql import QUERIES as _Q
from payfirst.adapters.store_endpoints import EndpointRows
from payfirst.adapters.store_payouts import PayoutRows
from payfirst.adapters.store_policies import PolicyRows
from payfirst.adapters.store_rows import checksum, payment_of, upsert_ledger_accounts, uuid_of
from payfirst.adapters.store_status import StatusRows
from payfirst.adapters.store_views import ProviderViewRows
from payfirst.adapters.store_webhooks import WEBHOOK_CHANNEL, WebhookRows
from payfirst.domain.accounts import Account, ApiKey, Credential, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.ledger import Account as LedgerAccount
from payfirst.domain.ledger import (
    AccountKind,
    Entry,
    LedgerPayment,
    TransactionKind,
    entries_for_payment,
)
from payfirst.domain.models import (
    MintItem,
    NewPayment,
    Payment,
    SignedTx,
    Token,
)
from payfirst.domain.policies import REFUSED_OUTCOMES
from payfirst.domain.reasons import Reason
from payfirst.domain.settings import check_setting
from payfirst.domain.statuses import MintStatus, PaymentStatus, PaymentType
from payfirst.ports.store import REUSED, LedgerRecord, QueuedPayment, UnconfirmedTx

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: valid_before is a uint256 on the wire but a bigint column: later than this is "never".
_MAX_BIGINT = 2**63 - 1


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


def _token(row: asyncpg.Record) -> Token:
    return Token(
        address=row["address"],
        chain_id=int(row["chain_id"]),
        name=row["name"],
        symbol=row["symbol"],
        payment_asset=row["payment_asset"],
        asset_name=row["asset_name"],
        asset_version=row["asset_version"],
        asset_decimals=int(row["asset_decimals"]),
        price_per_mint=int(row["price_per_mint"]),
        mint_amount=int(row["mint_amount"]),
        max_mint_count=int(row["max_mint_count"]),
        reserved_count=int(row["reserved_count"]),
    )


def _mint_item(row: asyncpg.Record) -> MintItem:
    return MintItem(
        id=uuid_of(row["id"]),
        payment_id=uuid_of(row["payment_id"]),
        payer=row["payer"],
        token_address=row["token_address"],
        mint_id=row["mint_id"],
        payment_tx_hash=row["payment_tx_hash"],
        status=MintStatus(row["status"]),
        tx_hash=row["tx_hash"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        tx_nonce=None if row["nonce"] is None else int(row["nonce"]),
        relayer=row["relayer"],
        raw_tx=row["raw_tx"],
        attempts=int(row["attempts"]),
    )


def _account(row: asyncpg.Record, prefix: str = "") -> Account:
    """An account from its columns (`prefix`: how a join named them, e.g. account_)."""
    return Account(
        id=uuid_of(row[f"{prefix}id"]),
        role=Role(row["role"]),
        name=row[f"{prefix}name"],
        created_at=row[f"{prefix}created_at"],
        revoked_at=row[f"{prefix}revoked_at"],
        fee_bps=None if row["fee_bps"] is None else int(row["fee_bps"]),
        payout_address=row["payout_address"],
    )


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=uuid_of(row["id"]),
        account_id=uuid_of(row["account_id"]),
        prefix=row["prefix"],
        secret_hash=bytes(row["secret_hash"]),
        name=row["name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


async def _lock_relayer(conn: _Conn, relayer: str, chain_key: int) -> int:
    """Create the relayer's row on the chain if missing, lock it until the transaction ends
    and return its next nonce."""
    await conn.execute(_Q["create_relayer"], relayer, chain_key)
    value = await conn.fetchval(_Q["lock_relayer"], relayer, chain_key)
    return int(value)


async def _set_next_nonce(conn: _Conn, relayer: str, next_nonce: int, chain_key: int) -> None:
    await conn.execute(_Q["set_next_nonce"], relayer, next_nonce, chain_key)


#: The relayer rows' chain id of the default network until its chain id is adopted.
DEFAULT_CHAIN_KEY = 0


class _AcceptCoalescer:
    """Coalesces the queue_payment calls that arrive in the same event-loop turn into one
    call of the payfirst_queue_payments_v4 function (v3 with spending policies): one round trip and one commit for many
    payments, with no added wait (a lone payment is flushed on the very next turn). Each
    payment is still decided exactly as on its own."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: list[tuple[NewPayment, asyncio.Future[tuple[UUID | None, str]]]] = []

    def submit(self, payment: NewPayment) -> asyncio.Future[tuple[UUID | None, str]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[UUID | None, str]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((payment, future))
        return future

    def _flush(self) -> None:
        coalesced, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(coalesced))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def _run(
        self, coalesced: list[tuple[NewPayment, asyncio.Future[tuple[UUID | None, str]]]]
    ) -> None:
        payments = [p for p, _ in coalesced]
        try:
            rows = await self._pool.fetch(
                _Q["queue_payments"],
                [p.id for p in payments],
                [p.payment_type.value for p in payments],
                [p.payer for p in payments],
                [p.amount for p in payments],
                [p.payment_asset for p in payments],
                [p.pay_to for p in payments],
                [p.quantity for p in payments],
                [p.authorization.to_json() for p in payments],
                [p.authorization.nonce.lower() for p in payments],
                [p.metadata for p in payments],
                [min(p.authorization.valid_before, _MAX_BIGINT) for p in payments],
                [p.idempotency_key for p in payments],
                [p.chain_id for p in payments],
                [p.provider_id for p in payments],
                [p.fee_bps for p in payments],
                [p.endpoint_id for p in payments],
            )
        except Exception as exc:
            if len(coalesced) == 1:
                coalesced[0][1].set_exception(exc)
            else:  # one bad payment must not fail its neighbours: decide each alone
                await asyncio.gather(*(self._run([item]) for item in coalesced))
            return
        except BaseException as exc:
            for _, future in coalesced:
                if not future.done():
                    future.set_exception(exc)
            raise
        for row in rows:
            _, future = coalesced[row["idx"] - 1]
            payment_id = row["payment_id"]
            future.set_result((None if payment_id is None else uuid_of(payment_id), row["outcome"]))


_BACKGROUND: set[asyncio.Task[None]] = set()


# Notified (by a trigger, on commit) whenever payments are queued.
log = logging.getLogger("payfirst.store")

NEW_PAYMENT_CHANNEL = "payfirst_payment_queued"
PAYMENT_CHANGED_CHANNEL = "payfirst_payment_changed"
POLICY_CHANGED_CHANNEL = "payfirst_policy_changed"
# After losing its LISTEN connection (database restart) the store retries this often.
LISTENER_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class PostgresStore(
    EndpointRows, PayoutRows, ProviderViewRows, PolicyRows, WebhookRows, StatusRows
):
    """The Store port on PostgreSQL. Build it with `await PostgresStore.connect(dsn)`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str | None = None,
        dsn: str = "",
        server_settings: dict[str, str] | None = None,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._dsn = dsn
        self._server_settings = server_settings or {}
        self._listener: asyncpg.Connection | None = None
        self._watchers: list[Callable[[], None]] = []
        self._change_watchers: list[Callable[[UUID | None], None]] = []
        self._webhook_watchers: list[Callable[[], None]] = []
        self._policy_watchers: list[Callable[[str | None], None]] = []
        self._reconnecting: asyncio.Task[None] | None = None
        self._listener_lock = asyncio.Lock()
        self._closing = False
        self._queue = _AcceptCoalescer(pool)
        # The default network's chain id once adopted (adopt_default_chain); until then its
        # relayer rows are keyed by DEFAULT_CHAIN_KEY.
        self._default_chain_id: int | None = None

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        schema: str | None = None,
        migrate: bool = True,
    ) -> PostgresStore:
        """Open a pool on `dsn` and (unless `migrate=False`) bring the schema up to date.
        `schema` puts every table in that PostgreSQL schema (created if missing) by setting
        `search_path` on each connection, so tests and tenants can be kept apart."""
        server_settings = {"application_name": "payfirst"}
        if schema is not None:
            if not _SCHEMA_NAME.match(schema):
                raise ValueError(f"invalid schema name {schema!r}: use [a-z_][a-z0-9_]*")
            server_settings["search_path"] = schema
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings=server_settings,
            init=_init_connection,
        )
        store = cls(pool, schema, dsn, server_settings)
        try:
            if schema is not None:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(_Q["take_migration_lock"], MIGRATION_LOCK_KEY)
                    # An identifier cannot be a parameter: the name was checked above.
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            if migrate:
                await store.migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool, for adapters and tests that need SQL of their own."""
        return self._pool

    @property
    def schema(self) -> str | None:
        return self._schema

    async def migrate(self) -> list[int]:
        """Apply missing migrations; return the versions applied."""
        return await run_migrations(self._pool)

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._pool.close()

    async def ping(self) -> None:
        await self._pool.fetchval(_Q["ping"])

    # networks: every pipeline method is given its chain id; rows of no recorded chain (the
    # default network's, from before 0009) are adopted at start-up, never matched by a query.

    def _chain_key(self, chain_id: int | None) -> int:
        """The chain id relayer rows of `chain_id` are keyed by (None: the default network,
        for the ledger's payments of no recorded chain)."""
        if chain_id is not None:
            return chain_id
        return DEFAULT_CHAIN_KEY if self._default_chain_id is None else self._default_chain_id

    async def _adopt_late_payments(self, chain_id: int) -> None:
        """Payments the previous release's API queued after the adoption (no chain) are the
        default network's: adopted before its worker lists or claims (otherwise a read of
        the empty partial index idx_payment_queue_no_chain)."""
        if chain_id == self._default_chain_id:
            await self._pool.execute(_Q["adopt_default_payments"], chain_id)

    async def default_network_rows(self) -> bool:
        return bool(await self._pool.fetchval(_Q["default_network_rows"]))

    async def adopt_default_chain(self, chain_id: int) -> None:
        if chain_id <= 0:
            raise ValueError(f"a chain id is positive, got {chain_id}")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_Q["adopt_default_payments"], chain_id)
            await conn.execute(_Q["adopt_default_relayers"], chain_id)
            await conn.execute(_Q["drop_default_relayers"])
            await conn.execute(_Q["adopt_default_leases"], chain_id)
            await conn.execute(_Q["drop_default_leases"])
            await conn.execute(_Q["adopt_default_relayer_txs"], chain_id)
        self._default_chain_id = chain_id

    # tokens

    async def upsert_token(self, token: Token) -> None:
        # Mint items find their chain through their token: moving a token to another chain
        # would hand its sent items to that chain's confirmer.
        updated = await self._pool.fetchval(
            _Q["upsert_token"],
            token.address,
            token.chain_id,
            token.name,
            token.symbol,
            token.payment_asset,
            token.asset_name,
            token.asset_version,
            token.asset_decimals,
            token.price_per_mint,
            token.mint_amount,
            token.max_mint_count,
            token.reserved_count,
        )
        if updated is None:
            raise ValueError(
                f"token {token.address} is registered on another chain than {token.chain_id};"
                " a token's chain is never changed (deploy it at a new address)"
            )

    async def get_token(self, address: str) -> Token | None:
        row = await self._pool.fetchrow(_Q["get_token"], address)
        return None if row is None else _token(row)

    async def list_tokens(self) -> list[Token]:
        rows = await self._pool.fetch(_Q["list_tokens"])
        return [_token(r) for r in rows]

    # settings

    async def get_settings(self) -> dict[str, int]:
        rows = await self._pool.fetch(_Q["get_settings"])
        return {r["name"]: int(r["value"]) for r in rows}

    async def set_setting(self, name: str, value: int) -> None:
        value = check_setting(name, value)
        await self._pool.execute(_Q["set_setting"], name, value)

    async def unset_setting(self, name: str) -> bool:
        status = await self._pool.execute(_Q["unset_setting"], name)
        return _rowcount(status) > 0

    # relayers

    async def get_relayer_nonce(self, address: str, *, chain_id: int) -> int | None:
        value = await self._pool.fetchval(_Q["get_relayer_nonce"], address, chain_id)
        return None if value is None else int(value)

    async def set_relayer_nonce(self, address: str, next_nonce: int, *, chain_id: int) -> None:
        await self._pool.execute(_Q["set_relayer_nonce"], address, next_nonce, chain_id)

    # payments

    async def queue_payment(self, payment: NewPayment) -> QueuedPayment:
        default = self._default_chain_id
        if payment.chain_id is None and payment.payment_type is not PaymentType.MINT and default:
            payment = replace(payment, chain_id=default)  # a mint's: its token's, in SQL
        payment_id, outcome = await self._queue.submit(payment)
        if outcome == "created":
            return QueuedPayment(payment.id, created=True)
        if outcome == "held":  # above its payer's approval threshold: awaiting_approval
            return QueuedPayment(payment.id, created=True, held=True)
        refusal = REFUSED_OUTCOMES.get(outcome)
        if refusal is not None:
            raise PaymentRejected(refusal.reason, refusal.message)
        if outcome == "duplicate" and payment_id is not None:
            return QueuedPayment(payment_id, created=False)
        if outcome == "nonce_reused":
            raise PaymentRejected(Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED, REUSED)
        if outcome == "idempotency_conflict":
            raise PaymentRejected(
                Reason.IDEMPOTENCY_KEY_REUSED, "this payment id was used with another payload"
            )
        if outcome == "unknown_token":
            raise PaymentRejected(Reason.UNKNOWN_TOKEN)
        raise PaymentRejected(Reason.SOLD_OUT)

    async def find_payment(self, payer: str, auth_nonce: str) -> Payment | None:
        row = await self._pool.fetchrow(_Q["find_payment"], payer, auth_nonce.lower())
        return None if row is None else payment_of(row)

    async def get_payment(self, payment_id: UUID) -> Payment | None:
        row = await self._pool.fetchrow(_Q["get_payment"], payment_id)
        return None if row is None else payment_of(row)

    async def count_payments_by_status(self) -> dict[str, int]:
        rows = await self._pool.fetch(_Q["count_payments_by_status"])
        counts = {s.value: 0 for s in PaymentStatus}
        counts.update({r["status"]: int(r["n"]) for r in rows})
        return counts

    async def count_mints_by_status(self) -> dict[str, int]:
        rows = await self._pool.fetch(_Q["count_mints_by_status"])
        counts = {s.value: 0 for s in MintStatus}
        counts.update({r["status"]: int(r["n"]) for r in rows})
        return counts

    # -- pipeline: payments ---------------------------------------------------------

    async def claim_payments(
        self,
        relayer: str,
        limit: int,
        sign: Callable[[Payment, int], SignedTx],
        *,
        only: Sequence[UUID] | None = None,
        chain_id: int,
    ) -> list[Payment]:
        if limit <= 0:
            return []
        await self._adopt_late_payments(chain_id)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _Q["lock_pending_payments"],
                limit,
                None if only is None else list(only),
                chain_id,
            )
            if not rows:
                return []
            # Payment rows first (never waiting: SKIP LOCKED), then the relayer row: claims
            # of one relayer take turns from here on, so its nonces stay serial.
            nonce = await _lock_relayer(conn, relayer, chain_id)
            claimed: list[Payment] = []
            for row in rows:
                payment = payment_of(row)
                signed = sign(payment, nonce)
                claimed.append(
                    replace(
                        payment,
                        status=PaymentStatus.PROCESSING,
                        tx_hash=signed.hash,
                        tx_nonce=nonce,
                        relayer=relayer,
                        raw_tx=signed.raw,
                    )
                )
                nonce += 1
            await conn.executemany(
                _Q["mark_payment_processing"],
                [(p.id, p.tx_hash, p.tx_nonce, p.relayer, p.raw_tx) for p in claimed],
            )
            await _set_next_nonce(conn, relayer, nonce, chain_id)
        return claimed

    async def claim_payments_one_tx(
        self,
        relayer: str,
        limit: int,
        sign: Callable[[list[Payment], int], SignedTx],
        *,
        only: Sequence[UUID] | None = None,
        chain_id: int,
    ) -> list[Payment]:
        if limit <= 0:
            return []
        ids = None if only is None else list(only)
        await self._adopt_late_payments(chain_id)
        async with self._pool.acquire() as conn, conn.transaction():
            # The oldest pending payment no other claim holds picks the batch's asset (one
            # settle tx moves one asset); it is locked here and not skipped below.
            asset = await conn.fetchval(_Q["lock_batch_asset"], ids, chain_id)
            if asset is None:
                return []
            rows = await conn.fetch(
                _Q["lock_pending_payments_of_asset"], limit, asset, ids, chain_id
            )
            if not rows:  # pragma: no cover - the row locked above is always among them
                return []
            payments = [payment_of(r) for r in rows]
            nonce = await _lock_relayer(conn, relayer, chain_id)
            signed = sign(payments, nonce)
            await conn.execute(
                _Q["mark_payments_processing"],
                [p.id for p in payments],
                signed.hash,
                nonce,
                relayer,
                signed.raw,
            )
            await _set_next_nonce(conn, relayer, nonce + 1, chain_id)
        return [
            replace(
                p,
                status=PaymentStatus.PROCESSING,
                tx_hash=signed.hash,
                tx_nonce=nonce,
                relayer=relayer,
                raw_tx=signed.raw,
            )
            for p in payments
        ]

    async def list_payments(
        self,
        status: PaymentStatus,
        limit: int,
        *,
        expiring_before: int | None = None,
        chain_id: int,
    ) -> list[Payment]:
        await self._adopt_late_payments(chain_id)
        before = None if expiring_before is None else min(expiring_before, _MAX_BIGINT)
        if status is PaymentStatus.SENT:  # longest sent first
            rows = await self._pool.fetch(_Q["list_sent_payments"], limit, before, chain_id)
        else:
            rows = await self._pool.fetch(
                _Q["list_payments"], status.value, limit, before, chain_id
            )
        return [payment_of(r) for r in rows]

    async def amounts_in_flight(
        self, payers: Sequence[str], *, chain_id: int
    ) -> dict[tuple[str, str], int]:
        rows = await self._pool.fetch(_Q["amounts_in_flight"], list(payers), chain_id)
        return {(r["payment_asset"], r["payer"]): int(r["amount"]) for r in rows}

    async def sent_payments(self, relayer: str, tx_limit: int, *, chain_id: int) -> list[Payment]:
        rows = await self._pool.fetch(_Q["sent_payments"], relayer, tx_limit, chain_id)
        return [payment_of(r) for r in rows]

    async def sent_mint_items(
        self, relayer: str, tx_limit: int, *, chain_id: int
    ) -> list[MintItem]:
        rows = await self._pool.fetch(_Q["sent_mint_items"], relayer, tx_limit, chain_id)
        return [_mint_item(r) for r in rows]

    async def mark_sent(self, tx_hashes: Sequence[str]) -> None:
        hashes = list(tx_hashes)
        if not hashes:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_Q["mark_payments_sent"], hashes)
            await conn.execute(_Q["mark_mint_items_sent"], hashes)
            await conn.execute(_Q["mark_payouts_sent"], hashes)

    async def complete_payment(
        self,
        payment_id: UUID,
        tx_hash: str,
        mint_ids: Sequence[str],
        before_commit: Callable[[], None] | None = None,
    ) -> bool:
        done = await self.complete_payments([(payment_id, tx_hash, mint_ids)], before_commit)
        return bool(done)

    async def complete_payments(
        self,
        completions: Sequence[tuple[UUID, str, Sequence[str]]],
        before_commit: Callable[[], None] | None = None,
    ) -> list[UUID]:
        try:
            return await self._complete_together(completions, before_commit)
        except _REFUSED_COMPLETION as exc:
            if len(completions) == 1:
                _log_refused_completion(completions[0][0], exc)
                return []
            log.warning("%d completions refused together (%s): one by one", len(completions), exc)
        # One payment refused (its ledger entries, a duplicate mint id) must not hold back
        # the others, tick after tick: each alone, the refused one stays `sent`.
        completed: list[UUID] = []
        for completion in completions:
            try:
                completed += await self._complete_together([completion], before_commit)
            except _REFUSED_COMPLETION as exc:
                _log_refused_completion(completion[0], exc)
        return completed

    async def _complete_together(
        self,
        completions: Sequence[tuple[UUID, str, Sequence[str]]],
        before_commit: Callable[[], None] | None,
    ) -> list[UUID]:
        """Complete the payments and write their ledger entries in one transaction."""
        completed: list[UUID] = []
        ledgered: list[tuple[UUID, LedgerPayment]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for payment_id, tx_hash, mint_ids in completions:
                row = await self._complete_one(conn, payment_id, tx_hash, mint_ids)
                if row is not None:
                    completed.append(payment_id)
                    ledgered.append((payment_id, self._ledger_payment(row)))
            # The ledger in the same transaction: a completion is never without its entries.
            await _record_payments(conn, ledgered)
            if before_commit is not None:
                before_commit()
        return completed

    @staticmethod
    async def _complete_one(
        conn: Any, payment_id: UUID, tx_hash: str, mint_ids: Sequence[str]
    ) -> asyncpg.Record | None:
        """Complete one payment; its locked row, or None when it was not sent/processing."""
        row: asyncpg.Record | None = await conn.fetchrow(_Q["lock_payment_to_complete"], payment_id)
        if row is None or row["status"] not in (
            PaymentStatus.SENT.value,
            PaymentStatus.PROCESSING.value,
        ):
            return None
        item_ids = [uuid4() for _ in mint_ids]
        await conn.execute(
            _Q["complete_payment"],
            payment_id,
            tx_hash,
            {"queueIds": [str(i) for i in item_ids], "quantity": len(item_ids)},
        )
        if item_ids:
            # A duplicate mint id raises (the unique key) and rolls everything back.
            # created_at steps by 1 µs so the items stay in mint-index order.
            await conn.executemany(
                _Q["insert_mint_item"],
                [
                    (item_id, payment_id, row["payer"], row["token_address"], mint_id, tx_hash, i)
                    for i, (item_id, mint_id) in enumerate(zip(item_ids, mint_ids, strict=True))
                ],
            )
        return row

    def _ledger_payment(self, row: asyncpg.Record) -> LedgerPayment:
        """The ledger's view of a payment row (of no recorded chain: the default network)."""
        chain_id = row["chain_id"]
        return LedgerPayment(
            payer=checksum(row["payer"]),
            pay_to=checksum(row["token_address"]),
            asset=checksum(row["payment_asset"]),
            chain_id=self._chain_key(None) if chain_id is None else int(chain_id),
            amount=int(row["amount"]),
            provider_id=None if row["provider_id"] is None else uuid_of(row["provider_id"]),
            fee_bps=None if row["fee_bps"] is None else int(row["fee_bps"]),
        )

    async def fail_payment(
        self,
        payment_id: UUID,
        status: PaymentStatus,
        error: str,
        *,
        only_from: PaymentStatus | None = None,
    ) -> bool:
        if status not in (PaymentStatus.FAILED, PaymentStatus.CONFIRMATION_FAILED):
            raise ValueError(f"fail_payment needs failed or confirmation_failed, not {status}")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _Q["fail_payment"],
                payment_id,
                status.value,
                error,
                only_from.value if only_from else None,
            )
            if row is None:
                return False
            if row["payment_type"] != PaymentType.MINT.value:
                return True  # only mints reserve supply
            await conn.execute(_Q["release_reserved_supply"], row["token_address"], row["quantity"])
        return True

    async def requeue_payment(self, payment_id: UUID, error: str) -> bool:
        result = await self._pool.execute(_Q["requeue_payment"], payment_id, error)
        return _rowcount(result) > 0

    # -- pipeline: mint items -------------------------------------------------------

    async def get_mint_items(self, payment_id: UUID) -> list[MintItem]:
        rows = await self._pool.fetch(_Q["get_mint_items"], payment_id)
        return [_mint_item(r) for r in rows]

    async def list_mint_items(
        self, status: MintStatus, limit: int, *, chain_id: int
    ) -> list[MintItem]:
        rows = await self._pool.fetch(_Q["list_mint_items"], status.value, limit, chain_id)
        return [_mint_item(r) for r in rows]

    async def pending_mint_items(self, limit: int, *, chain_id: int) -> list[MintItem]:
        rows = await self._pool.fetch(_Q["pending_mint_items"], limit, chain_id)
        return [_mint_item(r) for r in rows]

    async def claim_mint_items(
        self,
        relayer: str,
        item_ids: Sequence[UUID],
        sign: Callable[[list[MintItem], int], SignedTx],
        *,
        chain_id: int,
    ) -> list[MintItem]:
        ids = list(item_ids)
        if not ids:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_Q["lock_pending_mint_items"], ids)
            if not rows:
                return []
            items = [_mint_item(r) for r in rows]
            _one_token(items)
            nonce = await _lock_relayer(conn, relayer, chain_id)
            signed = sign(items, nonce)
            updated = await conn.fetch(
                _Q["mark_mint_items_processing"],
                [m.id for m in items],
                signed.hash,
                nonce,
                relayer,
                signed.raw,
            )
            await _set_next_nonce(conn, relayer, nonce + 1, chain_id)
        by_id = {uuid_of(r["id"]): _mint_item(r) for r in updated}
        return [by_id[m.id] for m in items]

    async def complete_mint_items(self, item_ids: Sequence[UUID], tx_hash: str | None) -> None:
        ids = list(item_ids)
        if not ids:
            return
        await self._pool.execute(_Q["complete_mint_items"], ids, tx_hash)

    async def retry_mint_items(
        self, item_ids: Sequence[UUID], error: str, max_attempts: int
    ) -> None:
        ids = list(item_ids)
        if not ids:
            return
        # Failed items keep their last tx fields (what was tried); retried ones start over.
        await self._pool.execute(_Q["retry_mint_items"], ids, error, max_attempts)

    # -- pipeline: unconfirmed relayer txs (the broadcaster) ------------------------

    async def unconfirmed_txs(
        self, relayer: str, from_nonce: int, *, chain_id: int
    ) -> list[UnconfirmedTx]:
        rows = await self._pool.fetch(_Q["unconfirmed_txs"], relayer, from_nonce, chain_id)
        return [
            UnconfirmedTx(
                nonce=int(r["nonce"]),
                tx_hash=r["tx_hash"],
                raw_tx=r["raw_tx"],
                sent=not r["processing"],
            )
            for r in rows
        ]

    async def sync_relayer_nonce(
        self, relayer: str, chain_next_nonce: int, *, chain_id: int
    ) -> int:
        value = await self._pool.fetchval(
            _Q["sync_relayer_nonce"], relayer, chain_next_nonce, chain_id
        )
        return int(value)

    async def replace_tx(
        self,
        relayer: str,
        nonce: int,
        old_hash: str,
        new: SignedTx,
        *,
        chain_id: int,
    ) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            old_raw = await conn.fetchval(_Q["raw_tx_to_replace"], relayer, nonce, old_hash)
            if old_raw is None:
                return False
            args = (relayer, nonce, old_hash, new.hash, new.raw)
            await conn.execute(_Q["replace_payment_tx"], *args)
            await conn.execute(_Q["replace_mint_tx"], *args)
            await conn.execute(_Q["replace_payout_tx"], *args)
            await conn.executemany(
                _Q["record_relayer_tx"],
                [
                    (old_hash, relayer, nonce, old_raw, chain_id),
                    (new.hash, relayer, nonce, new.raw, chain_id),
                ],
            )
        return True

    async def tx_hashes(
        self, relayer: str, nonces: Sequence[int], *, chain_id: int
    ) -> dict[int, list[str]]:
        wanted = sorted(set(nonces))
        if not wanted:
            return {}
        rows = await self._pool.fetch(_Q["tx_hashes"], relayer, wanted, chain_id)
        found: dict[int, list[str]] = {}
        for row in rows:
            found.setdefault(int(row["nonce"]), []).append(row["tx_hash"])
        return found

    # -- ledger (payfirst.domain.ledger) ----------------------------------------------

    async def reverse_payment(self, payment_id: UUID, reason: str) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            reversal = await conn.fetchval(_Q["ledger_add_reversal"], payment_id, uuid4(), reason)
            if reversal is None:
                return False
            await conn.execute(_Q["ledger_reverse_entries"], reversal)
        return True

    async def ledger_unbalanced(self, limit: int) -> list[tuple[UUID, int]]:
        rows = await self._pool.fetch(_Q["ledger_unbalanced"], limit)
        return [(uuid_of(r["transaction_id"]), int(r["total"])) for r in rows]

    async def ledger_records(self, after: UUID | None, limit: int) -> list[LedgerRecord]:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = await conn.fetch(_Q["ledger_records"], after, limit, self._chain_key(None))
            entry_rows = await conn.fetch(_Q["ledger_entries_of_payments"], [r["id"] for r in rows])
        entries: dict[tuple[UUID, str], list[Entry]] = {}
        for e in entry_rows:
            account = LedgerAccount(
                AccountKind(e["kind"]), e["owner"], e["asset"], int(e["chain_id"])
            )
            key = (uuid_of(e["payment_id"]), e["transaction_kind"])
            entries.setdefault(key, []).append(Entry(account, int(e["amount"])))
        records: list[LedgerRecord] = []
        for r in rows:
            payment_id = uuid_of(r["id"])
            reversal = entries.get((payment_id, TransactionKind.REVERSAL.value))
            records.append(
                LedgerRecord(
                    payment_id=payment_id,
                    status=PaymentStatus(r["status"]),
                    payment=self._ledger_payment(r),
                    tx_hash=r["tx_hash"],
                    auth_nonce=r["auth_nonce"],
                    recorded=tuple(entries.get((payment_id, TransactionKind.PAYMENT.value), ())),
                    has_payment_transaction=bool(r["has_payment_transaction"]),
                    reversal=None if reversal is None else tuple(reversal),
                )
            )
        return records

    async def ledger_holdings(self, holder: str, chain_id: int) -> dict[str, int]:
        rows = await self._pool.fetch(_Q["ledger_holdings"], checksum(holder), chain_id)
        return {r["asset"]: int(r["amount"]) for r in rows}

    async def amounts_in_flight_to(self, pay_to: str, chain_id: int) -> dict[str, int]:
        default = chain_id == self._default_chain_id
        rows = await self._pool.fetch(_Q["amounts_in_flight_to"], pay_to, chain_id, default)
        return {r["payment_asset"]: int(r["amount"]) for r in rows}

    # -- operators ------------------------------------------------------------------

    async def payment_stats(self) -> dict[str, Any]:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            payment_rows = await conn.fetch(_Q["count_payments_by_status"])
            mint_rows = await conn.fetch(_Q["count_mints_by_status"])
            row = await conn.fetchrow(_Q["recent_activity"])
        assert row is not None
        payments = {s.value: 0 for s in PaymentStatus}
        payments.update({r["status"]: int(r["n"]) for r in payment_rows})
        mints = {s.value: 0 for s in MintStatus}
        mints.update({r["status"]: int(r["n"]) for r in mint_rows})
        age = row["oldest_sent_age_s"]
        return {
            "payments": payments,
            "mints": mints,
            "oldest_sent_age_s": None if age is None else max(0.0, float(age)),
            "completed_last_minute": int(row["completed"]),
            "mints_completed_last_minute": int(row["mints_completed"]),
        }

    # -- accounts and API keys ---------------------------------------------------------

    async def create_account(self, account: Account, first_key: ApiKey | None = None) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _Q["create_account"],
                account.id,
                account.role.value,
                account.name,
                account.fee_bps,
                account.payout_address,
                account.created_at,
            )
            if first_key is not None and not await _insert_api_key(conn, first_key):
                raise ValueError(f"the first key is not for account {account.id}")

    async def get_account(self, account_id: UUID) -> Account | None:
        row = await self._pool.fetchrow(_Q["get_account"], account_id)
        return None if row is None else _account(row)

    async def list_accounts(self, limit: int, *, after: UUID | None = None) -> list[Account]:
        rows = await self._pool.fetch(_Q["list_accounts"], limit, after)
        return [_account(r) for r in rows]

    async def revoke_account(self, account_id: UUID, at: datetime) -> Account | None:
        row = await self._pool.fetchrow(_Q["revoke_account"], account_id, at)
        return None if row is None else _account(row)

    async def active_operator_exists(self) -> bool:
        return bool(await self._pool.fetchval(_Q["active_operator_exists"]))

    async def create_api_key(self, key: ApiKey) -> bool:
        async with self._pool.acquire() as conn:
            return await _insert_api_key(conn, key)

    async def find_api_key_by_prefix(self, prefix: str) -> Credential | None:
        row = await self._pool.fetchrow(_Q["find_api_key_by_prefix"], prefix)
        if row is None:
            return None
        return Credential(_api_key(row), _account(row, prefix="account_"))

    async def list_api_keys(
        self, account_id: UUID, limit: int, *, after: UUID | None = None
    ) -> list[ApiKey]:
        rows = await self._pool.fetch(_Q["list_api_keys"], account_id, limit, after)
        return [_api_key(r) for r in rows]

    async def revoke_api_key(
        self, key_id: UUID, at: datetime, *, account_id: UUID | None = None
    ) -> ApiKey | None:
        row = await self._pool.fetchrow(_Q["revoke_api_key"], key_id, account_id, at)
        return None if row is None else _api_key(row)

    async def touch_api_key(self, key_id: UUID, at: datetime) -> None:
        await self._pool.execute(_Q["touch_api_key"], key_id, at)

    # -- relayer leases and wake-ups --------------------------------------------------

    async def acquire_relayer_lease(
        self, relayer: str, holder: str, ttl_s: float, *, chain_id: int
    ) -> bool:
        row = await self._pool.fetchval(
            _Q["acquire_relayer_lease"],
            relayer,
            holder,
            float(ttl_s),
            chain_id,
        )
        return bool(row == holder)

    async def release_relayer_lease(self, relayer: str, holder: str, *, chain_id: int) -> None:
        await self._pool.execute(_Q["release_relayer_lease"], relayer, holder, chain_id)

    async def watch_new_payments(self, callback: Callable[[], None]) -> None:
        await self._listen()
        self._watchers.append(callback)

    async def watch_payment_changes(self, callback: Callable[[UUID | None], None]) -> None:
        await self._listen()
        self._change_watchers.append(callback)

    async def watch_policy_changes(self, callback: Callable[[str | None], None]) -> None:
        await self._listen()
        self._policy_watchers.append(callback)

    async def _listen(self) -> None:
        """One LISTEN connection per store for every channel. If it is lost (a database
        restart), it is re-opened in the background and every watcher is woken with "anything
        may have changed", since notices sent meanwhile are gone."""
        async with self._listener_lock:  # one connection, however many ask at once
            if self._listener is not None:
                return
            listener = await asyncpg.connect(self._dsn, server_settings=self._server_settings)
            try:
                await listener.add_listener(NEW_PAYMENT_CHANNEL, self._on_new_payment)
                await listener.add_listener(PAYMENT_CHANGED_CHANNEL, self._on_payment_changed)
                await listener.add_listener(WEBHOOK_CHANNEL, self._on_webhook_message)
                await listener.add_listener(POLICY_CHANGED_CHANNEL, self._on_policy_changed)
            except BaseException:
                await listener.close()
                raise
            listener.add_termination_listener(self._on_listener_lost)
            self._listener = listener

    def _on_listener_lost(self, conn: object) -> None:
        if self._closing or conn is not self._listener:
            return
        self._listener = None
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        attempt = 0
        while not self._closing and self._listener is None:
            await asyncio.sleep(LISTENER_RETRY_S[min(attempt, len(LISTENER_RETRY_S) - 1)])
            attempt += 1
            try:
                await self._listen()
            except Exception as exc:  # any failure: try again, never give up listening
                log.warning("notice connection not back yet: %s", exc)
                continue
        self._on_new_payment(None, 0, NEW_PAYMENT_CHANNEL, "")
        for watcher in self._change_watchers:
            watcher(None)
        self._on_webhook_message(None, 0, WEBHOOK_CHANNEL, "")
        for policy_watcher in self._policy_watchers:
            policy_watcher(None)

    def _on_policy_changed(self, conn: object, pid: int, channel: str, payload: object) -> None:
        for watcher in self._policy_watchers:
            watcher(str(payload) if payload else None)

    def _on_new_payment(self, conn: object, pid: int, channel: str, payload: object) -> None:
        for watcher in self._watchers:
            watcher()

    def _on_payment_changed(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            payment_id = UUID(str(payload))
        except ValueError:
            return
        for watcher in self._change_watchers:
            watcher(payment_id)


async def _insert_api_key(conn: _Conn, key: ApiKey) -> bool:
    """Insert `key` if its account exists and is not revoked."""
    inserted = await conn.fetchval(
        _Q["create_api_key"],
        key.id,
        key.account_id,
        key.prefix,
        key.secret_hash,
        key.name,
        key.created_at,
        key.expires_at,
    )
    return inserted is not None


async def _record_payments(conn: _Conn, payments: Sequence[tuple[UUID, LedgerPayment]]) -> None:
    """The `payment` ledger transactions of completed payments, in two statements however
    many there are: their accounts created if missing, then transactions and entries (none
    for a payment recorded before). The entries' trigger refuses an unbalanced one."""
    if not payments:
        return
    transaction_ids = [uuid4() for _ in payments]
    entries = [
        (transaction_id, position, entry)
        for transaction_id, (_, payment) in zip(transaction_ids, payments, strict=True)
        for position, entry in enumerate(entries_for_payment(payment))
    ]
    await upsert_ledger_accounts(conn, (e.account for _, _, e in entries))
    await conn.execute(
        _Q["ledger_record_payments"],
        transaction_ids,
        [payment_id for payment_id, _ in payments],
        [transaction_id for transaction_id, _, _ in entries],
        [position for _, position, _ in entries],
        [e.account.kind.value for _, _, e in entries],
        [e.account.owner for _, _, e in entries],
        [e.account.asset for _, _, e in entries],
        [e.account.chain_id for _, _, e in entries],
        [e.amount for _, _, e in entries],
    )


#: What refuses one payment's completion (and so its whole batch): the ledger's triggers
#: and constraints, a duplicate mint id, the ledger's rules (payfirst.domain.ledger).
_REFUSED_COMPLETION = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError, ValueError)


def _log_refused_completion(payment_id: UUID, exc: BaseException) -> None:
    log.error(
        "payment %s settled but its completion was refused, left sent for the operator: %s",
        payment_id,
        exc,
    )


def _rowcount(status: str) -> int:
    """The row count of an asyncpg command status ("UPDATE 3" -> 3)."""
    parts = status.split()
    return int(parts[-1]) if parts and parts[-1].isdigit() else 0


def _one_token(items: list[MintItem]) -> None:
    """One batchMint goes to one token contract: a mixed claim would be a caller's bug."""
    tokens = {m.token_address for m in items}
    if len(tokens) > 1:
        raise ValueError(f"mint items of several tokens cannot share one tx: {sorted(tokens)}")
