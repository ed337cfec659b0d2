"""Network names: x402 v1 legacy names and CAIP-2 ids (`eip155:<chainId>`).

The v1 table holds the names the official x402 SDK knows. It has no name for a local
dev chain (anvil / hardhat, chain 31337), so v1 requirements for chain 31337 carry the
CAIP-2 id `eip155:31337` as their `network`, and payfirst accepts either form everywhere.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

LOCAL_CHAIN_ID: Final = 31337

V1_NETWORK_CHAIN_IDS: Final[dict[str, int]] = {
    "base": 8453,
    "base-sepolia": 84532,
    "ethereum": 1,
    "polygon": 137,
    "polygon-amoy": 80002,
    "avalanche": 43114,
    "avalanche-fuji": 43113,
    "abstract": 2741,
    "abstract-testnet": 11124,
    "iotex": 4689,
    "sei": 1329,
    "sei-testnet": 1328,
    "peaq": 3338,
    "story": 1513,
    "educhain": 656476,
    "skale-base-sepolia": 1444673419,
    "megaeth": 4326,
    "monad": 143,
    "monad-testnet": 10143,
    "stable": 988,
    "stable-testnet": 2201,
    "celo": 42220,
    "flare": 14,
}

CHAIN_ID_V1_NETWORKS: Final[dict[int, str]] = {v: k for k, v in V1_NETWORK_CHAIN_IDS.items()}


def caip2(chain_id: int) -> str:
    """The CAIP-2 id of an EVM chain: `eip155:<chain_id>`."""
    return f"eip155:{chain_id}"


@lru_cache(maxsize=256)
def chain_id_of(network: str) -> int:
    """The chain id of a v1 network name or a CAIP-2 `eip155:<n>` id.

    Raises ValueError for anything else (a non-EVM namespace, an unknown name, junk)."""
    known = V1_NETWORK_CHAIN_IDS.get(network)
    if known is not None:
        return known
    namespace, sep, reference = network.partition(":")
    if namespace == "eip155" and sep and reference.isascii() and reference.isdigit():
        chain_id = int(reference)
        if 0 < chain_id < 2**64 and reference == str(chain_id):
            return chain_id
    raise ValueError(f"unknown network {network!r}")


def v1_network(chain_id: int) -> str:
    """The v1 network name of a chain, or its CAIP-2 id when v1 has no name for it
    (as for the local chain 31337)."""
    return CHAIN_ID_V1_NETWORKS.get(chain_id) or caip2(chain_id)


def is_known_network(network: str) -> bool:
    try:
        chain_id_of(network)
    except ValueError:
        return False
    return True
