"""The e2e and fault suites' shared dev chain: a test gets it back as it was deployed."""

from __future__ import annotations

import time

from payfirst.adapters.devchain import ANVIL_KEYS, send_transaction
from payfirst.evm import calls
from tests.fixtures.chain import SharedChain, TrackedRpc

GWEI = 10**9


async def test_checkin_puts_the_chain_back_as_deployed(shared_chain: SharedChain) -> None:
    chain, d = await shared_chain.checkout()
    payer = d.payers[0].address
    rpc = TrackedRpc(d.rpc_url)
    try:
        nonce = await rpc.get_transaction_count(d.relayer_address, "latest")
        balance = await rpc.eth_call(d.usdc, calls.balance_of(payer))
        await chain.fund([payer], 5)
        # A tx that cannot be mined (a nonce gap) stays in the pool; so would a base fee
        # pinned for the next block, and the clock moved forward.
        await send_transaction(
            rpc, ANVIL_KEYS[0], d.usdc, calls.mint_usdc(payer, 1), nonce=nonce + 5, gas=10**5
        )
        await rpc.call("anvil_setNextBlockBaseFeePerGas", hex(100 * GWEI))
        await rpc.call("evm_increaseTime", 3600)
        assert await rpc.eth_call(d.usdc, calls.balance_of(payer)) != balance
    finally:
        await rpc.aclose()
    await shared_chain.checkin(rpc)

    again, d = await shared_chain.checkout()
    assert again is chain, "the chain was replaced, not reverted"
    rpc = TrackedRpc(d.rpc_url)
    try:
        assert await rpc.get_transaction_count(d.relayer_address, "pending") == nonce
        assert await rpc.eth_call(d.usdc, calls.balance_of(payer)) == balance
        assert await rpc.call("txpool_status") == {"pending": "0x0", "queued": "0x0"}
        await rpc.call("evm_mine")
        block = await rpc.call("eth_getBlockByNumber", "latest", False)
        assert int(block["baseFeePerGas"], 16) < GWEI
        assert abs(int(block["timestamp"], 16) - time.time()) < 5
    finally:
        await rpc.aclose()
    await shared_chain.checkin(rpc)


async def test_a_test_that_changed_the_mining_mode_gets_a_new_chain(
    shared_chain: SharedChain,
) -> None:
    chain, d = await shared_chain.checkout()
    rpc = TrackedRpc(d.rpc_url)
    try:
        await rpc.call("evm_setAutomine", True)
    finally:
        await rpc.aclose()
    await shared_chain.checkin(rpc)
    fresh, deployment = await shared_chain.checkout()
    assert fresh is not chain
    rpc = TrackedRpc(deployment.rpc_url)
    try:
        assert not await rpc.call("anvil_getAutomine")  # mixed mining again
        assert await rpc.get_code(deployment.token)
    finally:
        await rpc.aclose()
    await shared_chain.checkin(rpc)
