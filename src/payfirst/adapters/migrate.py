"""The schema migration runner, one for PostgreSQL and SQLite.

Migrations are numbered SQL files in the package (`payfirst/migrations/<dialect>/NNNN_name.sql`,
one per dialect per version). `migrate()` applies the ones missing from the
`schema_migrations(version, applied_at)` table in version order, each in its own transaction
together with its `schema_migrations` row, so a file is applied entirely or not at all.

Running it again changes nothing. Several processes may start at once: on PostgreSQL each
migration transaction first takes a transaction-scoped advisory lock
(`pg_advisory_xact_lock(MIGRATION_LOCK_KEY)`), on SQLite it begins with `BEGIN IMMEDIATE`
(the database write lock), so exactly one process applies each version and the others see
it applied.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal, TypeAlias

import aiosqlite
import asyncpg

Dialect = Literal["postgres", "sqlite"]

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


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The numbered migration files of `dialect`, in version order."""
    folder = resources.files("payfirst.migrations").joinpath(dialect)
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
        raise RuntimeError(f"duplicate migration version among {dialect} migrations: {versions}")
    return migrations


async def _run(backend: _PostgresBackend | _SqliteBackend) -> list[int]:
    applied: list[int] = []
    for migration in load_migrations(backend.dialect):
        async with backend.transaction() as tx:
            if migration.version in await tx.applied_versions():
                continue
            await tx.apply(migration)
        applied.append(migration.version)
    return applied


async def migrate(db: asyncpg.Pool | _PgConnection | aiosqlite.Connection) -> list[int]:
    """Apply the missing migrations; return the versions this call applied (empty when the
    schema was already current). An aiosqlite connection must be in autocommit mode
    (`isolation_level=None`); PostgreSQL tables go to the first schema on `search_path`."""
    if isinstance(db, aiosqlite.Connection):
        return await _run(_SqliteBackend(db))
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _run(_PostgresBackend(conn))
    return await _run(_PostgresBackend(db))


# PostgreSQL

_PG_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class _PostgresTransaction:
    def __init__(self, conn: _PgConnection) -> None:
        self._conn = conn

    async def applied_versions(self) -> set[int]:
        rows = await self._conn.fetch("SELECT version FROM schema_migrations")
        return {int(r["version"]) for r in rows}

    async def apply(self, migration: Migration) -> None:
        # No arguments: the simple query protocol, so a file may hold many statements.
        await self._conn.execute(migration.sql)
        await self._conn.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
        )


class _PostgresBackend:
    dialect: Dialect = "postgres"

    def __init__(self, conn: _PgConnection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PostgresTransaction]:
        async with self._conn.transaction():
            await self._conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await self._conn.execute(_PG_CREATE_TABLE)
            yield _PostgresTransaction(self._conn)


# SQLite

_SQLITE_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY NOT NULL,
    applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


def split_sqlite_script(script: str) -> list[str]:
    """Split a SQL script into complete statements (`executescript` would commit the open
    transaction first, so each statement is executed on its own inside ours)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if _has_code(statement):
                statements.append(statement)
            buffer = ""
    if _has_code(buffer):
        raise ValueError(f"incomplete SQL statement at the end of the script: {buffer.strip()!r}")
    return statements


def _has_code(sql: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


class _SqliteTransaction:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def applied_versions(self) -> set[int]:
        async with self._conn.execute("SELECT version FROM schema_migrations") as cursor:
            return {int(r[0]) for r in await cursor.fetchall()}

    async def apply(self, migration: Migration) -> None:
        for statement in split_sqlite_script(migration.sql):
            await self._conn.execute(statement)
        await self._conn.execute(
            "INSERT INTO schema_migrations (version) VALUES (?)", (migration.version,)
        )


class _SqliteBackend:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        if conn.isolation_level is not None:
            raise ValueError("migrate() needs an aiosqlite connection with isolation_level=None")
        self._conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTransaction]:
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            await self._conn.execute(_SQLITE_CREATE_TABLE)
            yield _SqliteTransaction(self._conn)
        except BaseException:
            await self._conn.execute("ROLLBACK")
            raise
        await self._conn.execute("COMMIT")
