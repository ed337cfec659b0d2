"""The ledger check's treasury invariant with payouts (payfirst.usecases.ledger_check): a
payout whose tx is mined at the checked block but that the ledger does not show yet is in
flight (the chain already has less); one the ledger shows counts once; a reverted one or
one not mined moved nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast
from uuid import UUID, uuid4

import pytest

from payfirst.domain.payouts import Payout, PayoutStatus, PayoutTrigger
from payfirst.ports.chain import Chain
from payfirst.ports.store import LedgerRecord, Store
from payfirst.usecases.ledger_check import CheckedNetwork, check_ledger
from tests.fakes.chain import FakeChain

CHAIN = 31337
USDC = "0x4000000000000000000000000000000000000004"
TREASURY = "0x3000000000000000000000000000000000000003"
PAYEE = "0x2000000000000000000000000000000000000002"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Books:
    """The Store methods the treasury check reads, in memory."""

    holdings: dict[str, int]
    payouts: list[Payout] = field(default_factory=list)
    history: dict[int, list[str]] = field(default_factory=dict)

    async def ledger_unbalanced(self, limit: int) -> list[tuple[UUID, int]]:
        return []

    async def ledger_records(self, after: UUID | None, limit: int) -> list[LedgerRecord]:
        return []

    async def ledger_holdings(self, holder: str, chain_id: int) -> dict[str, int]:
        return dict(self.holdings)

    async def amounts_in_flight_to(self, pay_to: str, chain_id: int) -> dict[str, int]:
        return {}

    async def treasury_books(
        self, holder: str, chain_id: int
    ) -> tuple[dict[str, int], list[Payout]]:
        return dict(self.holdings), list(self.payouts)

    async def tx_hashes(
        self, relayer: str, nonces: Sequence[int], *, chain_id: int
    ) -> dict[int, list[str]]:
        return {n: self.history[n] for n in nonces if n in self.history}


def _payout(status: PayoutStatus, tx_hash: str, amount: int = 1000, nonce: int = 1) -> Payout:
    return Payout(
        id=uuid4(),
        provider_id=uuid4(),
        asset=USDC,
        chain_id=CHAIN,
        to_address=PAYEE,
        amount=amount,
        status=status,
        trigger=PayoutTrigger.ON_DEMAND,
        created_at=NOW,
        updated_at=NOW,
        relayer=TREASURY,
        tx_nonce=nonce,
        tx_hash=tx_hash,
    )


async def _ok(books: Books, chain: FakeChain, balance: int) -> bool:
    chain.balances_of[(USDC.lower(), TREASURY.lower())] = balance
    network = CheckedNetwork(CHAIN, cast(Chain, chain), TREASURY, (USDC,))
    report = await check_ledger(cast(Store, books), [network])
    (finding,) = report.findings
    assert finding.check == "treasury"
    return report.ok


async def test_a_mined_payout_the_ledger_does_not_show_yet_is_in_flight() -> None:
    chain = FakeChain()
    chain.mine("0xaa", to=USDC)
    books = Books({USDC: 5000}, [_payout(PayoutStatus.SENT, "0xaa")])
    assert await _ok(books, chain, 4000)  # the chain paid, the ledger will
    assert not await _ok(books, chain, 5000)  # the ledger would count it twice


async def test_a_fee_bumped_payout_counts_by_whichever_of_its_txs_was_mined() -> None:
    chain = FakeChain()
    chain.mine("0xbb", to=USDC)  # the replacement was mined, the payout row names 0xaa
    books = Books({USDC: 5000}, [_payout(PayoutStatus.SENT, "0xaa")], {1: ["0xaa", "0xbb"]})
    assert await _ok(books, chain, 4000)


@pytest.mark.parametrize(
    ("status", "mined", "success", "balance"),
    [
        (PayoutStatus.SENT, False, True, 5000),  # not mined: nothing moved yet
        (PayoutStatus.SENT, True, False, 5000),  # reverted: nothing moved
        (PayoutStatus.PROCESSING, False, True, 5000),
        # completed in the ledger (holdings already lower) and mined at the checked block
        (PayoutStatus.COMPLETED, True, True, 5000),
    ],
)
async def test_what_moved_nothing_or_is_in_the_ledger_is_not_in_flight(
    status: PayoutStatus, mined: bool, success: bool, balance: int
) -> None:
    chain = FakeChain()
    if mined:
        chain.mine("0xaa", to=USDC, success=success)
    books = Books({USDC: 5000}, [_payout(status, "0xaa")])
    assert await _ok(books, chain, balance)


async def test_a_payout_completed_while_the_check_ran_counts_once() -> None:
    """The ledger shows it, but its tx is not at the checked block (above it, or not
    canonical): the balance read there still holds its amount."""
    chain = FakeChain()
    books = Books({USDC: 4000}, [_payout(PayoutStatus.COMPLETED, "0xaa")])
    assert await _ok(books, chain, 5000)
