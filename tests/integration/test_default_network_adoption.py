"""A start-up serving only a networks file refuses to run while rows of the single-chain
setup (no recorded chain) wait, rather than guess their chain; `payfirst adopt-chain`
gives them one."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from payfirst.adapters.devchain import ANVIL_KEYS, free_port
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.app import Unreachable, open_networks
from payfirst.cli import app
from payfirst.config import Config
from payfirst.domain.errors import ConfigError
from tests.fixtures.store import execute_raw, make_payment, random_address, register_token

CHAIN = 31337
RELAYER = "0x" + "12" * 20


def _config(tmp_path: Path) -> Config:
    """One network on a loopback URL nothing listens on: reaching it fails, so a start-up
    that gets that far raises Unreachable."""
    key_file = tmp_path / "relayer.keys"
    key_file.write_text(ANVIL_KEYS[0] + "\n")
    path = tmp_path / "networks.toml"
    path.write_text(
        f"""
[[network]]
id = "eip155:{CHAIN}"
rpc_urls = ["http://127.0.0.1:{free_port()}"]
relayer_key_file = "{key_file}"

[[network.asset]]
address = "{random_address()}"
name = "USDC"
version = "2"
decimals = 6
"""
    )
    return Config(networks_file=path)


async def test_a_networks_file_start_refuses_unadopted_rows_until_adopt_chain(
    own_store: PostgresStore, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    # The single-chain release's relayer nonce (chain 0, 0009's default).
    await execute_raw(
        own_store, "INSERT INTO relayers (address, next_nonce) VALUES ($1, 4)", RELAYER
    )
    with pytest.raises(ConfigError, match=r"payfirst adopt-chain --chain-id N"):
        await open_networks(config, own_store, None, None)

    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    parsed = command.commands["adopt-chain"].make_context("adopt-chain", ["--chain-id", str(CHAIN)])
    assert parsed.params == {"chain_id": CHAIN}
    await own_store.adopt_default_chain(parsed.params["chain_id"])  # what the command runs
    assert await own_store.get_relayer_nonce(RELAYER, chain_id=CHAIN) == 4
    # Past the check: on to the network's RPC, which is down here.
    with pytest.raises(Unreachable):
        await open_networks(config, own_store, None, None)


async def test_finished_payments_of_no_chain_do_not_stop_a_start(
    pg_store: PostgresStore, tmp_path: Path
) -> None:
    token = await register_token(pg_store)
    done = make_payment(token)
    await pg_store.queue_payment(done)
    await execute_raw(
        pg_store,
        "UPDATE payment_queue SET status = 'completed', chain_id = NULL WHERE id = $1",
        done.id,
    )
    assert not await pg_store.default_network_rows()
    with pytest.raises(Unreachable):
        await open_networks(_config(tmp_path), pg_store, None, None)
