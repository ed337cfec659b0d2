"""Runtime settings on PostgreSQL: a bad value stored by hand never makes a loop spin (its
default is used and it is logged), and `payfirst settings` checks before it writes."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from eth_account import Account

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.cli import operate
from payfirst.config import load_config
from payfirst.domain.settings import DEFAULTS, SettingError
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.relayer_loops import RelayerLoops
from payfirst.ports.store import Store
from tests.fixtures.store import execute_raw

WAIT_S = 10.0  # bound on every wait below; reached only when a test fails


class _Unclosable:
    """The session's store handed to a CLI command, which closes what it opened."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def close(self) -> None:
        pass


class _WatchedEvent(asyncio.Event):
    """A wake-up event that tells the test when a loop starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def wait(self) -> bool:  # type: ignore[override]
        self.waiting.set()
        return await super().wait()


def _relayer_loops(store: Store) -> RelayerLoops:
    # The RPC is never reached: the sender's tick is replaced by a recording stub.
    relayer = Relayer.from_key(Account.create().key.hex(), 31337)
    return RelayerLoops(store, EvmChain(RpcClient("http://127.0.0.1:9")), relayer)


async def _store_raw(store: PostgresStore, name: str, value: int) -> None:
    """What an operator could do with psql: no validation on this path."""
    await execute_raw(
        store,
        "INSERT INTO system_settings (name, value) VALUES ($1, $2) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        name,
        value,
    )


async def test_a_bad_stored_value_uses_the_default_and_is_logged_once(
    pg_store: PostgresStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _store_raw(pg_store, "payment_batch_size", 0)
    await _store_raw(pg_store, "payment_batch_interval_ms", 0)
    loops = _relayer_loops(pg_store)
    sizes: list[int] = []

    async def run_once(limit: int, *, batching: bool = True) -> int:
        sizes.append(limit)
        return 0

    monkeypatch.setattr(loops.sender, "run_once", run_once)
    with caplog.at_level(logging.WARNING, logger="payfirst.settings"):
        more, interval_ms = await loops._send(await loops.settings.read())
        await loops.settings.read()
    # Not "signed 0 >= size 0: go again at once", and not a 0 ms sleep: the defaults.
    assert sizes == [DEFAULTS.payment_batch_size]
    assert (more, interval_ms) == (False, DEFAULTS.payment_batch_interval_ms)
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "system_settings: payment_batch_interval_ms must be at least 50, not 0: "
        "the default 4000 is used",
        "system_settings: payment_batch_size must be at least 1, not 0: the default 50 is used",
    ]


async def test_a_loop_with_a_bad_stored_batch_size_sleeps_instead_of_spinning(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _store_raw(pg_store, "payment_batch_size", 0)
    loops = _relayer_loops(pg_store)
    calls = 0

    async def run_once(limit: int, *, batching: bool = True) -> int:
        nonlocal calls
        calls += 1
        return 0  # nothing pending: with size 0, "0 >= 0" used to mean "a full batch"

    monkeypatch.setattr(loops.sender, "run_once", run_once)
    wake = _WatchedEvent()
    loop = asyncio.create_task(loops._loop("sender", loops._send, wake))
    try:
        # A spinning loop never waits on its wake-up event.
        await asyncio.wait_for(wake.waiting.wait(), WAIT_S)
        assert calls == 1
        wake.waiting.clear()
        wake.set()  # a queued payment: one more tick, then it waits again
        await asyncio.wait_for(wake.waiting.wait(), WAIT_S)
        assert calls == 2
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_settings_set_checks_first_and_applies_without_restart(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def open_database(config: object) -> Store:
        return _Unclosable(pg_store)

    monkeypatch.setattr(operate, "open_database", open_database)
    config = load_config()
    loops = _relayer_loops(pg_store)  # a running relayer's view
    assert (await loops.settings.read()).confirmation_batch_size == 20

    async def run(action: str, *argv: str) -> str:
        """`payfirst settings ACTION ...`'s work, in this event loop."""
        names = [a for a in argv if a != "--json"]
        await operate.settings_command(config, action, *names, as_json="--json" in argv)
        return capsys.readouterr().out

    assert await run("set", "confirmation_batch_size", "5") == "confirmation_batch_size = 5\n"
    assert (await loops.settings.read()).confirmation_batch_size == 5  # its next tick

    with pytest.raises(SettingError, match="confirmation_batch_size must be at least 1, not 0"):
        await run("set", "confirmation_batch_size", "0")
    with pytest.raises(SettingError, match="confirmation_timeout_s must be at least 10, not 1"):
        await pg_store.set_setting("confirmation_timeout_s", 1)
    assert await pg_store.get_settings() == {"confirmation_batch_size": 5}

    shown = json.loads(await run("show", "--json"))
    entry = next(e for e in shown["settings"] if e["name"] == "confirmation_batch_size")
    assert (entry["value"], entry["default"], entry["stored"]) == (5, 20, 5)
    assert shown["problems"] == []
    table = await run("show")
    assert any(
        line.split()[:3] == ["confirmation_batch_size", "5*", "20"] for line in table.splitlines()
    )

    assert (
        await run("unset", "confirmation_batch_size") == "confirmation_batch_size = 20 (default)\n"
    )
    assert await pg_store.get_settings() == {}
    assert (await loops.settings.read()) == DEFAULTS
