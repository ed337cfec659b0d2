"""The embedded PostgreSQL (payfirst.adapters.embedded_postgres): data kept between starts,
a password asked for, a server left by a killed owner replaced, another live owner's server
never touched."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from payfirst.adapters.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError


@pytest.fixture
async def root() -> AsyncIterator[Path]:
    # As root the server runs as another user, who cannot enter pytest's 0700 tmp_path.
    path = Path(tempfile.mkdtemp(prefix="payfirst-embedded-"))
    os.chmod(path, 0o755)
    yield path / "postgres"
    shutil.rmtree(path, ignore_errors=True)


async def test_data_is_kept_between_starts(root: Path) -> None:
    server = EmbeddedPostgres(root, durable=False)
    url = await server.start()
    assert url.startswith("postgresql://payfirst:") and "@127.0.0.1:" in url
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    await conn.close()
    password = url.split(":")[2].split("@")[0]
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(url.replace(password, "wrong"))
    await server.stop()
    assert not (root / "data" / "postmaster.pid").exists()
    assert not (root / "owner.pid").exists()

    async with EmbeddedPostgres(root, durable=False) as again:
        assert again.url is not None
        conn = await asyncpg.connect(again.url)
        assert await conn.fetchval("SELECT x FROM kept") == 42
        await conn.close()


async def test_a_server_left_by_a_dead_owner_is_replaced(root: Path) -> None:
    first = EmbeddedPostgres(root, durable=False)
    await first.start()
    try:
        # Another payfirst process owns it while it runs: start() refuses, running_url()
        # hands out its URL.
        (root / "owner.pid").write_text(f"{os.getppid()}\n")
        with pytest.raises(EmbeddedPostgresError, match="another payfirst"):
            await EmbeddedPostgres(root, durable=False).start()
        assert EmbeddedPostgres(root).running_url() == first.url
        # Its owner was killed: the next start stops it and starts its own.
        dead = await _dead_pid()
        (root / "owner.pid").write_text(f"{dead}\n")
        second = EmbeddedPostgres(root, durable=False)
        async with second:
            assert first._process is not None
            assert await first._process.wait() == 0  # fast shutdown, no crash
            assert second.url is not None
            conn = await asyncpg.connect(second.url)
            await conn.close()
    finally:
        await first.stop()
    assert EmbeddedPostgres(root).running_url() is None


async def _dead_pid() -> int:
    import asyncio

    process = await asyncio.create_subprocess_exec("true")
    await process.wait()
    return process.pid
