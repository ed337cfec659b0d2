"""`payfirst accounts create|list|revoke` and `payfirst keys create|revoke`, run as processes
the way an operator runs them, against the database of a running app; and the operator key
a dev instance prints once at its first start."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import httpx
import pytest

from payfirst.adapters.devchain import DevChain, free_port
from payfirst.adapters.embedded_postgres import EmbeddedPostgres
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.app import Runtime
from payfirst.cli import _dev_operator_key, _print_ready
from payfirst.config import load_config
from tests.e2e.harness import Harness
from tests.e2e.test_serve_process import serving

BIN = Path(sys.executable).parent
KEY = re.compile(r"pf_(?:live|test)_[0-9A-Za-z]{8}_[0-9A-Za-z]{43}")


async def payfirst(h: Harness, pg_dsn: str, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "PAYFIRST_DATABASE_URL": f"{pg_dsn}?search_path={h.store.schema}",
        "PAYFIRST_RPC_URL": h.deployment.rpc_url,
        "PAYFIRST_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        str(BIN / "payfirst"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def me(h: Harness, key: str) -> int:
    answer = await h.http.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    return answer.status_code


async def test_accounts_and_keys_from_the_command_line(harness: Harness, pg_dsn: str) -> None:
    h = harness
    code, out, _ = await payfirst(
        h, pg_dsn, "accounts", "create", "--role", "operator", "--name", "ops"
    )
    assert code == 0, out
    account_id = re.search(r"account ([0-9a-f-]{36}) \(operator, ops\)", out)
    (operator_key,) = KEY.findall(out)
    assert account_id is not None
    assert operator_key.startswith("pf_live_")  # not the embedded database: a live key
    assert await me(h, operator_key) == 200

    code, out, _ = await payfirst(
        h, pg_dsn, "accounts", "create", "--role", "provider", "--name", "shop",
        "--fee-bps", "250", "--payout-address", "0x" + "ab" * 20,
    )  # fmt: skip
    assert code == 0, out
    shop_id = re.search(r"account ([0-9a-f-]{36}) \(provider, shop\)", out)
    assert shop_id is not None

    code, out, _ = await payfirst(h, pg_dsn, "accounts", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "ROLE", "CREATED", "REVOKED", "NAME"]
    assert [line.split()[1] for line in lines[1:]] == ["operator", "provider"]
    assert KEY.search(out) is None  # a listing never shows a key

    code, out, _ = await payfirst(
        h, pg_dsn, "keys", "create", "--account", shop_id.group(1), "--name", "ci",
        "--expires-in", "30d",
    )  # fmt: skip
    assert code == 0, out
    (shop_key,) = KEY.findall(out)
    assert "expires" in out
    assert await me(h, shop_key) == 200

    code, out, _ = await payfirst(h, pg_dsn, "keys", "revoke", shop_key[:16])  # by prefix
    assert code == 0 and f"key {shop_key[:16]} revoked" in out
    assert await me(h, shop_key) == 401

    code, out, _ = await payfirst(h, pg_dsn, "keys", "create", "--account", shop_id.group(1))
    (another,) = KEY.findall(out)
    found = await h.store.find_api_key_by_prefix(another[:16])
    assert found is not None
    code, out, _ = await payfirst(h, pg_dsn, "keys", "revoke", str(found.key.id))  # by id
    assert code == 0 and await me(h, another) == 401

    code, out, _ = await payfirst(h, pg_dsn, "accounts", "revoke", account_id.group(1))
    assert code == 0 and "revoked" in out
    assert await me(h, operator_key) == 401


@pytest.mark.parametrize(
    "args",
    [
        ("accounts", "create", "--role", "agent", "--name", "  "),
        ("accounts", "create", "--role", "agent", "--name", "bot", "--fee-bps", "5"),
        ("accounts", "create", "--role", "provider", "--name", "shop", "--fee-bps", "10001"),
        ("accounts", "create", "--role", "provider", "--name", "s", "--payout-address", "0x1"),
        ("accounts", "revoke", "not-an-id"),
        ("accounts", "revoke", "00000000-0000-0000-0000-000000000000"),
        ("keys", "create", "--account", "00000000-0000-0000-0000-000000000000"),
        ("keys", "revoke", "pf_live_nothing0"),
    ],
)
async def test_the_command_line_refuses_bad_values(
    harness: Harness, pg_dsn: str, args: tuple[str, ...]
) -> None:
    code, out, err = await payfirst(harness, pg_dsn, *args)
    assert code == 2, out + err
    assert err.startswith("payfirst: ") and "Traceback" not in err
    assert KEY.search(out) is None
    assert (await harness.store.list_accounts(10)) == []


async def test_a_dev_instance_prints_an_operator_key_once(
    pg_store: PostgresStore, capsys: pytest.CaptureFixture[str]
) -> None:
    config = replace(load_config(), database_url=None, rpc_url=None, networks_file=None)
    embedded = cast(EmbeddedPostgres, object())  # the dev instance's own database
    devchain = cast(DevChain, object())  # and its own local chain
    dev = Runtime(config, pg_store, [], devchain=devchain, database=embedded)

    key = await _dev_operator_key(dev)
    assert key is not None
    _print_ready(config, dev, key)
    printed = capsys.readouterr().out
    assert KEY.findall(printed) == [key.text]
    assert key.text.startswith("pf_test_")
    assert await pg_store.active_operator_exists()

    # The next start: an operator exists, no key is printed, the banner says how to get one.
    again = await _dev_operator_key(dev)
    assert again is None
    _print_ready(config, dev, again)
    printed = capsys.readouterr().out
    assert KEY.search(printed) is None
    assert "payfirst keys create" in printed


async def test_no_key_is_made_or_printed_for_a_configured_database(
    pg_store: PostgresStore, capsys: pytest.CaptureFixture[str]
) -> None:
    config = replace(load_config(), database_url="postgresql://127.0.0.1/payfirst")
    for runtime in (
        Runtime(config, pg_store, []),
        Runtime(config, pg_store, [], database=cast(EmbeddedPostgres, object())),
    ):
        assert await _dev_operator_key(runtime) is None
        _print_ready(config, runtime, None)
    assert not await pg_store.active_operator_exists()
    printed = capsys.readouterr().out
    assert KEY.search(printed) is None


async def test_no_key_is_made_or_printed_for_an_embedded_database_on_a_real_chain(
    pg_store: PostgresStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The embedded database with PAYFIRST_RPC_URL or a networks file may settle real money:
    no operator key is made for whoever reads the banner."""
    dev = replace(load_config(), database_url=None, rpc_url=None, networks_file=None)
    embedded = cast(EmbeddedPostgres, object())
    devchain = cast(DevChain, object())
    for runtime in (
        Runtime(dev, pg_store, [], database=embedded),  # a chain it did not start
        Runtime(replace(dev, rpc_url="http://127.0.0.1:8545"), pg_store, [], database=embedded),
        Runtime(
            replace(dev, rpc_url="http://127.0.0.1:8545"),
            pg_store,
            [],
            devchain=devchain,
            database=embedded,
        ),
        Runtime(
            replace(dev, networks_file=Path("networks.toml")),
            pg_store,
            [],
            devchain=devchain,
            database=embedded,
        ),
    ):
        assert await _dev_operator_key(runtime) is None
        _print_ready(dev, runtime, None)
    assert not await pg_store.active_operator_exists()
    assert KEY.search(capsys.readouterr().out) is None


@pytest.fixture
def serve_dir() -> Iterator[Path]:
    """Where `payfirst serve` runs (not pytest's 0700 tmp_path: as root the embedded
    PostgreSQL runs as another user, who must enter it)."""
    path = Path(tempfile.mkdtemp(prefix="payfirst-serve-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_make_run_prints_an_operator_key_at_the_first_start_only(serve_dir: Path) -> None:
    port, anvil_port = free_port(), free_port()
    env = {
        **os.environ,
        "PAYFIRST_PORT": str(port),
        "PAYFIRST_ANVIL_PORT": str(anvil_port),
        "PAYFIRST_LOG_LEVEL": "INFO",
    }
    for name in ("PAYFIRST_DATABASE_URL", "PAYFIRST_RPC_URL", "PAYFIRST_RELAYER_KEY"):
        env.pop(name, None)
    me_url = f"http://127.0.0.1:{port}/v1/me"
    with serving(serve_dir, env) as printed:
        (key,) = KEY.findall(printed)
        assert key.startswith("pf_test_")
        answer = httpx.get(me_url, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and answer.json()["role"] == "operator"
        assert httpx.get(me_url).status_code == 401
    with serving(serve_dir, env) as printed:
        assert KEY.search(printed) is None
        assert "payfirst keys create" in printed
        assert httpx.get(me_url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
