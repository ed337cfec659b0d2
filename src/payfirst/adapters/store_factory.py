"""Open the store a database URL names."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from payfirst.domain.errors import ConfigError
from payfirst.ports.store import Store


def sqlite_path(database_url: str) -> str:
    """The file path of a `sqlite:///relative/path` or `sqlite:////absolute/path` URL
    (`sqlite:///:memory:` gives ":memory:")."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        raise ConfigError(
            f"database URL: expected sqlite:///relative/path or "
            f"sqlite:////absolute/path, got {database_url!r}"
        )
    path = unquote(database_url[len(prefix) :].split("?", 1)[0])
    if not path:
        raise ConfigError(f"database URL: no file path in {database_url!r}")
    return path


async def open_store(database_url: str, *, migrate: bool = True) -> Store:
    """The store for `database_url`, its schema brought up to date unless `migrate=False`:
    `postgresql://…` / `postgres://…` → PostgresStore; `sqlite:///relative/path` or
    `sqlite:////absolute/path` → SqliteStore (the parent directory is created)."""
    scheme = urlsplit(database_url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        from payfirst.adapters.store_postgres import PostgresStore

        return await PostgresStore.connect(database_url, migrate=migrate)
    if scheme == "sqlite":
        from payfirst.adapters.store_sqlite import SqliteStore

        path = sqlite_path(database_url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return await SqliteStore.connect(path, migrate=migrate)
    raise ConfigError(
        f"database URL: unsupported database URL scheme {scheme!r} "
        "(use postgresql://… or sqlite:///path)"
    )
