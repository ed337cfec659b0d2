"""The network registry: known networks, lookups, the TOML networks file and its errors,
the legacy single chain as a network, and relayer keys kept out of every repr."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from payfirst.config import Config, load_config
from payfirst.domain.errors import ConfigError
from payfirst.domain.networks import (
    BASE,
    BASE_SEPOLIA,
    KNOWN_NETWORKS,
    Asset,
    Network,
    NetworkRegistry,
)
from payfirst.networks_config import build_registry, legacy_network, read_networks_file

# anvil's dev keys (public knowledge, never real funds)
KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
BASE_USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
SEPOLIA_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
LOCAL_ASSET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
EXAMPLE = Path(__file__).resolve().parents[2] / "networks.example.toml"


def _config(path: Path | None = None, **overrides: Any) -> Config:
    return replace(Config(networks_file=path), **overrides)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "networks.toml"
    path.write_text(text)
    return path


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> NetworkRegistry:
    return build_registry(_config(_write(tmp_path, text)), env or {})


# known networks and lookups


def test_base_and_base_sepolia_usdc_are_known_out_of_the_box() -> None:
    registry = NetworkRegistry(KNOWN_NETWORKS)
    base = registry.by_chain_id(8453)
    sepolia = registry.by_chain_id(84532)
    assert base is BASE and sepolia is BASE_SEPOLIA
    assert base.caip2 == "eip155:8453" and base.v1_name == "base"
    assert sepolia.caip2 == "eip155:84532" and sepolia.v1_name == "base-sepolia"
    assert registry.asset(8453, BASE_USDC) == Asset(BASE_USDC, "USD Coin", "2", 6, "USDC")
    assert registry.asset(84532, SEPOLIA_USDC) == Asset(SEPOLIA_USDC, "USDC", "2", 6, "USDC")


def test_known_networks_are_inactive_until_configured() -> None:
    registry = build_registry(Config(), {})
    assert [n.caip2 for n in registry] == ["eip155:8453", "eip155:84532"]
    assert registry.active() == ()


def test_lookups_by_chain_id_caip2_and_v1_name() -> None:
    registry = NetworkRegistry(KNOWN_NETWORKS)
    assert registry.by_caip2("eip155:84532") is BASE_SEPOLIA
    assert registry.by_caip2("base-sepolia") is None
    assert registry.by_v1_name("base-sepolia") is BASE_SEPOLIA
    assert registry.by_v1_name("eip155:84532") is None
    assert registry.get("base") is BASE and registry.get("eip155:8453") is BASE
    assert registry.by_chain_id(1) is None and registry.get("ethereum") is None
    assert len(registry) == 2 and list(registry) == [BASE, BASE_SEPOLIA]


def test_asset_lookup_ignores_address_case_and_other_chains() -> None:
    registry = NetworkRegistry(KNOWN_NETWORKS)
    assert registry.asset(8453, BASE_USDC.lower()) is BASE.assets[0]
    assert registry.asset(84532, BASE_USDC) is None  # Base's USDC is not Sepolia's
    assert registry.asset(1, BASE_USDC) is None


def test_registry_refuses_a_chain_twice_and_a_mismatched_id() -> None:
    with pytest.raises(ConfigError, match="eip155:8453 is defined twice"):
        NetworkRegistry([BASE, replace(BASE, v1_name=None)])
    with pytest.raises(ConfigError, match="does not match chain id 1"):
        NetworkRegistry([Network(caip2="eip155:2", chain_id=1)])


def test_relayer_keys_never_show_in_repr() -> None:
    network = replace(BASE, rpc_urls=("http://127.0.0.1:8545",), relayer_keys=(KEY_0,))
    for text in (repr(network), str(network), repr(NetworkRegistry([network]).active())):
        assert KEY_0 not in text and KEY_0[2:] not in text
    assert "127.0.0.1" in repr(network)


# the networks file


def test_file_activates_a_known_network_with_keys_from_the_environment(tmp_path: Path) -> None:
    registry = _load(
        tmp_path,
        """
        [[network]]
        id = "eip155:84532"
        rpc_urls = ["http://127.0.0.1:8545", "ws://127.0.0.1:8546"]
        relayer_keys_env = "SEPOLIA_KEYS"
        confirmation_depth = 3
        settler_address = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
        """,
        {"SEPOLIA_KEYS": f"{KEY_0}, {KEY_1[2:]}"},
    )
    sepolia = registry.by_chain_id(84532)
    assert sepolia is not None and sepolia.active
    assert sepolia.rpc_urls == ("http://127.0.0.1:8545", "ws://127.0.0.1:8546")
    assert sepolia.relayer_keys == (KEY_0, KEY_1)
    assert sepolia.confirmation_depth == 3
    assert sepolia.settler_address == LOCAL_ASSET  # checksummed
    assert sepolia.assets == BASE_SEPOLIA.assets  # the known USDC kept
    assert registry.active() == (sepolia,)
    assert registry.by_chain_id(8453) == BASE  # untouched


def test_file_keys_from_a_key_file_and_a_v1_name_as_id(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# base relayers\n{KEY_0}\n")
    registry = _load(
        tmp_path,
        f"""
        [[network]]
        id = "base"
        rpc_urls = ["https://127.0.0.1:8545"]
        relayer_key_file = "{key_file}"
        """,
    )
    base = registry.get("base")
    assert base is not None and base.caip2 == "eip155:8453" and base.relayer_keys == (KEY_0,)


def test_file_defines_a_new_network_with_its_assets(tmp_path: Path) -> None:
    registry = _load(
        tmp_path,
        f"""
        [[network]]
        id = "eip155:31337"
        rpc_urls = ["http://127.0.0.1:8545"]
        relayer_keys_env = "LOCAL_KEYS"

        [[network.asset]]
        address = "{LOCAL_ASSET.lower()}"
        name = "USDC"
        version = "2"
        decimals = 6
        """,
        {"LOCAL_KEYS": KEY_0},
    )
    local = registry.by_caip2("eip155:31337")
    assert local is not None and local.v1_name is None and local.confirmation_depth is None
    assert local.assets == (Asset(LOCAL_ASSET, "USDC", "2", 6, "USDC"),)
    assert registry.asset(31337, LOCAL_ASSET) == local.assets[0]
    assert [n.chain_id for n in registry] == [8453, 84532, 31337]


def test_file_asset_at_a_known_address_replaces_the_known_one(tmp_path: Path) -> None:
    registry = _load(
        tmp_path,
        f"""
        [[network]]
        id = "eip155:8453"
        [[network.asset]]
        address = "{BASE_USDC}"
        name = "USD Coin"
        version = "3"
        decimals = 6
        symbol = "USDC"
        [[network.asset]]
        address = "{LOCAL_ASSET}"
        name = "Other"
        version = "1"
        decimals = 18
        """,
    )
    base = registry.by_chain_id(8453)
    assert base is not None and not base.active
    assert [(a.address, a.version) for a in base.assets] == [(BASE_USDC, "3"), (LOCAL_ASSET, "1")]
    assert base.assets[1].symbol == "Other"  # symbol defaults to the name


def test_the_example_file_loads(tmp_path: Path) -> None:
    key_file = tmp_path / "base-keys"
    key_file.write_text(KEY_1 + "\n")
    text = EXAMPLE.read_text().replace("/etc/payfirst/base-relayer-keys", str(key_file))
    env = {"PAYFIRST_BASE_SEPOLIA_RELAYER_KEYS": KEY_0, "PAYFIRST_LOCAL_RELAYER_KEYS": KEY_0}
    registry = _load(tmp_path, text, env)
    assert [n.caip2 for n in registry.active()] == ["eip155:8453", "eip155:84532", "eip155:31337"]
    assert KEY_0 not in EXAMPLE.read_text() and KEY_0[2:] not in EXAMPLE.read_text()


def test_load_config_reads_the_networks_file_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    assert load_config({"PAYFIRST_NETWORKS_FILE": str(path)}).networks_file == path
    assert load_config({}).networks_file is None
    with pytest.raises(ConfigError, match="PAYFIRST_NETWORKS_FILE: no such file"):
        load_config({"PAYFIRST_NETWORKS_FILE": str(tmp_path / "missing.toml")})


_ASSET = f"""
[[network.asset]]
address = "{LOCAL_ASSET}"
name = "USDC"
version = "2"
decimals = 6
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[network]", "is not valid TOML"),
        ("[other]\nx = 1", "unknown top-level keys"),
        ('network = "base"', "must be an array of tables"),
        ("[[network]]\nrpc_urls = []", "network 1 needs an id"),
        ('[[network]]\nid = "solana:mainnet"', "neither a CAIP-2 eip155 id nor"),
        ('[[network]]\nid = "base"\ncolor = 1', r"network eip155:8453: unknown keys \['color'\]"),
        (
            '[[network]]\nid = "base"\n[[network]]\nid = "eip155:8453"',
            "network eip155:8453 is listed twice",
        ),
        (
            '[[network]]\nid = "base"\nrpc_urls = ["ftp://127.0.0.1/"]\nrelayer_keys_env = "K"',
            "eip155:8453 rpc_urls: 'ftp://127.0.0.1/' must be an http",
        ),
        (
            '[[network]]\nid = "base"\nrpc_urls = ["http://"]\nrelayer_keys_env = "K"',
            "with a host",
        ),
        ('[[network]]\nid = "base"\nrpc_urls = "http://127.0.0.1"', "must be a list of URLs"),
        (
            '[[network]]\nid = "base"\nrpc_urls = ["http://127.0.0.1", "http://127.0.0.1"]\n'
            'relayer_keys_env = "K"',
            "lists a URL twice",
        ),
        (
            '[[network]]\nid = "base"\nrpc_urls = ["http://127.0.0.1"]\n'
            'relayer_keys_env = "MISSING_KEYS"',
            "network eip155:8453: environment variable MISSING_KEYS .* is not set",
        ),
        (
            '[[network]]\nid = "base"\nrpc_urls = ["http://127.0.0.1"]\nrelayer_keys_env = "BAD"',
            r"network eip155:8453 relayer keys \(BAD\): key 2 must be a 32-byte",
        ),
        (
            '[[network]]\nid = "base"\nrpc_urls = ["http://127.0.0.1"]\n'
            'relayer_keys_env = "K"\nrelayer_key_file = "/nonexistent"',
            "relayer_keys_env or relayer_key_file, not both",
        ),
        (
            '[[network]]\nid = "base"\nrpc_urls = ["http://127.0.0.1"]\n'
            'relayer_key_file = "/nonexistent/keys"',
            "eip155:8453 relayer_key_file: cannot read",
        ),
        ('[[network]]\nid = "base"\nrpc_urls = ["http://127.0.0.1"]', "go together"),
        ('[[network]]\nid = "base"\nrelayer_keys_env = "K"', "go together"),
        ('[[network]]\nid = "base"\nconfirmation_depth = -1', "between 0 and 10000, got -1"),
        ('[[network]]\nid = "base"\nconfirmation_depth = 10001', "between 0 and 10000"),
        ('[[network]]\nid = "base"\nconfirmation_depth = "3"', "must be an integer"),
        ('[[network]]\nid = "base"\nsettler_address = "0x12"', "settler_address must be a 0x"),
        (
            '[[network]]\nid = "base"\nsettler_address = "0x5fbDB2315678afecb367f032d93F642f64180aa3"',
            "wrong EIP-55 checksum",
        ),
        ('[[network]]\nid = "eip155:31337"', "network eip155:31337 defines no"),
        (
            '[[network]]\nid = "base"\n[[network.asset]]\naddress = "0xzz"\nname = "U"\n'
            'version = "2"\ndecimals = 6',
            "eip155:8453 asset 1 address must be a 0x",
        ),
        (
            '[[network]]\nid = "base"\n[[network.asset]]\naddress = "' + LOCAL_ASSET + '"\n'
            'version = "2"\ndecimals = 6',
            "asset 1: name .* is missing",
        ),
        (
            '[[network]]\nid = "base"\n[[network.asset]]\naddress = "' + LOCAL_ASSET + '"\n'
            'name = "U"\nversion = "2"\ndecimals = 77',
            "decimals must be an integer from 0 to 36",
        ),
        ('[[network]]\nid = "base"' + _ASSET + _ASSET, "is listed twice"),
        (
            '[[network]]\nid = "base"\n[[network.asset]]\naddress = "' + LOCAL_ASSET + '"\n'
            'name = "U"\nversion = "2"\ndecimals = 6\nprice = 1',
            r"asset 1: unknown keys \['price'\]",
        ),
    ],
)
def test_file_errors_name_the_network(tmp_path: Path, text: str, message: str) -> None:
    env = {"K": KEY_0, "BAD": f"{KEY_0},0x1234"}
    with pytest.raises(ConfigError, match=message) as raised:
        build_registry(_config(_write(tmp_path, text)), env)
    assert KEY_0[2:] not in str(raised.value)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PAYFIRST_NETWORKS_FILE: cannot read"):
        read_networks_file(tmp_path, {})  # a directory


# the legacy single chain


def test_legacy_settings_become_one_network_of_the_chain_id_read() -> None:
    config = _config(
        None,
        rpc_url="http://127.0.0.1:8545",
        relayer_keys=(KEY_0,),
        settler_address=LOCAL_ASSET,
    )
    registry = build_registry(config, {}, legacy_chain_id=31337)
    local = registry.by_chain_id(31337)
    assert local == Network(
        caip2="eip155:31337",
        chain_id=31337,
        rpc_urls=("http://127.0.0.1:8545",),
        relayer_keys=(KEY_0,),
        settler_address=LOCAL_ASSET,
    )
    assert registry.active() == (local,)


def test_legacy_chain_on_a_known_network_keeps_its_assets() -> None:
    config = _config(None, relayer_keys=(KEY_0,))
    registry = build_registry(
        config, {}, legacy_chain_id=84532, legacy_rpc_url="http://127.0.0.1:8545"
    )
    sepolia = registry.by_v1_name("base-sepolia")
    assert sepolia is not None and sepolia.active and sepolia.assets == BASE_SEPOLIA.assets
    assert len(registry) == 2


def test_legacy_chain_also_in_the_file_is_an_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[network]]\nid = "base-sepolia"\nrpc_urls = ["http://127.0.0.1"]\nrelayer_keys_env = "K"',
    )
    config = _config(path, rpc_url="http://127.0.0.1:8545", relayer_keys=(KEY_1,))
    with pytest.raises(ConfigError, match="eip155:84532 is configured twice"):
        build_registry(config, {"K": KEY_0}, legacy_chain_id=84532)
    # Another chain id: both served.
    registry = build_registry(config, {"K": KEY_0}, legacy_chain_id=31337)
    assert [n.chain_id for n in registry.active()] == [84532, 31337]


def test_legacy_chain_needs_an_rpc_url() -> None:
    with pytest.raises(ConfigError, match="PAYFIRST_RPC_URL"):
        build_registry(Config(), {}, legacy_chain_id=31337)
    with pytest.raises(ConfigError, match="PAYFIRST_RPC_URL: 'file:///x' must be"):
        legacy_network(31337, "file:///x", (KEY_0,), None)
