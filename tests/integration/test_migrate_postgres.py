"""The migration runner on PostgreSQL, in a schema of its own per test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from payfirst.adapters import migrate as migrate_module
from payfirst.adapters.migrate import Migration, load_migrations, migrate


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    schema = f"payfirst_migrate_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
    try:
        yield connection
    finally:
        await connection.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    return {r["table_name"] for r in rows}


async def test_migrate_applies_once(conn: asyncpg.Connection) -> None:
    versions = [m.version for m in load_migrations()]
    assert await migrate(conn) == versions
    assert await migrate(conn) == []
    assert {"tokens", "payment_queue", "mint_queue", "system_settings", "relayers"} <= (
        await _tables(conn)
    )
    rows = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
    assert len(rows) == len(versions)
    assert rows[0]["applied_at"].tzinfo is not None


async def test_failed_migration_leaves_nothing_behind(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = load_migrations()
    broken = Migration(
        version=len(good) + 1,
        name="broken",
        sql="CREATE TABLE half_done (x integer);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    monkeypatch.setattr(migrate_module, "load_migrations", lambda: [*good, broken])
    with pytest.raises(asyncpg.UndefinedTableError, match="no_such_table"):
        await migrate(conn)
    assert "half_done" not in await _tables(conn)
    rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [m.version for m in good]
    assert not conn.is_in_transaction()
