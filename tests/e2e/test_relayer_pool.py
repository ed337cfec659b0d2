"""Several relayer keys shared by several workers: each key is used by one worker at a
time, and a dead worker's key (with its persisted transactions) is taken over."""

from __future__ import annotations

import asyncio
import os
import time

from eth_account import Account

from payfirst.adapters.devchain import ANVIL_KEYS, send_transaction
from payfirst.adapters.evm_chain import EvmChain
from payfirst.evm import calls
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.worker import Worker
from tests.e2e.harness import Harness, check_invariants
from tests.fixtures.store import fetch_raw

LEASE_TTL_S = 1.0


async def fresh_relayers(h: Harness, count: int) -> list[Relayer]:
    """New keys with gas money and the token's minter role."""
    relayers = []
    for _ in range(count):
        key = "0x" + os.urandom(32).hex()
        address = Account.from_key(key).address
        await h.rpc.call("anvil_setBalance", address, hex(10**20))
        grant = calls.grant_role(calls.MINTER_ROLE, address)
        tx = await send_transaction(h.rpc, ANVIL_KEYS[0], h.deployment.token, grant, gas=200_000)
        await h.rpc.wait_for_receipt(tx)
        relayers.append(Relayer.from_key(key, h.deployment.chain_id))
    return relayers


async def wait_for(condition: object, max_wait: float = 10.0) -> None:
    deadline = time.monotonic() + max_wait
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_two_workers_share_two_keys_and_one_takes_over(harness: Harness) -> None:
    h = harness
    await h.worker.stop()  # the harness's own worker (anvil key 0) stays out of this test
    keys = await fresh_relayers(h, 2)
    alice = Worker(h.store, EvmChain(h.rpc), keys, holder="alice", lease_ttl_s=LEASE_TTL_S)
    bob = Worker(h.store, EvmChain(h.rpc), keys, holder="bob", lease_ttl_s=LEASE_TTL_S)
    await alice.start()
    await wait_for(lambda: len(alice.relayer_loops) == 2)
    await bob.start()
    try:
        await asyncio.sleep(LEASE_TTL_S)
        # Alice took both keys first; Bob stands by and holds none.
        assert set(alice.relayer_loops) == {k.address for k in keys}
        assert bob.relayer_loops == {}

        answers = await asyncio.gather(*(h.buy(h.payer(i), 1) for i in range(1, 7)))
        assert [a.status_code for a in answers] == [202] * 6
        await h.settled()
        used = await fetch_raw(h.store, "SELECT DISTINCT relayer FROM payment_queue")
        assert {r["relayer"] for r in used} <= {k.address for k in keys}

        # Alice dies without releasing her leases, leaving work half done.
        for task in alice._tasks:
            task.cancel()
        for loops in alice.relayer_loops.values():
            await loops.stop()
        more = await asyncio.gather(*(h.buy(h.payer(i), 2) for i in range(1, 5)))
        assert [a.status_code for a in more] == [202] * 4
        await wait_for(lambda: len(bob.relayer_loops) == 2, max_wait=LEASE_TTL_S * 5)
        await h.settled()
        stats = await h.store.payment_stats()
        assert stats["payments"]["completed"] == 10
        assert stats["mints"]["completed"] == 14
    finally:
        await bob.stop()
        await alice.stop()
    await check_invariants(h.store, h.rpc)
    leases = await fetch_raw(h.store, "SELECT count(*) AS n FROM relayer_leases")
    assert leases[0]["n"] == 0  # a clean stop gives the keys back
