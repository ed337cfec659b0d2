"""The networks one payfirst instance settles on, and the assets it accepts on each.

A network is known (its assets, its x402 names) before it is active: it is served, with a
worker of its own, only once it has an RPC URL and relayer keys
(`payfirst.networks_config` reads those). Base and Base Sepolia with their USDC are known
out of the box.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from payfirst.domain.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Asset:
    """An EIP-3009 token payments are made in. `name` and `version` are its EIP-712
    domain's (what payers sign), not its display name."""

    address: str  # EIP-55 checksummed
    name: str
    version: str
    decimals: int
    symbol: str


@dataclass(frozen=True, slots=True)
class Network:
    """One EVM chain: where to reach it, who relays on it, what it accepts."""

    caip2: str  # "eip155:8453"
    chain_id: int
    v1_name: str | None = None  # the x402 v1 name ("base"); None when v1 has none
    rpc_urls: tuple[str, ...] = ()
    # Secret: kept out of repr (and so out of logs and tracebacks).
    relayer_keys: tuple[str, ...] = field(default=(), repr=False)
    assets: tuple[Asset, ...] = ()
    confirmation_depth: int | None = None  # None: the runtime setting decides
    settler_address: str | None = None  # None: one tx per payment
    # The platform's treasury (EIP-55): payments collected for providers are paid to it.
    treasury_address: str | None = None

    @property
    def active(self) -> bool:
        """Served (and settled by a worker): it has somewhere to send and someone to sign."""
        return bool(self.rpc_urls) and bool(self.relayer_keys)

    def asset(self, address: str) -> Asset | None:
        """The asset at `address` (any letter case) on this network, if accepted."""
        wanted = address.lower()
        return next((a for a in self.assets if a.address.lower() == wanted), None)


def caip2_id(chain_id: int) -> str:
    return f"eip155:{chain_id}"


class NetworkRegistry:
    """Every network this instance knows, looked up by chain id, CAIP-2 id or v1 name."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self._networks = tuple(networks)
        self._by_chain_id: dict[int, Network] = {}
        self._by_name: dict[str, Network] = {}
        for network in self._networks:
            if network.caip2 != caip2_id(network.chain_id):
                raise ConfigError(
                    f"network {network.caip2}: its id does not match chain id {network.chain_id}"
                )
            if network.chain_id in self._by_chain_id:
                raise ConfigError(f"network {network.caip2} is defined twice")
            self._by_chain_id[network.chain_id] = network
            for name in (network.caip2, network.v1_name):
                if name is None:
                    continue
                if name in self._by_name:
                    raise ConfigError(f"network name {name!r} is used by two networks")
                self._by_name[name] = network

    def __iter__(self) -> Iterator[Network]:
        return iter(self._networks)

    def __len__(self) -> int:
        return len(self._networks)

    def by_chain_id(self, chain_id: int) -> Network | None:
        return self._by_chain_id.get(chain_id)

    def by_caip2(self, caip2: str) -> Network | None:
        network = self._by_name.get(caip2)
        return network if network is not None and network.caip2 == caip2 else None

    def by_v1_name(self, name: str) -> Network | None:
        network = self._by_name.get(name)
        return network if network is not None and network.v1_name == name else None

    def get(self, name: str) -> Network | None:
        """By CAIP-2 id or v1 name, whichever `name` is (x402 accepts both)."""
        return self._by_name.get(name)

    def asset(self, chain_id: int, address: str) -> Asset | None:
        network = self._by_chain_id.get(chain_id)
        return None if network is None else network.asset(address)

    def active(self) -> tuple[Network, ...]:
        """The networks served, in registry order."""
        return tuple(n for n in self._networks if n.active)


BASE = Network(
    caip2="eip155:8453",
    chain_id=8453,
    v1_name="base",
    assets=(
        Asset(
            address="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            name="USD Coin",
            version="2",
            decimals=6,
            symbol="USDC",
        ),
    ),
)

BASE_SEPOLIA = Network(
    caip2="eip155:84532",
    chain_id=84532,
    v1_name="base-sepolia",
    assets=(
        Asset(
            address="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            name="USDC",
            version="2",
            decimals=6,
            symbol="USDC",
        ),
    ),
)

#: Known out of the box (assets and names); none is active until configured.
KNOWN_NETWORKS: tuple[Network, ...] = (BASE, BASE_SEPOLIA)
