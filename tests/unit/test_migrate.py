"""The migration files and the store factory (no database: the runner itself is tested on
PostgreSQL in tests/integration/test_migrate_postgres.py)."""

from __future__ import annotations

import re

import pytest

from payfirst.adapters.migrate import load_migrations
from payfirst.adapters.store_factory import open_store
from payfirst.domain.errors import ConfigError
from payfirst.domain.settings import SPECS


def test_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "init"


def test_settings_seeded_by_old_migrations_are_removed_again() -> None:
    """The defaults live in code (payfirst.domain.settings): every row an early migration
    seeded is deleted again, at its seed value, by 0007, and no migration seeds any more."""
    seeded: dict[str, int] = {}
    removed: dict[str, int] = {}
    for migration in load_migrations():
        pairs = {m[1]: int(m[2]) for m in re.finditer(r"\('([a-z_]+)', (-?\d+)\)", migration.sql)}
        if "INSERT INTO system_settings" in migration.sql:
            assert migration.version < 7, f"{migration.name} seeds settings"
            seeded.update(pairs)
        elif "DELETE FROM system_settings" in migration.sql:
            removed.update(pairs)
    assert removed == seeded
    assert set(seeded) <= set(SPECS)  # later settings were never seeded


@pytest.mark.parametrize("url", ["mysql://localhost/payfirst", "sqlite:///var/payfirst.db"])
async def test_open_store_rejects_other_databases(url: str) -> None:
    with pytest.raises(ConfigError):
        await open_store(url)
