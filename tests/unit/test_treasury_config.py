"""The platform's treasury per network (networks file, PAYFIRST_TREASURY_ADDRESS for the
legacy chain) and its default fee (PAYFIRST_PLATFORM_FEE_BPS)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from payfirst.config import Config, load_config
from payfirst.domain.errors import ConfigError
from payfirst.networks_config import build_registry

KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
TREASURY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_the_platform_fee_defaults_to_zero_and_is_bounded() -> None:
    assert load_config({}).platform_fee_bps == 0
    assert load_config({"PAYFIRST_PLATFORM_FEE_BPS": "250"}).platform_fee_bps == 250
    with pytest.raises(ConfigError, match="PAYFIRST_PLATFORM_FEE_BPS"):
        load_config({"PAYFIRST_PLATFORM_FEE_BPS": "10001"})


def test_the_legacy_chain_takes_its_treasury_from_the_environment() -> None:
    config = load_config(
        {
            "PAYFIRST_TREASURY_ADDRESS": TREASURY.lower(),
            "PAYFIRST_RPC_URL": "http://127.0.0.1:8545",
            "PAYFIRST_RELAYER_KEY": KEY_0,
        }
    )
    assert config.treasury_address == TREASURY  # checksummed
    registry = build_registry(config, {}, legacy_chain_id=31337)
    local = registry.by_chain_id(31337)
    assert local is not None and local.treasury_address == TREASURY
    with pytest.raises(ConfigError, match="PAYFIRST_TREASURY_ADDRESS"):
        load_config({"PAYFIRST_TREASURY_ADDRESS": "0x1234"})


def test_a_network_file_gives_a_network_its_treasury(tmp_path: Path) -> None:
    path = tmp_path / "networks.toml"
    path.write_text(
        f"""
        [[network]]
        id = "eip155:84532"
        rpc_urls = ["http://127.0.0.1:8545"]
        relayer_keys_env = "KEYS"
        treasury_address = "{TREASURY.lower()}"
        """
    )
    registry = build_registry(replace(Config(), networks_file=path), {"KEYS": KEY_0})
    sepolia = registry.by_chain_id(84532)
    assert sepolia is not None and sepolia.treasury_address == TREASURY
    base = registry.by_chain_id(8453)
    assert base is not None and base.treasury_address is None
    path.write_text('[[network]]\nid = "eip155:84532"\ntreasury_address = 7\n')
    with pytest.raises(ConfigError, match="treasury_address must be a string"):
        build_registry(replace(Config(), networks_file=path), {})
