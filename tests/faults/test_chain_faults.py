"""Fault suite, the chain side (issue 8 items 4, 5 and 8): a lagging load-balanced RPC,
reorgs under load, txs stuck below the market, dropped txs, an RPC outage. Each case ends
with `assert_chain_matches`: every accepted payment terminal and matching the chain
(authorization used on chain <=> completed), mints only for completed payments, each mint
id once, balances equal to the completed sums."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from urllib.parse import urlsplit

import pytest
from eth_account import Account

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.evm import abi, calls, signing
from tests.e2e.tcp_proxy import TcpProxy, stable_port
from tests.faults.conftest import FaultEnv, wait_for
from tests.faults.invariants import Ledger, assert_chain_matches, snapshot
from tests.faults.lagging_rpc import LaggingRpc
from tests.fixtures.store import fetch_raw

GWEI = 10**9
PAYERS = list(range(1, 9))


def orders(count: int, rng: random.Random, payers: list[int] = PAYERS) -> list[tuple[int, int]]:
    return [(rng.choice(payers), rng.randint(1, 3)) for _ in range(count)]


async def test_lagging_rpc_never_fails_a_payment_its_own_tx_settled(fault_env: FaultEnv) -> None:
    """Issue 8 item 4: behind an RPC whose receipts of the newest block answer null and
    whose eth_getLogs lags one block (nonces and eth_call at the head), payments used to
    end `confirmation_failed` "authorization canceled by the payer" although payfirst's
    own tx had used their authorization. Now every one completes."""
    env = fault_env
    proxy = LaggingRpc(env.deployment.rpc_url, lag=1)
    await proxy.start()
    try:
        await env.start_worker(proxy.url, batched=False)  # one tx (and block) per payment
        h = env.harness
        before = await snapshot(h, [h.payer(i).address for i in PAYERS])
        rng = random.Random(4)
        for _ in range(6):
            await env.buy_wave(orders(5, rng))
            await asyncio.sleep(rng.uniform(0.1, 0.6))  # spread the load over blocks
        await env.settled()
        statuses = await assert_chain_matches(h, before)
    finally:
        await proxy.stop()
    assert statuses == {"completed": 30}, statuses
    assert proxy.hidden_receipts > 0, "the proxy never hid a receipt: the lie was not exercised"


async def _drain_in_reorg(env: FaultEnv, victim_key: str, sink: str, depth: int) -> None:
    """A reorg of `depth` blocks whose first new block moves all the victim's USDC (as
    of the fork point) to `sink`: the victim's settlements of the removed blocks can then
    never be re-settled — a double spend by reorg."""
    rpc, usdc = env.rpc, env.deployment.usdc
    victim = Account.from_key(victim_key).address
    fork = await rpc.block_number() - depth
    balance = int(
        abi.decode_result(["uint256"], await rpc.eth_call(usdc, calls.balance_of(victim), fork))[0]
    )
    drain = signing.sign_transaction(
        victim_key,
        {
            "chainId": env.deployment.chain_id,
            "nonce": await rpc.get_transaction_count(victim, fork),
            "to": usdc,
            "data": abi.encode_call("transfer(address,uint256)", [sink, balance]),
            "gas": 100_000,
            "maxFeePerGas": 200 * GWEI,
            "maxPriorityFeePerGas": GWEI,
        },
    )
    await rpc.call("anvil_reorg", depth, [[drain.raw, 0]])


async def test_reorgs_under_load_deliver_nothing_unpaid(fault_env: FaultEnv) -> None:
    """Issue 8 item 5: `anvil_reorg` (depth 1-3) while payments flow, some reorgs also
    spending a payer's USDC in the replacing blocks. With confirmation depth 3 nothing is
    completed or minted before it is 3 blocks deep; a vanished receipt sends the payment
    back (re-broadcast, or re-signed), and after the dust settles every mint item belongs
    to a completed payment whose authorization is used on chain, and vice versa."""
    env = fault_env
    await env.store.set_setting("confirmation_depth", 3)
    await env.start_worker(batched=True)
    h = env.harness
    victims = {7: "0x" + "7" * 40, 8: "0x" + "8" * 40}
    sinks = [abi.checksum(s) for s in victims.values()]
    before = await snapshot(h, [h.payer(i).address for i in PAYERS] + sinks)
    rng = random.Random(5)
    reorgs = 0
    for round_ in range(10):
        await env.buy_wave(orders(4, rng))
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        depth = rng.randint(1, 3)
        if round_ in (3, 6):
            index = 7 if round_ == 3 else 8
            await _drain_in_reorg(env, ANVIL_KEYS[index], sinks[index - 7], depth)
        else:
            await env.rpc.call("anvil_reorg", depth, [])
        reorgs += 1
    await env.settled()
    external: dict[str, int] = {}
    for index, sink in zip((7, 8), sinks, strict=True):
        moved = await h.usdc_balance(sink) - before.usdc[sink]
        external[sink] = moved
        external[h.payer(index).address] = -moved
    statuses = await assert_chain_matches(h, before, external=external)
    assert reorgs == 10 and statuses["completed"] > 0, statuses


async def _miner(env: FaultEnv, base_fee: int, stop: asyncio.Event) -> None:
    """Mines a block every 0.3 s with the next base fee pinned at `base_fee`."""
    while not stop.is_set():
        await env.rpc.call("anvil_setNextBlockBaseFeePerGas", hex(base_fee))
        await env.rpc.call("evm_mine")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.3)


async def _payment_tx(env: FaultEnv) -> str | None:
    rows = await fetch_raw(env.store, "SELECT status, tx_hash FROM payment_queue")
    return rows[0]["tx_hash"] if rows and rows[0]["status"] == "sent" else None


async def _one_payment_held_unmined(env: FaultEnv, payer: int, quantity: int) -> tuple[Ledger, str]:
    """Bumps after 1 s, no block mined unless the test mines it, one worker sending one tx
    per payment, one payment of `payer`: the balances before it and its first tx."""
    await env.store.set_setting("fee_bump_after_s", 1)
    await env.rpc.call("evm_setAutomine", False)
    await env.rpc.call("evm_setIntervalMining", 0)
    await env.start_worker(batched=False)
    before = await snapshot(env.harness, [env.harness.payer(payer).address])
    await env.buy_wave([(payer, quantity)])
    await wait_for(lambda: _has(_payment_tx(env)), 20, "the payment's tx broadcast")
    first = await _payment_tx(env)
    assert first is not None
    return before, first


async def test_tx_stuck_below_the_market_is_replaced_with_higher_fees(fault_env: FaultEnv) -> None:
    """Item 5, fee bumping: the payment's tx offers less than the base fee of every block
    mined after it, so it cannot be mined; after `fee_bump_after_s` it is replaced (same
    nonce, fees +10% at least, persisted before broadcast), the replacement lands and the
    payment completes once."""
    env = fault_env
    h = env.harness
    before, first = await _one_payment_held_unmined(env, payer=1, quantity=2)
    stop = asyncio.Event()
    miner = asyncio.create_task(_miner(env, 100 * GWEI, stop))
    try:
        await env.settled(max_wait=60)
    finally:
        stop.set()
        await miner
    payment = (await fetch_raw(env.store, "SELECT status, tx_hash, nonce FROM payment_queue"))[0]
    assert payment["status"] == "completed"
    assert payment["tx_hash"] != first
    assert await env.rpc.get_transaction_receipt(first) is None
    recorded = await fetch_raw(env.store, "SELECT tx_hash, raw_tx FROM relayer_txs")
    assert {first, payment["tx_hash"]} <= {r["tx_hash"] for r in recorded}
    fees = {
        r["tx_hash"]: _fees(r["raw_tx"])
        for r in recorded
        if r["tx_hash"] in (first, payment["tx_hash"])
    }
    old, new = fees[first], fees[payment["tx_hash"]]
    assert new[0] * 10 >= old[0] * 11 and new[1] * 10 >= old[1] * 11, (old, new)
    statuses = await assert_chain_matches(h, before)
    assert statuses == {"completed": 1}


async def test_the_replaced_tx_mined_instead_still_completes_the_payment(
    fault_env: FaultEnv,
) -> None:
    """Either tx signed for a nonce may be mined: when the original (not the bump) lands,
    the confirmer recognises its receipt and completes the payment with it."""
    env = fault_env
    h = env.harness
    before, first = await _one_payment_held_unmined(env, payer=2, quantity=1)
    raw_first = (await fetch_raw(env.store, "SELECT raw_tx FROM payment_queue"))[0]["raw_tx"]
    # A block too expensive for it; then no more blocks until it has been bumped.
    await env.rpc.call("anvil_setNextBlockBaseFeePerGas", hex(100 * GWEI))
    await env.rpc.call("evm_mine")

    async def replaced() -> bool:
        return await _payment_tx(env) not in (None, first)

    await wait_for(replaced, 30, "the stuck tx replaced")
    bumped = await _payment_tx(env)
    assert bumped not in (None, first), "the stuck tx was never replaced"
    # The node loses the replacement and mines the original (the worker paused meanwhile,
    # so that it does not re-send the replacement in between; it resumes as after a
    # restart).
    worker = env.workers[0]
    await worker.stop()
    await env.rpc.call("anvil_dropTransaction", bumped)
    await env.rpc.call("anvil_setNextBlockBaseFeePerGas", hex(1))
    await env.rpc.call("evm_mine")
    await env.rpc.send_raw_transaction(raw_first)
    await env.rpc.call("evm_mine")
    await worker.start()
    assert await env.rpc.get_transaction_receipt(first) is not None
    stop = asyncio.Event()
    miner = asyncio.create_task(_miner(env, GWEI, stop))
    try:
        await env.settled(max_wait=30)
    finally:
        stop.set()
        await miner
    payment = (await fetch_raw(env.store, "SELECT status, tx_hash FROM payment_queue"))[0]
    assert (payment["status"], payment["tx_hash"]) == ("completed", first)
    assert await assert_chain_matches(h, before) == {"completed": 1}


async def test_dropped_txs_are_resent_and_settle_once(fault_env: FaultEnv) -> None:
    """`anvil_dropTransaction` of pooled txs, the head of the line among them (a nonce gap
    holds every later tx back): the broadcaster re-sends them and each payment settles once."""
    env = fault_env
    await env.rpc.call("evm_setAutomine", False)
    await env.rpc.call("evm_setIntervalMining", 0)
    await env.start_worker(batched=False)
    h = env.harness
    before = await snapshot(h, [h.payer(i).address for i in PAYERS])
    ids = await env.buy_wave(orders(8, random.Random(6)))

    async def all_sent() -> bool:
        rows = await fetch_raw(env.store, "SELECT status FROM payment_queue")
        return len(rows) == len(ids) and {r["status"] for r in rows} == {"sent"}

    await wait_for(all_sent, 30, "every payment broadcast")
    rows = await fetch_raw(env.store, "SELECT tx_hash FROM payment_queue ORDER BY nonce")
    dropped = [rows[0]["tx_hash"], rows[3]["tx_hash"], rows[5]["tx_hash"]]
    for tx_hash in dropped:
        await env.rpc.call("anvil_dropTransaction", tx_hash)
        assert await env.rpc.get_transaction(tx_hash) is None
    stop = asyncio.Event()
    miner = asyncio.create_task(_miner(env, GWEI, stop))
    try:
        await env.settled(max_wait=60)
    finally:
        stop.set()
        await miner
    assert await assert_chain_matches(h, before) == {"completed": len(ids)}


async def test_rpc_outage_backs_off_and_logs_it_once(
    fault_env: FaultEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 8's last sentence: while the node is unreachable, every queued payment wakes
    the sender; it used to log "chain unreachable" at each wake-up (151 times in 15 s).
    Now each loop backs off exponentially (cap 30 s) and the outage is logged once when
    it starts and once when it ends; everything settles once the node is back."""
    env = fault_env
    anvil = urlsplit(env.deployment.rpc_url)
    assert anvil.hostname and anvil.port
    proxy = TcpProxy(anvil.hostname, anvil.port, stable_port())
    await proxy.start()
    try:
        await env.start_worker(proxy.url, batched=True)
        h = env.harness
        before = await snapshot(h, [h.payer(i).address for i in PAYERS])
        await proxy.stop()
        caplog.clear()
        caplog.set_level(logging.DEBUG, logger="payfirst")
        rng = random.Random(7)
        ids = []
        for _ in range(12):  # ~6 s of outage, a payment every 0.5 s, each waking the sender
            ids += await env.buy_wave(orders(1, rng))
            await asyncio.sleep(0.5)
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.WARNING and "unreachable" in r.getMessage()
        ]
        attempts = [r for r in caplog.records if "chain unreachable" in r.getMessage()]
        assert len(warnings) == 1, warnings
        # Three loops backing off 0.5, 1, 2, 4 s: a handful of attempts each, not one per
        # wake-up.
        assert len(attempts) <= 15, len(attempts)
        await proxy.start()
        await env.settled(max_wait=60)
        back = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
        assert len(back) == 1, back
    finally:
        await proxy.stop()
    assert await assert_chain_matches(h, before) == {"completed": len(ids)}


async def _has(value: object) -> bool:
    return await value is not None  # type: ignore[misc]


def _fees(raw: str) -> tuple[int, int]:
    from payfirst.pipeline.relayer import tx_fees

    fees = tx_fees(raw)
    return fees.max_fee_per_gas, fees.max_priority_fee_per_gas
