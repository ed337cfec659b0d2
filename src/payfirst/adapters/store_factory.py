"""Open the store a database URL names."""

from __future__ import annotations

from urllib.parse import urlsplit

from payfirst.domain.errors import ConfigError
from payfirst.ports.store import Store


async def open_store(database_url: str, *, migrate: bool = True) -> Store:
    """The PostgresStore of a `postgresql://…` / `postgres://…` URL, its schema brought up
    to date unless `migrate=False`."""
    scheme = urlsplit(database_url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        from payfirst.adapters.store_postgres import PostgresStore

        return await PostgresStore.connect(database_url, migrate=migrate)
    raise ConfigError(
        f"database URL: unsupported database URL scheme {scheme!r} (use postgresql://…)"
    )
