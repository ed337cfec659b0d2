"""The migration runner and the store factory, on in-memory / temporary SQLite."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from payfirst.adapters import migrate as migrate_module
from payfirst.adapters.migrate import Migration, load_migrations, migrate, split_sqlite_script
from payfirst.adapters.store_factory import open_store, sqlite_path
from payfirst.adapters.store_sqlite import SqliteStore, parse_sqlite_timestamp, sqlite_timestamp
from payfirst.domain.errors import ConfigError
from payfirst.ports.store import DEFAULT_SETTINGS


@pytest.fixture
async def memory_db() -> AsyncIterator[aiosqlite.Connection]:
    async with aiosqlite.connect(":memory:", isolation_level=None) as conn:
        yield conn


async def _tables(conn: aiosqlite.Connection) -> set[str]:
    async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
        return {r[0] for r in await cursor.fetchall()}


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_migrations_are_numbered_from_one(dialect: str) -> None:
    migrations = load_migrations(dialect)  # type: ignore[arg-type]
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "init"


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_seeded_settings_match_the_defaults(dialect: str) -> None:
    """Every setting is seeded by some migration, with its default, and none is seeded
    twice."""
    seeded: dict[str, int] = {}
    for migration in load_migrations(dialect):  # type: ignore[arg-type]
        for m in re.finditer(r"\('([a-z_]+)', (-?\d+)\)", migration.sql):
            assert m[1] not in seeded, f"{m[1]} seeded again in {migration.name}"
            seeded[m[1]] = int(m[2])
    assert seeded == DEFAULT_SETTINGS


def test_split_sqlite_script() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (x TEXT DEFAULT ';');

    CREATE INDEX i ON a (x)
        WHERE x = 'y';
    -- trailing comment
    """
    statements = split_sqlite_script(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE INDEX")
    with pytest.raises(ValueError, match="incomplete"):
        split_sqlite_script("CREATE TABLE b (x TEXT)")


async def test_migrate_applies_once(memory_db: aiosqlite.Connection) -> None:
    versions = [m.version for m in load_migrations("sqlite")]
    assert await migrate(memory_db) == versions
    assert await migrate(memory_db) == []
    assert {"tokens", "payment_queue", "mint_queue", "system_settings", "relayers"} <= (
        await _tables(memory_db)
    )
    async with memory_db.execute("SELECT version, applied_at FROM schema_migrations") as cur:
        rows = list(await cur.fetchall())
    assert len(rows) == len(versions)
    assert parse_sqlite_timestamp(rows[0][1]).tzinfo is not None


async def test_failed_migration_leaves_nothing_behind(
    memory_db: aiosqlite.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = load_migrations("sqlite")
    broken = Migration(
        version=len(good) + 1,
        name="broken",
        sql="CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    monkeypatch.setattr(migrate_module, "load_migrations", lambda _dialect: [*good, broken])
    with pytest.raises(Exception, match="no_such_table"):
        await migrate(memory_db)
    assert "half_done" not in await _tables(memory_db)
    async with memory_db.execute("SELECT version FROM schema_migrations") as cur:
        assert [r[0] for r in await cur.fetchall()] == [m.version for m in good]
    assert not memory_db.in_transaction


async def test_migrate_needs_autocommit_connection() -> None:
    async with aiosqlite.connect(":memory:") as conn:
        with pytest.raises(ValueError, match="isolation_level=None"):
            await migrate(conn)


async def test_two_sqlite_stores_on_one_file_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    first = await SqliteStore.connect(path)
    second = await SqliteStore.connect(path)
    try:
        assert await first.migrate() == []
        assert await second.migrate() == []
        assert (await second.get_settings()) == DEFAULT_SETTINGS
    finally:
        await first.close()
        await second.close()


def test_sqlite_timestamps_sort_as_text() -> None:
    from datetime import UTC, datetime, timedelta

    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    text = sqlite_timestamp(moment)
    assert text == "2026-01-02T03:04:05.678Z"
    assert parse_sqlite_timestamp(text) == moment.replace(microsecond=678000)
    assert sqlite_timestamp(moment) < sqlite_timestamp(moment + timedelta(milliseconds=1))
    with pytest.raises(ValueError, match="naive"):
        sqlite_timestamp(datetime(2026, 1, 1))


def test_sqlite_path_parsing() -> None:
    assert sqlite_path("sqlite:///data/payfirst.db") == "data/payfirst.db"
    assert sqlite_path("sqlite:////var/lib/payfirst.db") == "/var/lib/payfirst.db"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"
    with pytest.raises(ConfigError):
        sqlite_path("sqlite://host/x.db")
    with pytest.raises(ConfigError):
        sqlite_path("sqlite:///")


async def test_open_store_sqlite_creates_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///nested/dir/payfirst.db")
    try:
        assert isinstance(store, SqliteStore)
        await store.ping()
    finally:
        await store.close()
    assert (tmp_path / "nested" / "dir" / "payfirst.db").exists()
    absolute = tmp_path / "abs" / "p.db"
    store = await open_store(f"sqlite:///{absolute}")
    await store.close()
    assert absolute.exists()


async def test_open_store_rejects_unknown_scheme() -> None:
    with pytest.raises(ConfigError):
        await open_store("mysql://localhost/payfirst")
