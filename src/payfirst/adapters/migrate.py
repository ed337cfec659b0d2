"""The schema migration runner.

Migrations are numbered SQL files in the package (`payfirst/migrations/postgres/NNNN_name.sql`).
`migrate()` applies the ones missing from the `schema_migrations(version, applied_at)` table in
version order, each in its own transaction together with its `schema_migrations` row, so a
file is applied entirely or not at all.

Running it again changes nothing. Several processes may start at once: each migration
transaction first takes a transaction-scoped advisory lock
(`pg_advisory_xact_lock(MIGRATION_LOCK_KEY)`), so exactly one process applies each version and
the others see it applied.

`schema.sql` beside them is the whole current schema in one file (`schema_sql()`), equal to
applying every migration (tests/integration/test_schema_sql.py); its README says how
functions are versioned by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _PgConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]

#: Advisory lock key taken by every PostgreSQL migration transaction ("payfirst" in ASCII).
MIGRATION_LOCK_KEY = int.from_bytes(b"payfirst", "big", signed=True)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def _folder() -> Traversable:
    return resources.files("payfirst.migrations").joinpath("postgres")


def schema_sql() -> str:
    """The current schema in one file: what applying every migration gives."""
    return _folder().joinpath("schema.sql").read_text(encoding="utf-8")


def load_migrations() -> list[Migration]:
    """The numbered migration files, in version order."""
    folder = _folder()
    migrations: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        migrations.append(
            Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
        )
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration version among the migrations: {versions}")
    return migrations


async def migrate(db: asyncpg.Pool | _PgConnection) -> list[int]:
    """Apply the missing migrations; return the versions this call applied (empty when the
    schema was already current). Tables go to the first schema on `search_path`."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _run(conn)
    return await _run(db)


async def _run(conn: _PgConnection) -> list[int]:
    applied: list[int] = []
    for migration in load_migrations():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(_PG_CREATE_TABLE)
            rows = await conn.fetch("SELECT version FROM schema_migrations")
            if migration.version in {int(r["version"]) for r in rows}:
                continue
            # No arguments: the simple query protocol, so a file may hold many statements.
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
            )
        applied.append(migration.version)
    return applied


_PG_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
