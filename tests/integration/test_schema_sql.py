"""schema.sql is the current schema: applying it gives the very catalog that applying every
migration gives. And every named query of queries.sql is one the store uses, and prepares
against that schema."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

import payfirst.adapters.store_postgres as store_module
from payfirst.adapters.migrate import migrate, schema_sql
from payfirst.adapters.sql import QUERIES, parse_queries

#: The migration runner's own table: it is not part of schema.sql.
_RUNNER_TABLE = "schema_migrations"

_RELATIONS = """
SELECT c.relname, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace
"""

_COLUMNS = """
SELECT c.relname, a.attname,
       row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) AS position,
       format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid) AS column_default
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
"""

_CONSTRAINTS = """
SELECT c.relname, con.conname, pg_get_constraintdef(con.oid) AS definition
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
 WHERE con.connamespace = current_schema()::regnamespace
"""

_INDEXES = """
SELECT c.relname, pg_get_indexdef(c.oid) AS definition
  FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'i'
"""

_FUNCTIONS = """
SELECT p.proname, pg_get_functiondef(p.oid) AS definition
  FROM pg_proc p
 WHERE p.pronamespace = current_schema()::regnamespace
"""

_TRIGGERS = """
SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) AS definition
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
"""

_TABLES = """
SELECT c.relname
  FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
"""


SchemaFactory = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


@pytest.fixture
async def fresh_schema(pg_dsn: str) -> AsyncIterator[SchemaFactory]:
    """Opens connections, each on an empty schema of its own (dropped at the end)."""
    admin = await asyncpg.connect(pg_dsn)

    @asynccontextmanager
    async def open_schema() -> AsyncIterator[asyncpg.Connection]:
        schema = f"payfirst_schema_{secrets.token_hex(6)}"
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        conn = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        try:
            yield conn
        finally:
            await conn.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')

    try:
        yield open_schema
    finally:
        await admin.close()


async def _catalog(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the schema holds (its runner table aside), with the schema's own name taken out
    of every definition, so two schemas compare equal when their contents are."""
    schema = await conn.fetchval("SELECT current_schema()")

    def rows(records: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
        cleaned = [
            tuple(
                v.replace(f'"{schema}".', "").replace(f"{schema}.", "") if isinstance(v, str) else v
                for v in r.values()
            )
            for r in records
        ]
        return sorted(
            (r for r in cleaned if not str(r[0]).startswith(_RUNNER_TABLE)),
            key=repr,
        )

    catalog = {
        name: rows(await conn.fetch(sql))
        for name, sql in (
            ("relations", _RELATIONS),
            ("columns", _COLUMNS),
            ("constraints", _CONSTRAINTS),
            ("indexes", _INDEXES),
            ("functions", _FUNCTIONS),
            ("triggers", _TRIGGERS),
        )
    }
    # Data too: the migrations' seeds and removals net out (schema.sql seeds nothing).
    tables = [r[0] for r in rows(await conn.fetch(_TABLES))]
    catalog["row_counts"] = {t: await conn.fetchval(f'SELECT count(*) FROM "{t}"') for t in tables}
    return catalog


async def _migrated(conn: asyncpg.Connection) -> dict[str, Any]:
    await migrate(conn)
    return await _catalog(conn)


async def _from_schema_sql(conn: asyncpg.Connection, *changes: str) -> dict[str, Any]:
    await conn.execute(schema_sql())
    for change in changes:
        await conn.execute(change)
    return await _catalog(conn)


async def test_schema_sql_equals_every_migration_applied(fresh_schema: SchemaFactory) -> None:
    async with fresh_schema() as migrated_conn, fresh_schema() as schema_conn:
        migrated = await _migrated(migrated_conn)
        from_file = await _from_schema_sql(schema_conn)
    for part, value in migrated.items():
        assert from_file[part] == value, part
    assert from_file == migrated

    # The comparison is about something: the operators' names and the versioned functions.
    columns = {(r[0], r[1]) for r in migrated["columns"]}
    for table, column in (
        ("payment_queue", "tx_hash"),
        ("payment_queue", "processed_at"),
        ("payment_queue", "payment_type"),
        ("mint_queue", "payment_tx_hash"),
    ):
        assert (table, column) in columns
    functions = {r[0] for r in migrated["functions"]}
    assert {"payfirst_queue_payment_v1", "payfirst_queue_payments_v1"} <= functions
    triggers = {(r[0], r[1]) for r in migrated["triggers"]}
    assert triggers == {
        ("payment_queued_notify", "payment_queue"),
        ("payment_changed_notify", "payment_queue"),
        ("spending_policies_changed_notify", "spending_policies"),
        ("agent_payers_changed_notify", "agent_payers"),
        ("mint_changed_notify", "mint_queue"),
        ("payment_webhook_inserted_v1", "payment_queue"),
        ("payment_webhook_changed_v1", "payment_queue"),
        ("mint_webhook_completed_v1", "mint_queue"),
        ("payout_webhook_completed_v1", "payouts"),
        ("ledger_entries_append_only", "ledger_entries"),
        ("ledger_transactions_append_only", "ledger_transactions"),
        ("ledger_accounts_append_only", "ledger_accounts"),
        ("ledger_entries_no_truncate", "ledger_entries"),
        ("ledger_transactions_no_truncate", "ledger_transactions"),
        ("ledger_accounts_no_truncate", "ledger_accounts"),
        ("ledger_entries_checked", "ledger_entries"),
    }


@pytest.mark.parametrize(
    ("part", "change"),
    [
        ("columns", "ALTER TABLE tokens ALTER COLUMN reserved_count SET DEFAULT 1"),
        ("columns", "ALTER TABLE relayer_txs ALTER COLUMN raw_tx TYPE varchar(10)"),
        ("constraints", "ALTER TABLE payment_queue DROP CONSTRAINT payment_queue_status_check"),
        ("indexes", "DROP INDEX idx_mint_queue_tx_hash"),
        (
            "functions",
            "CREATE OR REPLACE FUNCTION payfirst_notify_payment_queued_v1() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END; $$",
        ),
        ("triggers", "DROP TRIGGER mint_changed_notify ON mint_queue"),
        ("row_counts", "INSERT INTO system_settings (name, value) VALUES ('mint_batch_size', 3)"),
    ],
)
async def test_the_comparison_sees_a_difference(
    fresh_schema: SchemaFactory, part: str, change: str
) -> None:
    async with fresh_schema() as plain_conn, fresh_schema() as changed_conn:
        plain = await _from_schema_sql(plain_conn)
        changed = await _from_schema_sql(changed_conn, change)
    assert changed[part] != plain[part]


#: The accept call of the release before 0008 (unversioned function names).
_PREVIOUS_RELEASE_QUEUE = """
SELECT idx, payment_id, outcome FROM payfirst_queue_payments(
    $1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::text[],
    $7::integer[], $8::jsonb[], $9::text[], $10::jsonb[], $11::bigint[], $12::text[])
"""


async def test_the_previous_release_still_queues_during_a_rolling_deploy(
    fresh_schema: SchemaFactory,
) -> None:
    """0008 adds the versioned functions and keeps the unversioned ones, so a process of the
    previous release, still running while the new one migrated, keeps accepting payments."""
    async with fresh_schema() as conn:
        await migrate(conn)
        payment_id = uuid4()
        authorization = '{"from": "0xpayer", "nonce": "0x01"}'
        row = await conn.fetchrow(
            _PREVIOUS_RELEASE_QUEUE,
            [payment_id],
            ["settle"],
            ["0xpayer"],
            [1000],
            ["0xasset"],
            ["0xpayee"],
            [1],
            [authorization],
            ["0x01"],
            ["{}"],
            [2**40],
            [None],
        )
        assert row is not None
        assert (row["idx"], row["payment_id"], row["outcome"]) == (1, payment_id, "created")
        assert await conn.fetchval("SELECT status FROM payment_queue") == "pending"


async def test_every_query_prepares_against_the_schema(fresh_schema: SchemaFactory) -> None:
    async with fresh_schema() as conn:
        await migrate(conn)
        for name, sql in QUERIES.items():
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as exc:  # say which query
                pytest.fail(f"query {name!r} does not prepare: {exc}")


def test_the_store_uses_every_query_and_only_those() -> None:
    adapters = Path(store_module.__file__).parent
    source = "".join(f.read_text(encoding="utf-8") for f in sorted(adapters.glob("store_*.py")))
    used = set(re.findall(r'_Q\["([a-z0-9_]+)"\]', source))
    assert used == set(QUERIES)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("-- name: q\nSELECT 1;\n", "no comment"),
        ("-- name: q\n-- One.\n\n-- other\n", "empty"),
        ("-- name: q\n-- One.\nSELECT 1;\n-- name: q\n-- Two.\nSELECT 2;\n", "twice"),
        ("-- name: Bad-Name\n-- One.\nSELECT 1;\n", "bad query name"),
    ],
)
def test_a_malformed_queries_file_is_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_queries(text)


def test_a_query_is_its_statement_without_comments_or_semicolon() -> None:
    text = "-- header\n\n-- name: q\n-- What q does.\nSELECT 1\n  FROM t;\n\n-- section\n"
    assert parse_queries(text) == {"q": "SELECT 1\n  FROM t"}
