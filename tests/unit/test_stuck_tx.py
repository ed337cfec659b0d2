"""confirmation_timeout_s: the head-of-line tx unmined that long is stuck and replaced with
+10% fees even when it offers the market's (below the market, `fee_bump_after_s` applies
first); never above max_fee_per_gas_gwei; never a failure (nothing here fails a payment)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from eth_account import Account

from payfirst.domain.models import SignedTx
from payfirst.pipeline import broadcaster as broadcaster_module
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.relayer import Relayer, fees_for, tx_fees
from payfirst.ports.store import UnconfirmedTx

GWEI = 10**9
BASE_FEE = GWEI
AFTER_S = 30  # fee_bump_after_s
STUCK_S = 300  # confirmation_timeout_s
CAP = 500 * GWEI


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeRpc:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def get_transaction_count(self, address: str, block: str) -> int:
        return 7  # the chain expects nonce 7 next: the head of line

    async def latest_base_fee(self) -> int:
        return BASE_FEE

    async def send_raw_transaction(self, raw: str) -> str:
        self.sent.append(raw)
        return "0x"


class FakeStore:
    def __init__(self, head: SignedTx) -> None:
        self.head = head
        self.replaced: list[tuple[str, str]] = []

    async def unconfirmed_txs(
        self, relayer: str, from_nonce: int, *, chain_id: int | None = None
    ) -> list[UnconfirmedTx]:
        return [UnconfirmedTx(nonce=7, tx_hash=self.head.hash, raw_tx=self.head.raw, sent=True)]

    async def replace_tx(
        self, relayer: str, nonce: int, old_hash: str, new: SignedTx, *, chain_id: int | None = None
    ) -> bool:
        self.replaced.append((old_hash, new.hash))
        self.head = new
        return True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(broadcaster_module, "time", clock)
    return clock


def _broadcaster(offered_base_fee: int) -> tuple[Broadcaster, FakeStore, FakeRpc]:
    relayer = Relayer.from_key(Account.create().key.hex(), 31337)
    tx = relayer.sign_call(
        "0x" + "11" * 20, "0x", nonce=7, gas=100_000, fees=fees_for(offered_base_fee)
    )
    store, rpc = FakeStore(tx), FakeRpc()
    return Broadcaster(cast(Any, store), cast(Any, rpc), relayer), store, rpc


async def test_a_tx_at_the_market_is_replaced_once_stuck_and_again_each_timeout(
    clock: Clock,
) -> None:
    broadcaster, store, rpc = _broadcaster(BASE_FEE)  # offers exactly the market's fees
    first = store.head
    assert await broadcaster.bump_stuck(AFTER_S, CAP, stuck_after_s=STUCK_S) is None  # first seen
    clock.now += AFTER_S + 1
    assert await broadcaster.bump_stuck(AFTER_S, CAP, stuck_after_s=STUCK_S) is None  # at market
    clock.now += STUCK_S - AFTER_S
    replacement = await broadcaster.bump_stuck(AFTER_S, CAP, stuck_after_s=STUCK_S)
    assert replacement is not None
    assert store.replaced == [(first.hash, replacement)]
    assert rpc.sent == [store.head.raw]  # persisted, then broadcast
    old, new = tx_fees(first.raw), tx_fees(store.head.raw)
    assert new.max_fee_per_gas * 10 >= old.max_fee_per_gas * 11
    assert new.max_priority_fee_per_gas * 10 >= old.max_priority_fee_per_gas * 11
    # The replacement's own clock starts now: stuck again only after another timeout.
    clock.now += STUCK_S - 1
    assert await broadcaster.bump_stuck(AFTER_S, CAP, stuck_after_s=STUCK_S) is None
    clock.now += 1
    assert await broadcaster.bump_stuck(AFTER_S, CAP, stuck_after_s=STUCK_S) is not None
    assert len(store.replaced) == 2


async def test_without_a_timeout_a_tx_at_the_market_is_only_re_sent(clock: Clock) -> None:
    broadcaster, store, _ = _broadcaster(BASE_FEE)
    assert await broadcaster.bump_stuck(AFTER_S, CAP) is None
    clock.now += 10 * STUCK_S
    assert await broadcaster.bump_stuck(AFTER_S, CAP) is None
    assert store.replaced == []


async def test_below_the_market_fee_bump_after_s_comes_first(clock: Clock) -> None:
    broadcaster, store, _ = _broadcaster(BASE_FEE // 4)
    assert await broadcaster.bump_stuck(AFTER_S, CAP, stuck_after_s=STUCK_S) is None
    clock.now += AFTER_S
    assert await broadcaster.bump_stuck(AFTER_S, CAP, stuck_after_s=STUCK_S) is not None
    assert tx_fees(store.head.raw).max_fee_per_gas >= fees_for(BASE_FEE).max_fee_per_gas


async def test_a_stuck_tx_is_never_bumped_above_the_cap(clock: Clock) -> None:
    broadcaster, store, rpc = _broadcaster(BASE_FEE)
    cap = fees_for(BASE_FEE).max_fee_per_gas  # no room for +10%
    assert await broadcaster.bump_stuck(AFTER_S, cap, stuck_after_s=STUCK_S) is None
    clock.now += STUCK_S
    assert await broadcaster.bump_stuck(AFTER_S, cap, stuck_after_s=STUCK_S) is None
    assert store.replaced == [] and rpc.sent == []
