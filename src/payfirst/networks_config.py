"""The network registry of one instance: the known networks (Base, Base Sepolia), merged
with the TOML file PAYFIRST_NETWORKS_FILE names and with the legacy single-chain settings
(PAYFIRST_RPC_URL, PAYFIRST_RELAYER_KEY(S|_FILE), PAYFIRST_SETTLER_ADDRESS,
PAYFIRST_TREASURY_ADDRESS).

The file (see networks.example.toml):

    [[network]]
    id = "eip155:84532"                  # CAIP-2, or an x402 v1 name ("base-sepolia")
    rpc_urls = ["https://sepolia.base.org"]
    relayer_keys_env = "PAYFIRST_BASE_SEPOLIA_RELAYER_KEYS"  # or relayer_key_file = "..."
    confirmation_depth = 3               # optional; default: the runtime setting
    settler_address = "0x..."            # optional
    treasury_address = "0x..."           # optional: the platform's treasury (ledger)
    [[network.asset]]                    # optional for a known network
    address = "0x..."
    name = "USDC"                        # its EIP-712 domain name
    version = "2"
    decimals = 6
    symbol = "USDC"                      # optional; default: name

Keys are never in the file. A file entry for a known network adds to it (its RPC URLs, keys,
depth, settler, treasury, and assets beside the known ones; an asset at a known address replaces it);
any other id defines a new network. Every problem is a ConfigError naming the network.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from payfirst.config import Config, check_address, parse_relayer_keys, read_key_file
from payfirst.domain.errors import ConfigError
from payfirst.domain.networks import (
    KNOWN_NETWORKS,
    Asset,
    Network,
    NetworkRegistry,
    caip2_id,
)
from payfirst.x402.networks import CHAIN_ID_V1_NETWORKS, chain_id_of

#: Deeper than this is a typo (the runtime setting allows as much).
MAX_CONFIRMATION_DEPTH = 10_000
_URL_SCHEMES = ("http", "https", "ws", "wss")
_NETWORK_KEYS = frozenset(
    {
        "id",
        "rpc_urls",
        "relayer_keys_env",
        "relayer_key_file",
        "confirmation_depth",
        "settler_address",
        "treasury_address",
        "asset",
    }
)
_ASSET_KEYS = frozenset({"address", "name", "version", "decimals", "symbol"})
_SOURCE = "PAYFIRST_NETWORKS_FILE"


def build_registry(
    config: Config,
    env: Mapping[str, str] | None = None,
    *,
    legacy_chain_id: int | None = None,
    legacy_rpc_url: str | None = None,
) -> NetworkRegistry:
    """Known networks + the networks file + (given the chain id read from the legacy
    chain at startup) the legacy single chain. `legacy_rpc_url` overrides
    `config.rpc_url` (the dev chain `serve` starts has no PAYFIRST_RPC_URL)."""
    env = os.environ if env is None else env
    networks = list(KNOWN_NETWORKS)
    if config.networks_file is not None:
        networks = merge_networks(networks, read_networks_file(config.networks_file, env))
    if legacy_chain_id is not None:
        rpc_url = legacy_rpc_url or config.rpc_url
        if rpc_url is None:
            raise ConfigError("the legacy chain needs PAYFIRST_RPC_URL (or the dev chain's URL)")
        entry = legacy_network(
            legacy_chain_id,
            rpc_url,
            config.relayer_keys,
            config.settler_address,
            treasury_address=config.treasury_address,
        )
        networks = _merge_legacy(networks, entry)
    return NetworkRegistry(networks)


def legacy_network(
    chain_id: int,
    rpc_url: str,
    relayer_keys: Sequence[str],
    settler_address: str | None,
    *,
    treasury_address: str | None = None,
) -> Network:
    """The single chain of the legacy settings as a network entry (no assets of its own:
    a known chain keeps its known ones, a dev chain's come from its tokens)."""
    return Network(
        caip2=caip2_id(chain_id),
        chain_id=chain_id,
        v1_name=CHAIN_ID_V1_NETWORKS.get(chain_id),
        rpc_urls=(_check_url(rpc_url, "PAYFIRST_RPC_URL"),),
        relayer_keys=tuple(relayer_keys),
        settler_address=settler_address,
        treasury_address=treasury_address,
    )


def _merge_legacy(networks: list[Network], entry: Network) -> list[Network]:
    for i, network in enumerate(networks):
        if network.chain_id != entry.chain_id:
            continue
        if network.rpc_urls or network.relayer_keys:
            raise ConfigError(
                f"network {entry.caip2} is configured twice: by PAYFIRST_RPC_URL and by "
                f"{_SOURCE}; keep one"
            )
        networks[i] = replace(
            network,
            rpc_urls=entry.rpc_urls,
            relayer_keys=entry.relayer_keys,
            settler_address=entry.settler_address or network.settler_address,
            treasury_address=entry.treasury_address or network.treasury_address,
        )
        return networks
    return [*networks, entry]


def merge_networks(known: Sequence[Network], entries: Sequence[Network]) -> list[Network]:
    """`known` with each entry merged into the network of its chain id, or appended."""
    merged = list(known)
    for entry in entries:
        index = next((i for i, n in enumerate(merged) if n.chain_id == entry.chain_id), None)
        if index is None:
            if not entry.assets:
                raise ConfigError(f"{_SOURCE}: network {entry.caip2} defines no [[network.asset]]")
            merged.append(entry)
            continue
        base = merged[index]
        replaced = {a.address for a in entry.assets}
        merged[index] = replace(
            base,
            rpc_urls=entry.rpc_urls,
            relayer_keys=entry.relayer_keys,
            assets=tuple(a for a in base.assets if a.address not in replaced) + entry.assets,
            confirmation_depth=entry.confirmation_depth,
            settler_address=entry.settler_address,
            treasury_address=entry.treasury_address,
        )
    return merged


def read_networks_file(path: Path, env: Mapping[str, str]) -> list[Network]:
    """The checked entries of a networks file (keys read from the environment or key
    files it names)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{_SOURCE}: cannot read {str(path)!r}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_SOURCE}: {str(path)!r} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"network"}
    if unknown:
        raise ConfigError(f"{_SOURCE}: unknown top-level keys {sorted(unknown)}")
    raw_networks = data.get("network", [])
    if not isinstance(raw_networks, list):
        raise ConfigError(f"{_SOURCE}: `network` must be an array of tables ([[network]])")
    entries: list[Network] = []
    for number, raw in enumerate(raw_networks, 1):
        entry = _network(raw, number, env)
        if any(e.chain_id == entry.chain_id for e in entries):
            raise ConfigError(f"{_SOURCE}: network {entry.caip2} is listed twice")
        entries.append(entry)
    return entries


def _network(raw: Any, number: int, env: Mapping[str, str]) -> Network:
    if not isinstance(raw, dict):
        raise ConfigError(f"{_SOURCE}: network {number} must be a table")
    network_id = raw.get("id")
    if not isinstance(network_id, str) or not network_id:
        raise ConfigError(f'{_SOURCE}: network {number} needs an id ("eip155:<chain id>")')
    try:
        chain_id = chain_id_of(network_id)
    except ValueError:
        raise ConfigError(
            f"{_SOURCE}: network {number}: {network_id!r} is neither a CAIP-2 eip155 id nor "
            "an x402 v1 network name"
        ) from None
    caip2 = caip2_id(chain_id)
    where = f"{_SOURCE}: network {caip2}"
    unknown = set(raw) - _NETWORK_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    rpc_urls = _rpc_urls(raw.get("rpc_urls", []), where)
    keys = _keys(raw, where, env)
    if bool(rpc_urls) != bool(keys):
        raise ConfigError(f"{where}: rpc_urls and relayer keys go together (give both or neither)")
    settler = raw.get("settler_address")
    if settler is not None and not isinstance(settler, str):
        raise ConfigError(f"{where}: settler_address must be a string")
    treasury = raw.get("treasury_address")
    if treasury is not None and not isinstance(treasury, str):
        raise ConfigError(f"{where}: treasury_address must be a string")
    return Network(
        caip2=caip2,
        chain_id=chain_id,
        v1_name=CHAIN_ID_V1_NETWORKS.get(chain_id),
        rpc_urls=rpc_urls,
        relayer_keys=keys,
        assets=_assets(raw.get("asset", []), where),
        confirmation_depth=_depth(raw.get("confirmation_depth"), where),
        settler_address=None
        if settler is None
        else check_address(settler, f"{where} settler_address"),
        treasury_address=None
        if treasury is None
        else check_address(treasury, f"{where} treasury_address"),
    )


def _rpc_urls(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: rpc_urls must be a list of URLs")
    urls = tuple(_check_url(url, f"{where} rpc_urls") for url in raw)
    if len(set(urls)) != len(urls):
        raise ConfigError(f"{where}: rpc_urls lists a URL twice")
    return urls


def _check_url(url: Any, where: str) -> str:
    if not isinstance(url, str):
        raise ConfigError(f"{where}: {url!r} is not a URL")
    parts = urlsplit(url)
    if parts.scheme not in _URL_SCHEMES or not parts.hostname:
        raise ConfigError(f"{where}: {url!r} must be an http(s) or ws(s) URL with a host")
    return url


def _keys(raw: dict[str, Any], where: str, env: Mapping[str, str]) -> tuple[str, ...]:
    variable = raw.get("relayer_keys_env")
    key_file = raw.get("relayer_key_file")
    if variable is not None and key_file is not None:
        raise ConfigError(f"{where}: give relayer_keys_env or relayer_key_file, not both")
    if variable is not None:
        if not isinstance(variable, str) or not variable:
            raise ConfigError(f"{where}: relayer_keys_env must name an environment variable")
        value = env.get(variable, "")
        if not value.strip():
            raise ConfigError(f"{where}: environment variable {variable} (relayer keys) is not set")
        return parse_relayer_keys(
            [k.strip() for k in value.split(",")], f"{where} relayer keys ({variable})"
        )
    if key_file is not None:
        if not isinstance(key_file, str) or not key_file:
            raise ConfigError(f"{where}: relayer_key_file must be a path")
        return read_key_file(key_file, f"{where} relayer_key_file")
    return ()


def _depth(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise ConfigError(f"{where}: confirmation_depth must be an integer")
    if not 0 <= raw <= MAX_CONFIRMATION_DEPTH:
        raise ConfigError(
            f"{where}: confirmation_depth must be between 0 and {MAX_CONFIRMATION_DEPTH}, got {raw}"
        )
    return raw


def _assets(raw: Any, where: str) -> tuple[Asset, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: `asset` must be an array of tables ([[network.asset]])")
    assets: list[Asset] = []
    for number, item in enumerate(raw, 1):
        asset = _asset(item, f"{where} asset {number}")
        if any(a.address == asset.address for a in assets):
            raise ConfigError(f"{where}: asset {asset.address} is listed twice")
        assets.append(asset)
    return tuple(assets)


def _asset(raw: Any, where: str) -> Asset:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(raw) - _ASSET_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    address = raw.get("address")
    if not isinstance(address, str):
        raise ConfigError(f"{where}: address is missing")
    texts: dict[str, str] = {}
    for key in ("name", "version"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {key} (its EIP-712 domain {key}) is missing")
        texts[key] = value
    decimals = raw.get("decimals")
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 36:
        raise ConfigError(f"{where}: decimals must be an integer from 0 to 36")
    symbol = raw.get("symbol", texts["name"])
    if not isinstance(symbol, str) or not symbol:
        raise ConfigError(f"{where}: symbol must be a non-empty string")
    return Asset(
        address=check_address(address, f"{where} address"),
        name=texts["name"],
        version=texts["version"],
        decimals=decimals,
        symbol=symbol,
    )
