"""Can this instance do its work now: the database answers, every served chain answers, and
every relayer can pay for gas. Read by `/health/ready` and by `/metrics` (relayer gas and
nonce gaps)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from payfirst.ports.chain import ChainRejected, ChainUnavailable
from payfirst.ports.store import Store
from payfirst.usecases.deps import ServedNetwork

#: A relayer is ready when it can pay for one large settle batch at twice today's base
#: fee: 2 x base fee x this much gas (a BatchSettler.settle of ~18 payments).
GAS_RESERVE: Final = 1_000_000
#: The most a readiness check waits for the chain.
READ_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class RelayerState:
    network: str  # CAIP-2
    address: str
    balance_wei: int | None  # None: the chain did not say
    needed_wei: int | None  # None: the base fee is unknown
    #: Nonces payfirst signed that the chain has not taken yet (stored next - chain pending).
    nonce_gap: int | None

    @property
    def can_pay_gas(self) -> bool:
        if self.balance_wei is None or self.needed_wei is None:
            return False
        return self.balance_wei >= self.needed_wei


async def relayer_states(store: Store, served: ServedNetwork) -> list[RelayerState]:
    """The state of each relayer of `served`; unknown values where the chain did not
    answer within READ_TIMEOUT_S."""
    signers = list(served.signers)
    chain, network = served.chain, served.network
    if chain is None or not signers:
        return []
    try:
        base_fee, balances, pending = await asyncio.wait_for(
            asyncio.gather(
                chain.latest_base_fee(),
                chain.native_balances(signers, "latest"),
                chain.get_transaction_counts(signers, "pending"),
            ),
            READ_TIMEOUT_S,
        )
    except (ChainUnavailable, ChainRejected, TimeoutError):
        return [RelayerState(network.caip2, a, None, None, None) for a in signers]
    states = []
    for address, balance, chain_next in zip(signers, balances, pending, strict=True):
        stored = await store.get_relayer_nonce(address, chain_id=network.chain_id)
        gap = None if stored is None else max(0, stored - chain_next)
        states.append(
            RelayerState(network.caip2, address, balance, 2 * base_fee * GAS_RESERVE, gap)
        )
    return states
