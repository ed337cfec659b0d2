"""The SQLite store: the Store port on one aiosqlite connection (the embedded default).

Storage forms (see migrations/sqlite/0001_init.sql): amounts are TEXT decimal digits, uuids
TEXT, json TEXT, timestamps TEXT 'YYYY-MM-DDTHH:MM:SS.fffZ' in UTC (sortable as text; use
`sqlite_timestamp()` to write one and `parse_sqlite_timestamp()` to read one).

One connection serves the process; an asyncio lock keeps one operation (one transaction) on
it at a time. Writes that must be atomic run in `BEGIN IMMEDIATE` transactions, which also
serialize against other processes using the same file (WAL mode, busy timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiosqlite

from payfirst.adapters.migrate import migrate as run_migrations
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import (
    Authorization,
    MintItem,
    NewPayment,
    Payment,
    SignedTx,
    Token,
)
from payfirst.domain.statuses import MintStatus, PaymentStatus, PaymentType
from payfirst.ports.store import DEFAULT_SETTINGS, REUSED, OutboxTx, QueuedPayment

#: SQL expression for "now" in the stored timestamp form.
SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

_TOKEN_COLUMNS = (
    "address, chain_id, name, symbol, payment_asset, asset_name, asset_version, "
    "asset_decimals, price_per_mint, mint_amount, max_mint_count, reserved_count"
)

_PAYMENT_COLUMNS = (
    'id, payment_type, payer, amount, payment_asset, token_address, quantity, "authorization", '
    "metadata, status, tx_hash, nonce, relayer, raw_tx, error, created_at, processed_at, result"
)

_MINT_COLUMNS = (
    "id, payment_id, payer, token_address, mint_id, payment_tx_hash, status, tx_hash, "
    "error_message, created_at, updated_at, nonce, relayer, raw_tx, attempts"
)

#: valid_before is a uint256 on the wire but an INTEGER column: later than this is "never".
_MAX_INTEGER = 2**63 - 1

_NOT_TERMINAL = "('pending', 'processing', 'sent')"


def sqlite_timestamp(moment: datetime) -> str:
    """`moment` in the stored form: UTC, millisecond precision, 'Z' suffix."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: payfirst stores aware UTC timestamps only")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_sqlite_timestamp(text: str) -> datetime:
    """A stored timestamp as an aware UTC datetime (also accepts SQLite's own
    'YYYY-MM-DD HH:MM:SS' form, taken as UTC)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _optional_timestamp(text: str | None) -> datetime | None:
    return None if text is None else parse_sqlite_timestamp(text)


def _token(row: aiosqlite.Row) -> Token:
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


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _payment(row: aiosqlite.Row) -> Payment:
    return Payment(
        id=UUID(row["id"]),
        payment_type=PaymentType(row["payment_type"]),
        payer=row["payer"],
        amount=int(row["amount"]),
        payment_asset=row["payment_asset"],
        token_address=row["token_address"],
        quantity=int(row["quantity"]),
        authorization=Authorization.from_json(json.loads(row["authorization"])),
        metadata=dict(json.loads(row["metadata"] or "{}")),
        status=PaymentStatus(row["status"]),
        tx_hash=row["tx_hash"],
        nonce=None if row["nonce"] is None else int(row["nonce"]),
        relayer=row["relayer"],
        raw_tx=row["raw_tx"],
        error=row["error"],
        created_at=parse_sqlite_timestamp(row["created_at"]),
        processed_at=_optional_timestamp(row["processed_at"]),
        result=_json_or_none(row["result"]),
    )


def _mint_item(row: aiosqlite.Row) -> MintItem:
    return MintItem(
        id=UUID(row["id"]),
        payment_id=UUID(row["payment_id"]),
        payer=row["payer"],
        token_address=row["token_address"],
        mint_id=row["mint_id"],
        payment_tx_hash=row["payment_tx_hash"],
        status=MintStatus(row["status"]),
        tx_hash=row["tx_hash"],
        error_message=row["error_message"],
        created_at=parse_sqlite_timestamp(row["created_at"]),
        updated_at=parse_sqlite_timestamp(row["updated_at"]),
        nonce=None if row["nonce"] is None else int(row["nonce"]),
        relayer=row["relayer"],
        raw_tx=row["raw_tx"],
        attempts=int(row["attempts"]),
    )


def _now() -> str:
    return sqlite_timestamp(datetime.now(UTC))


def _json_list(values: Sequence[Any]) -> str:
    """A list parameter, read in SQL as `IN (SELECT value FROM json_each(?))`."""
    return json.dumps([str(v) for v in values])


async def _lock_relayer(conn: aiosqlite.Connection, relayer: str) -> int:
    """The relayer's next nonce, its row created if missing (the caller's BEGIN IMMEDIATE
    transaction already holds the database's write lock)."""
    await conn.execute(
        "INSERT INTO relayers (address, next_nonce) VALUES (?, 0) ON CONFLICT DO NOTHING",
        (relayer,),
    )
    async with conn.execute(
        "SELECT next_nonce FROM relayers WHERE address = ?", (relayer,)
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row["next_nonce"])


async def _set_next_nonce(conn: aiosqlite.Connection, relayer: str, next_nonce: int) -> None:
    await conn.execute(
        f"UPDATE relayers SET next_nonce = ?, updated_at = {SQL_NOW} WHERE address = ?",
        (next_nonce, relayer),
    )


class SqliteStore:
    """The Store port on SQLite. Build it with `await SqliteStore.connect(path)`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._watchers: list[Callable[[], None]] = []
        self._change_watchers: list[Callable[[UUID | None], None]] = []

    @classmethod
    async def connect(
        cls, path: str | Path, *, migrate: bool = True, busy_timeout_ms: int = 10_000
    ) -> SqliteStore:
        """Open (creating if needed) the database file at `path` (":memory:" for a private
        in-memory database) in WAL mode and, unless `migrate=False`, bring the schema up to
        date."""
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if str(path) != ":memory:":
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            store = cls(conn)
            if migrate:
                await store.migrate()
        except BaseException:
            await conn.close()
            raise
        return store

    @property
    def connection(self) -> aiosqlite.Connection:
        """The aiosqlite connection, for adapters and tests that need SQL of their own
        (hold `lock` around anything that must not interleave with the store's work)."""
        return self._conn

    @property
    def lock(self) -> asyncio.Lock:
        return self._lock

    async def migrate(self) -> list[int]:
        """Apply missing migrations; return the versions applied."""
        async with self._lock:
            return await run_migrations(self._conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the store's lock and a `BEGIN IMMEDIATE` transaction: commit on success,
        roll back on any exception."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        async with self._lock, self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> aiosqlite.Row | None:
        async with self._lock, self._conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        async with self._lock:
            await self._conn.execute(sql, params)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    async def ping(self) -> None:
        await self._fetchone("SELECT 1")

    # tokens

    async def upsert_token(self, token: Token) -> None:
        await self._execute(
            f"""
            INSERT INTO tokens ({_TOKEN_COLUMNS})
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (address) DO UPDATE SET
                chain_id = excluded.chain_id,
                name = excluded.name,
                symbol = excluded.symbol,
                payment_asset = excluded.payment_asset,
                asset_name = excluded.asset_name,
                asset_version = excluded.asset_version,
                asset_decimals = excluded.asset_decimals,
                price_per_mint = excluded.price_per_mint,
                mint_amount = excluded.mint_amount,
                max_mint_count = excluded.max_mint_count,
                updated_at = {SQL_NOW}
            """,
            (
                token.address,
                token.chain_id,
                token.name,
                token.symbol,
                token.payment_asset,
                token.asset_name,
                token.asset_version,
                token.asset_decimals,
                str(token.price_per_mint),
                str(token.mint_amount),
                token.max_mint_count,
                token.reserved_count,
            ),
        )

    async def get_token(self, address: str) -> Token | None:
        row = await self._fetchone(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE address = ?", (address,)
        )
        return None if row is None else _token(row)

    async def list_tokens(self) -> list[Token]:
        rows = await self._fetchall(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at, address"
        )
        return [_token(r) for r in rows]

    # settings

    async def get_settings(self) -> dict[str, int]:
        rows = await self._fetchall("SELECT name, value FROM system_settings")
        settings = dict(DEFAULT_SETTINGS)
        settings.update({r["name"]: int(r["value"]) for r in rows})
        return settings

    async def set_setting(self, name: str, value: int) -> None:
        await self._execute(
            f"""
            INSERT INTO system_settings (name, value) VALUES (?, ?)
            ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = {SQL_NOW}
            """,
            (name, value),
        )

    # relayers

    async def get_relayer_nonce(self, address: str) -> int | None:
        row = await self._fetchone("SELECT next_nonce FROM relayers WHERE address = ?", (address,))
        return None if row is None else int(row["next_nonce"])

    async def set_relayer_nonce(self, address: str, next_nonce: int) -> None:
        await self._execute(
            f"""
            INSERT INTO relayers (address, next_nonce) VALUES (?, ?)
            ON CONFLICT (address) DO UPDATE
                SET next_nonce = excluded.next_nonce, updated_at = {SQL_NOW}
            """,
            (address, next_nonce),
        )

    # payments

    async def queue_payment(self, payment: NewPayment) -> QueuedPayment:
        authorization = payment.authorization.to_json()
        auth_nonce = payment.authorization.nonce.lower()
        now = sqlite_timestamp(datetime.now(UTC))
        async with self.transaction() as conn:
            async with conn.execute(
                """
                INSERT INTO payment_queue (
                    id, payment_type, payer, amount, payment_asset, token_address, quantity,
                    "authorization", auth_nonce, metadata, valid_before, status, created_at,
                    updated_at, idempotency_key
                ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)
                ON CONFLICT DO NOTHING
                RETURNING id
                """,
                (
                    str(payment.id),
                    payment.payment_type.value,
                    payment.payer,
                    str(payment.amount),
                    payment.payment_asset,
                    payment.token_address,
                    payment.quantity,
                    json.dumps(authorization),
                    auth_nonce,
                    json.dumps(payment.metadata),
                    min(payment.authorization.valid_before, _MAX_INTEGER),
                    now,
                    now,
                    payment.idempotency_key,
                ),
            ) as cursor:
                inserted = await cursor.fetchone()
            if inserted is None:
                async with conn.execute(
                    'SELECT id, "authorization", payment_type, token_address, payment_asset, '
                    "quantity FROM payment_queue WHERE payer = ? AND auth_nonce = ?",
                    (payment.payer, auth_nonce),
                ) as cursor:
                    existing = await cursor.fetchone()
                if existing is None:  # the payer's idempotency key is another payment's
                    raise PaymentRejected(
                        409,
                        "idempotency_key_reused",
                        "this payment id was used with another payload",
                    )
                if not _same_purchase(existing, payment, authorization):
                    raise PaymentRejected(409, "invalid_exact_evm_nonce_already_used", REUSED)
                return QueuedPayment(UUID(existing["id"]), created=False)
            if payment.payment_type is PaymentType.MINT:
                await self._reserve(conn, payment)
        for watcher in self._watchers:
            watcher()
        return QueuedPayment(payment.id, created=True)

    @staticmethod
    async def _reserve(conn: aiosqlite.Connection, payment: NewPayment) -> None:
        """Reserve a mint payment's quantity under the cap; raising rolls the insert back."""
        async with conn.execute(
            f"""
            UPDATE tokens
               SET reserved_count = reserved_count + ?, updated_at = {SQL_NOW}
             WHERE address = ? AND reserved_count + ? <= max_mint_count
            RETURNING reserved_count
            """,
            (payment.quantity, payment.token_address, payment.quantity),
        ) as cursor:
            reserved = await cursor.fetchone()
        if reserved is None:
            async with conn.execute(
                "SELECT 1 FROM tokens WHERE address = ?", (payment.token_address,)
            ) as cursor:
                known = await cursor.fetchone()
            if known is None:
                raise PaymentRejected(404, "unknown_token")
            raise PaymentRejected(409, "sold_out")

    async def find_payment(self, payer: str, auth_nonce: str) -> Payment | None:
        row = await self._fetchone(
            f"SELECT {_PAYMENT_COLUMNS} FROM payment_queue WHERE payer = ? AND auth_nonce = ?",
            (payer, auth_nonce.lower()),
        )
        return None if row is None else _payment(row)

    async def get_payment(self, payment_id: UUID) -> Payment | None:
        row = await self._fetchone(
            f"SELECT {_PAYMENT_COLUMNS} FROM payment_queue WHERE id = ?", (str(payment_id),)
        )
        return None if row is None else _payment(row)

    async def count_payments_by_status(self) -> dict[str, int]:
        rows = await self._fetchall(
            "SELECT status, count(*) AS n FROM payment_queue GROUP BY status"
        )
        counts = {s.value: 0 for s in PaymentStatus}
        counts.update({r["status"]: int(r["n"]) for r in rows})
        return counts

    async def count_mints_by_status(self) -> dict[str, int]:
        rows = await self._fetchall("SELECT status, count(*) AS n FROM mint_queue GROUP BY status")
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
    ) -> list[Payment]:
        if limit <= 0:
            return []
        ids = None if only is None else _json_list(only)
        async with self.transaction() as conn:
            async with conn.execute(
                f"""
                SELECT {_PAYMENT_COLUMNS} FROM payment_queue
                 WHERE status = 'pending'
                   AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))
                 ORDER BY created_at, rowid
                 LIMIT ?
                """,
                (ids, ids, limit),
            ) as cursor:
                rows = list(await cursor.fetchall())
            if not rows:
                return []
            nonce = await _lock_relayer(conn, relayer)
            claimed: list[Payment] = []
            for row in rows:
                payment = _payment(row)
                signed = sign(payment, nonce)
                claimed.append(
                    replace(
                        payment,
                        status=PaymentStatus.PROCESSING,
                        tx_hash=signed.hash,
                        nonce=nonce,
                        relayer=relayer,
                        raw_tx=signed.raw,
                    )
                )
                nonce += 1
            now = _now()
            await conn.executemany(
                """
                UPDATE payment_queue
                   SET status = 'processing', tx_hash = ?, nonce = ?, relayer = ?, raw_tx = ?,
                       updated_at = ?
                 WHERE id = ?
                """,
                [(p.tx_hash, p.nonce, p.relayer, p.raw_tx, now, str(p.id)) for p in claimed],
            )
            await _set_next_nonce(conn, relayer, nonce)
        return claimed

    async def claim_payment_batch(
        self,
        relayer: str,
        limit: int,
        sign: Callable[[list[Payment], int], SignedTx],
        *,
        only: Sequence[UUID] | None = None,
    ) -> list[Payment]:
        if limit <= 0:
            return []
        ids = None if only is None else _json_list(only)
        async with self.transaction() as conn:
            # One settle tx moves one asset: the oldest pending payment picks it.
            async with conn.execute(
                f"""
                WITH candidates AS (
                    SELECT rowid AS r, * FROM payment_queue
                     WHERE status = 'pending'
                       AND (? IS NULL OR id IN (SELECT value FROM json_each(?))))
                SELECT {_PAYMENT_COLUMNS} FROM candidates
                 WHERE payment_asset = (
                       SELECT payment_asset FROM candidates ORDER BY created_at, r LIMIT 1)
                 ORDER BY created_at, r
                 LIMIT ?
                """,
                (ids, ids, limit),
            ) as cursor:
                rows = list(await cursor.fetchall())
            if not rows:
                return []
            payments = [_payment(r) for r in rows]
            nonce = await _lock_relayer(conn, relayer)
            signed = sign(payments, nonce)
            await conn.execute(
                """
                UPDATE payment_queue
                   SET status = 'processing', tx_hash = ?, nonce = ?, relayer = ?, raw_tx = ?,
                       updated_at = ?
                 WHERE id IN (SELECT value FROM json_each(?))
                """,
                (
                    signed.hash,
                    nonce,
                    relayer,
                    signed.raw,
                    _now(),
                    _json_list([p.id for p in payments]),
                ),
            )
            await _set_next_nonce(conn, relayer, nonce + 1)
        return [
            replace(
                p,
                status=PaymentStatus.PROCESSING,
                tx_hash=signed.hash,
                nonce=nonce,
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
    ) -> list[Payment]:
        order = (
            "processed_at, created_at, rowid"
            if status is PaymentStatus.SENT
            else "created_at, rowid"
        )
        before = None if expiring_before is None else min(expiring_before, _MAX_INTEGER)
        rows = await self._fetchall(
            f"SELECT {_PAYMENT_COLUMNS} FROM payment_queue WHERE status = ?"
            " AND (? IS NULL OR valid_before < ?)"
            f" ORDER BY {order} LIMIT ?",
            (status.value, before, before, limit),
        )
        return [_payment(r) for r in rows]

    async def amounts_in_flight(self, payers: Sequence[str]) -> dict[tuple[str, str], int]:
        rows = await self._fetchall(
            "SELECT payment_asset, payer, amount FROM payment_queue"
            " WHERE status IN ('processing', 'sent')"
            " AND payer IN (SELECT value FROM json_each(?))",
            (_json_list(payers),),
        )
        sums: dict[tuple[str, str], int] = {}
        for row in rows:  # amounts are decimal text (uint256 does not fit an SQLite integer)
            key = (row["payment_asset"], row["payer"])
            sums[key] = sums.get(key, 0) + int(row["amount"])
        return sums

    async def sent_payments(self, relayer: str, tx_limit: int) -> list[Payment]:
        rows = await self._fetchall(
            f"""
            SELECT {_PAYMENT_COLUMNS} FROM payment_queue
             WHERE status = 'sent' AND relayer = ?1 AND tx_hash IN (
                   SELECT tx_hash FROM payment_queue
                    WHERE status = 'sent' AND relayer = ?1
                    GROUP BY tx_hash ORDER BY min(nonce) LIMIT ?2)
             ORDER BY processed_at, created_at, rowid
            """,
            (relayer, tx_limit),
        )
        return [_payment(r) for r in rows]

    async def sent_mint_items(self, relayer: str, tx_limit: int) -> list[MintItem]:
        rows = await self._fetchall(
            f"""
            SELECT {_MINT_COLUMNS} FROM mint_queue
             WHERE status = 'sent' AND relayer = ?1 AND tx_hash IN (
                   SELECT tx_hash FROM mint_queue
                    WHERE status = 'sent' AND relayer = ?1
                    GROUP BY tx_hash ORDER BY min(nonce) LIMIT ?2)
             ORDER BY updated_at, created_at, rowid
            """,
            (relayer, tx_limit),
        )
        return [_mint_item(r) for r in rows]

    async def mark_sent(self, tx_hashes: Sequence[str]) -> None:
        if not tx_hashes:
            return
        hashes = _json_list(tx_hashes)
        now = _now()
        async with self.transaction() as conn:
            await conn.execute(
                """
                UPDATE payment_queue SET status = 'sent', processed_at = ?, updated_at = ?
                 WHERE status = 'processing'
                   AND tx_hash IN (SELECT value FROM json_each(?))
                """,
                (now, now, hashes),
            )
            await conn.execute(
                """
                UPDATE mint_queue SET status = 'sent', updated_at = ?
                 WHERE status = 'processing'
                   AND tx_hash IN (SELECT value FROM json_each(?))
                """,
                (now, hashes),
            )

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
        completed: list[UUID] = []
        async with self.transaction() as conn:
            for payment_id, tx_hash, mint_ids in completions:
                if await self._complete_one(conn, payment_id, tx_hash, mint_ids):
                    completed.append(payment_id)
            if before_commit is not None:
                before_commit()
        return completed

    @staticmethod
    async def _complete_one(
        conn: aiosqlite.Connection, payment_id: UUID, tx_hash: str, mint_ids: Sequence[str]
    ) -> bool:
        now = _now()
        async with conn.execute(
            "SELECT payer, token_address, status FROM payment_queue WHERE id = ?",
            (str(payment_id),),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None or row["status"] not in (
            PaymentStatus.SENT.value,
            PaymentStatus.PROCESSING.value,
        ):
            return False
        item_ids = [str(uuid4()) for _ in mint_ids]
        result = {"queueIds": item_ids, "quantity": len(item_ids)}
        await conn.execute(
            """
            UPDATE payment_queue
               SET status = 'completed', tx_hash = ?, result = ?,
                   processed_at = coalesce(processed_at, ?), updated_at = ?
             WHERE id = ?
            """,
            (tx_hash, json.dumps(result), now, now, str(payment_id)),
        )
        # A duplicate mint id raises (the unique key) and rolls everything back.
        await conn.executemany(
            """
            INSERT INTO mint_queue (
                id, payment_id, payer, token_address, mint_id, payment_tx_hash, status,
                created_at, updated_at
            ) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)
            """,
            [
                (item_id, str(payment_id), row["payer"], row["token_address"], m, tx_hash, now, now)
                for item_id, m in zip(item_ids, mint_ids, strict=True)
            ],
        )
        return True

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
        now = _now()
        from_status = only_from.value if only_from else None
        async with self.transaction() as conn:
            async with conn.execute(
                f"""
                UPDATE payment_queue SET status = ?, error = ?, updated_at = ?
                 WHERE id = ? AND status IN {_NOT_TERMINAL} AND (? IS NULL OR status = ?)
                RETURNING token_address, quantity, payment_type
                """,
                (status.value, error, now, str(payment_id), from_status, from_status),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return False
            if row["payment_type"] != PaymentType.MINT.value:
                return True  # only mints reserve supply
            await conn.execute(
                "UPDATE tokens SET reserved_count = reserved_count - ?, updated_at = ? "
                "WHERE address = ?",
                (int(row["quantity"]), now, row["token_address"]),
            )
        return True

    async def requeue_payment(self, payment_id: UUID, error: str) -> bool:
        async with self.transaction() as conn:
            cursor = await conn.execute(
                """
                UPDATE payment_queue
                   SET status = 'pending', tx_hash = NULL, nonce = NULL, relayer = NULL,
                       raw_tx = NULL, processed_at = NULL, error = ?, updated_at = ?
                 WHERE id = ? AND status IN ('processing', 'sent')
                """,
                (error, _now(), str(payment_id)),
            )
            changed = cursor.rowcount
            await cursor.close()
        return changed > 0

    # -- pipeline: mint items -------------------------------------------------------

    async def get_mint_items(self, payment_id: UUID) -> list[MintItem]:
        rows = await self._fetchall(
            f"SELECT {_MINT_COLUMNS} FROM mint_queue WHERE payment_id = ? "
            "ORDER BY created_at, rowid",
            (str(payment_id),),
        )
        return [_mint_item(r) for r in rows]

    async def list_mint_items(self, status: MintStatus, limit: int) -> list[MintItem]:
        rows = await self._fetchall(
            f"SELECT {_MINT_COLUMNS} FROM mint_queue WHERE status = ?"
            " ORDER BY updated_at, created_at, rowid LIMIT ?",
            (status.value, limit),
        )
        return [_mint_item(r) for r in rows]

    async def pending_mint_items(self, limit: int) -> list[MintItem]:
        rows = await self._fetchall(
            f"""
            SELECT {_MINT_COLUMNS} FROM mint_queue
             WHERE status = 'pending'
               AND token_address = (
                   SELECT token_address FROM mint_queue WHERE status = 'pending'
                    ORDER BY created_at, rowid LIMIT 1)
             ORDER BY created_at, rowid
             LIMIT ?
            """,
            (limit,),
        )
        return [_mint_item(r) for r in rows]

    async def claim_mint_items(
        self,
        relayer: str,
        item_ids: Sequence[UUID],
        sign: Callable[[list[MintItem], int], SignedTx],
    ) -> list[MintItem]:
        if not item_ids:
            return []
        async with self.transaction() as conn:
            async with conn.execute(
                f"""
                SELECT {_MINT_COLUMNS} FROM mint_queue
                 WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending'
                 ORDER BY created_at, rowid
                """,
                (_json_list(item_ids),),
            ) as cursor:
                rows = list(await cursor.fetchall())
            if not rows:
                return []
            items = [_mint_item(r) for r in rows]
            _one_token(items)
            nonce = await _lock_relayer(conn, relayer)
            signed = sign(items, nonce)
            now = _now()
            await conn.execute(
                """
                UPDATE mint_queue
                   SET status = 'processing', tx_hash = ?, nonce = ?, relayer = ?, raw_tx = ?,
                       updated_at = ?
                 WHERE id IN (SELECT value FROM json_each(?))
                """,
                (signed.hash, nonce, relayer, signed.raw, now, _json_list([m.id for m in items])),
            )
            await _set_next_nonce(conn, relayer, nonce + 1)
        updated_at = parse_sqlite_timestamp(now)
        return [
            replace(
                m,
                status=MintStatus.PROCESSING,
                tx_hash=signed.hash,
                nonce=nonce,
                relayer=relayer,
                raw_tx=signed.raw,
                updated_at=updated_at,
            )
            for m in items
        ]

    async def complete_mint_items(self, item_ids: Sequence[UUID], tx_hash: str | None) -> None:
        if not item_ids:
            return
        async with self.transaction() as conn:
            await conn.execute(
                f"""
                UPDATE mint_queue
                   SET status = 'completed', tx_hash = coalesce(?, tx_hash), updated_at = ?
                 WHERE id IN (SELECT value FROM json_each(?)) AND status IN {_NOT_TERMINAL}
                """,
                (tx_hash, _now(), _json_list(item_ids)),
            )

    async def retry_mint_items(
        self, item_ids: Sequence[UUID], error: str, max_attempts: int
    ) -> None:
        if not item_ids:
            return
        # Failed items keep their last tx fields (what was tried); retried ones start over.
        # (SQLite evaluates every SET expression against the row as it was.)
        async with self.transaction() as conn:
            await conn.execute(
                f"""
                UPDATE mint_queue
                   SET attempts = attempts + 1,
                       status = CASE WHEN attempts + 1 >= ?1 THEN 'failed' ELSE 'pending' END,
                       error_message = ?2,
                       tx_hash = CASE WHEN attempts + 1 >= ?1 THEN tx_hash END,
                       nonce = CASE WHEN attempts + 1 >= ?1 THEN nonce END,
                       relayer = CASE WHEN attempts + 1 >= ?1 THEN relayer END,
                       raw_tx = CASE WHEN attempts + 1 >= ?1 THEN raw_tx END,
                       updated_at = ?3
                 WHERE id IN (SELECT value FROM json_each(?4)) AND status IN {_NOT_TERMINAL}
                """,
                (max_attempts, error, _now(), _json_list(item_ids)),
            )

    # -- pipeline: relayer outbox ---------------------------------------------------

    async def unconfirmed_txs(self, relayer: str, from_nonce: int) -> list[OutboxTx]:
        rows = await self._fetchall(
            """
            SELECT nonce, tx_hash, raw_tx, processing FROM (
                SELECT nonce, tx_hash, raw_tx,
                       max(status = 'processing') OVER (PARTITION BY nonce) AS processing,
                       row_number() OVER (PARTITION BY nonce ORDER BY tx_hash) AS rn
                  FROM (
                        SELECT nonce, tx_hash, raw_tx, status FROM payment_queue
                         WHERE relayer = ?1 AND (nonce >= ?2 OR status = 'processing') AND raw_tx IS NOT NULL
                        UNION ALL
                        SELECT nonce, tx_hash, raw_tx, status FROM mint_queue
                         WHERE relayer = ?1 AND (nonce >= ?2 OR status = 'processing') AND raw_tx IS NOT NULL
                       )
            )
             WHERE rn = 1
             ORDER BY nonce
            """,
            (relayer, from_nonce),
        )
        return [
            OutboxTx(
                nonce=int(r["nonce"]),
                tx_hash=r["tx_hash"],
                raw_tx=r["raw_tx"],
                sent=not r["processing"],
            )
            for r in rows
        ]

    async def sync_relayer_nonce(self, relayer: str, chain_next_nonce: int) -> int:
        async with (
            self.transaction() as conn,
            conn.execute(
                f"""
                INSERT INTO relayers (address, next_nonce) VALUES (?, ?)
                ON CONFLICT (address) DO UPDATE
                    SET next_nonce = max(relayers.next_nonce, excluded.next_nonce),
                        updated_at = {SQL_NOW}
                RETURNING next_nonce
                """,
                (relayer, chain_next_nonce),
            ) as cursor,
        ):
            row = await cursor.fetchone()
        assert row is not None
        return int(row["next_nonce"])

    async def replace_tx(self, relayer: str, nonce: int, old_hash: str, new: SignedTx) -> bool:
        where = "relayer = ? AND nonce = ? AND tx_hash = ? AND status IN ('processing', 'sent')"
        key = (relayer, nonce, old_hash)
        async with self.transaction() as conn:
            async with conn.execute(
                f"SELECT raw_tx FROM payment_queue WHERE {where}"
                f" UNION ALL SELECT raw_tx FROM mint_queue WHERE {where} LIMIT 1",
                key + key,
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return False
            for table in ("payment_queue", "mint_queue"):
                await conn.execute(
                    f"UPDATE {table} SET tx_hash = ?, raw_tx = ?, updated_at = ? WHERE {where}",
                    (new.hash, new.raw, _now(), *key),
                )
            await conn.executemany(
                "INSERT INTO relayer_txs (tx_hash, relayer, nonce, raw_tx) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tx_hash) DO NOTHING",
                [(old_hash, relayer, nonce, row["raw_tx"]), (new.hash, relayer, nonce, new.raw)],
            )
        return True

    async def tx_hashes(self, relayer: str, nonces: Sequence[int]) -> dict[int, list[str]]:
        wanted = sorted(set(nonces))
        if not wanted:
            return {}
        rows = await self._fetchall(
            "SELECT nonce, tx_hash FROM relayer_txs WHERE relayer = ?"
            " AND nonce IN (SELECT value FROM json_each(?)) ORDER BY nonce, created_at, tx_hash",
            (relayer, json.dumps(wanted)),
        )
        found: dict[int, list[str]] = {}
        for r in rows:
            found.setdefault(int(r["nonce"]), []).append(r["tx_hash"])
        return found

    # -- operators ------------------------------------------------------------------

    async def payment_stats(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        minute_ago = sqlite_timestamp(now - timedelta(minutes=1))
        async with self._lock:
            async with self._conn.execute(
                "SELECT status, count(*) AS n FROM payment_queue GROUP BY status"
            ) as cursor:
                payment_rows = list(await cursor.fetchall())
            async with self._conn.execute(
                "SELECT status, count(*) AS n FROM mint_queue GROUP BY status"
            ) as cursor:
                mint_rows = list(await cursor.fetchall())
            async with self._conn.execute(
                """
                SELECT
                  (SELECT min(processed_at) FROM payment_queue
                    WHERE status = 'sent') AS oldest_sent,
                  (SELECT count(*) FROM payment_queue
                    WHERE status = 'completed' AND updated_at >= ?1) AS completed,
                  (SELECT count(*) FROM mint_queue
                    WHERE status = 'completed' AND updated_at >= ?1) AS mints_completed
                """,
                (minute_ago,),
            ) as cursor:
                row = await cursor.fetchone()
        assert row is not None
        payments = {s.value: 0 for s in PaymentStatus}
        payments.update({r["status"]: int(r["n"]) for r in payment_rows})
        mints = {s.value: 0 for s in MintStatus}
        mints.update({r["status"]: int(r["n"]) for r in mint_rows})
        oldest = row["oldest_sent"]
        return {
            "payments": payments,
            "mints": mints,
            "oldest_sent_age_s": (
                None
                if oldest is None
                else max(0.0, (now - parse_sqlite_timestamp(oldest)).total_seconds())
            ),
            "completed_last_minute": int(row["completed"]),
            "mints_completed_last_minute": int(row["mints_completed"]),
        }

    # -- relayer leases and wake-ups --------------------------------------------------

    async def acquire_relayer_lease(self, relayer: str, holder: str, ttl_s: float) -> bool:
        now = datetime.now(UTC)
        expires = sqlite_timestamp(now + timedelta(seconds=ttl_s))
        async with (
            self.transaction() as conn,
            conn.execute(
                """
                INSERT INTO relayer_leases (address, holder, expires_at, updated_at)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (address) DO UPDATE
                    SET holder = excluded.holder, expires_at = excluded.expires_at,
                        updated_at = excluded.updated_at
                  WHERE relayer_leases.holder = excluded.holder
                     OR relayer_leases.expires_at < excluded.updated_at
                RETURNING holder
                """,
                (relayer, holder, expires, sqlite_timestamp(now)),
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return row is not None and row["holder"] == holder

    async def release_relayer_lease(self, relayer: str, holder: str) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "DELETE FROM relayer_leases WHERE address = ? AND holder = ?", (relayer, holder)
            )

    async def watch_new_payments(self, callback: Callable[[], None]) -> None:
        # One SQLite file has one writer process, so in-process callbacks see every payment.
        self._watchers.append(callback)

    async def watch_payment_changes(self, callback: Callable[[UUID | None], None]) -> None:
        """Status changes of payments and mint items reach `callback` through TEMP triggers
        on this connection (the one writer of the file) calling a Python function. They fire
        before the commit, but a waiter reads through the store's lock, so it sees the
        committed row (a rolled-back change only wakes it for nothing)."""
        if not self._change_watchers:
            loop = asyncio.get_running_loop()

            def changed(payment_id: str) -> None:  # runs in aiosqlite's thread
                # Never let a notice fail the write that fired it (a loop shutting down).
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._on_payment_changed, payment_id)

            async with self._lock:
                await self._conn.create_function("payfirst_payment_changed", 1, changed)
                for table, column in (("payment_queue", "id"), ("mint_queue", "payment_id")):
                    await self._conn.execute(
                        f"CREATE TEMP TRIGGER IF NOT EXISTS {table}_changed_notify "
                        f"AFTER UPDATE OF status ON main.{table} "
                        "WHEN OLD.status IS NOT NEW.status "
                        f"BEGIN SELECT payfirst_payment_changed(NEW.{column}); END"
                    )
        self._change_watchers.append(callback)

    def _on_payment_changed(self, payment_id: str) -> None:
        try:
            changed = UUID(payment_id)
        except ValueError:
            return
        for watcher in self._change_watchers:
            watcher(changed)


def _same_purchase(row: aiosqlite.Row, payment: NewPayment, authorization: Any) -> bool:
    """An authorization already queued matches only the same purchase (as in PostgreSQL's
    payfirst_queue_payment): same authorization, type, token or payee, asset and quantity."""
    return (
        json.loads(row["authorization"]) == authorization
        and row["payment_type"] == payment.payment_type.value
        and row["token_address"] == payment.token_address
        and row["payment_asset"] == payment.payment_asset
        and int(row["quantity"]) == payment.quantity
    )


def _one_token(items: list[MintItem]) -> None:
    """One batchMint goes to one token contract: a mixed claim would be a caller's bug."""
    tokens = {m.token_address for m in items}
    if len(tokens) > 1:
        raise ValueError(f"mint items of several tokens cannot share one tx: {sorted(tokens)}")
