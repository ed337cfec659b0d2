"""The ledger check's decisions (payfirst.usecases.ledger_check) on a fake chain and an
in-memory ledger: what counts as money moved on chain, and when the treasury agrees."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from payfirst.domain.ledger import Entry, LedgerPayment, entries_for_payment, reversal_of
from payfirst.domain.statuses import PaymentStatus
from payfirst.ports.chain import AuthorizationRef, Chain, Log
from payfirst.ports.store import LedgerRecord, Store
from payfirst.usecases.ledger_check import (
    TRANSFER_TOPIC,
    CheckedNetwork,
    LedgerReport,
    check_ledger,
)
from tests.fakes.chain import FakeChain

CHAIN = 31337
USDC = "0x4000000000000000000000000000000000000004"
SHOP = "0x2000000000000000000000000000000000000002"
TREASURY = "0x3000000000000000000000000000000000000003"
PROVIDER = UUID("7b5a3e8c-0000-4000-8000-000000000001")


@dataclass
class Ledger:
    """The Store methods the check reads, in memory."""

    records: list[LedgerRecord] = field(default_factory=list)
    holdings: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    unbalanced: list[tuple[UUID, int]] = field(default_factory=list)

    async def ledger_unbalanced(self, limit: int) -> list[tuple[UUID, int]]:
        return self.unbalanced[:limit]

    async def ledger_records(self, after: UUID | None, limit: int) -> list[LedgerRecord]:
        ordered = sorted(self.records, key=lambda r: r.payment_id)
        return [r for r in ordered if after is None or r.payment_id > after][:limit]

    async def ledger_holdings(self, holder: str, chain_id: int) -> dict[str, int]:
        return dict(self.holdings)

    async def amounts_in_flight_to(self, pay_to: str, chain_id: int) -> dict[str, int]:
        return dict(self.in_flight)

    async def treasury_books(self, holder: str, chain_id: int) -> tuple[dict[str, int], list[Any]]:
        return dict(self.holdings), []  # no payouts in these cases


def _topic(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


def _transfer(sender: str, receiver: str, value: int, block: int, tx_hash: str) -> Log:
    return Log(USDC, (TRANSFER_TOPIC, _topic(sender), _topic(receiver)), hex(value), block, tx_hash)


def _record(
    payment: LedgerPayment, tx_hash: str, *, reversed_: bool = False, nonce: str | None = None
) -> LedgerRecord:
    entries = tuple(entries_for_payment(payment))
    return LedgerRecord(
        payment_id=uuid4(),
        status=PaymentStatus.COMPLETED,
        payment=payment,
        tx_hash=tx_hash,
        auth_nonce=nonce or "0x" + uuid4().hex * 2,
        recorded=entries,
        has_payment_transaction=True,
        reversal=tuple(reversal_of(entries)) if reversed_ else None,
    )


def _payer() -> str:
    return "0x" + uuid4().hex[:8].rjust(40, "1")


def _settle(chain: FakeChain, tx_hash: str, records: list[LedgerRecord], transfers: int) -> None:
    """`tx_hash` mined: it uses every record's authorization, with the Transfer logs of the
    first `transfers` of them."""
    refs = [AuthorizationRef(USDC, r.payment.payer, r.auth_nonce) for r in records]
    receipt = chain.mine(tx_hash, to=USDC, uses=refs)
    logs = [
        _transfer(
            r.payment.payer, r.payment.pay_to, r.payment.amount, receipt.block_number, tx_hash
        )
        for r in records[:transfers]
    ]
    chain.keep_receipt(replace(receipt, logs=receipt.logs + tuple(logs)))


async def _check(ledger: Ledger, chain: FakeChain, treasury: str | None = None) -> LedgerReport:
    network = CheckedNetwork(CHAIN, cast(Chain, chain), treasury, (USDC,))
    return await check_ledger(cast(Store, ledger), [network], page_size=2)


def _plain(amount: int = 1000, payer: str | None = None) -> LedgerPayment:
    return LedgerPayment(payer or _payer(), SHOP, USDC, CHAIN, amount)


async def test_every_settled_payment_passes_across_pages() -> None:
    chain = FakeChain()
    records = [_record(_plain(), "0xaa") for _ in range(3)] + [_record(_plain(), "0xbb")]
    _settle(chain, "0xaa", records[:3], transfers=3)
    _settle(chain, "0xbb", records[3:], transfers=1)
    chain.mine_blocks(2)
    report = await _check(Ledger(records), chain)
    assert report.ok, report.findings
    assert report.payments_checked == 4


async def test_one_transfer_backs_one_payment_only() -> None:
    """Two identical payments (same payer, payee, amount) in one tx with one Transfer."""
    chain = FakeChain()
    payer = _payer()
    twins = [_record(_plain(payer=payer), "0xaa") for _ in range(2)]
    _settle(chain, "0xaa", twins, transfers=1)
    report = await _check(Ledger(twins), chain)
    assert len(report.violations) == 1
    assert "no Transfer" in report.violations[0].detail


@pytest.mark.parametrize("how", ["missing", "reverted", "reorged", "other_authorization"])
async def test_a_payment_not_on_chain_is_a_violation(how: str) -> None:
    chain = FakeChain()
    record = _record(_plain(), "0xaa")
    if how == "reverted":
        chain.mine("0xaa", to=USDC, success=False)
    elif how == "other_authorization":
        _settle(chain, "0xaa", [_record(record.payment, "0xaa")], transfers=1)
    elif how == "reorged":
        _settle(chain, "0xaa", [record], transfers=1)
        kept = (await chain.get_receipts(["0xaa"]))[0]
        assert kept is not None
        chain.reorg(kept.block_number)
        chain.keep_receipt(kept)  # a lagging node still answers it
    report = await _check(Ledger([record]), chain)
    (violation,) = report.violations
    assert (violation.check, violation.subject) == ("on_chain", str(record.payment_id))
    assert "not on chain" in violation.detail


async def test_a_reversed_payment_must_not_be_on_chain() -> None:
    chain = FakeChain()
    gone = _record(_plain(), "0xaa", reversed_=True)
    settled = _record(_plain(), "0xbb", reversed_=True)
    _settle(chain, "0xbb", [settled], transfers=1)
    report = await _check(Ledger([gone, settled]), chain)
    (violation,) = report.violations
    assert violation.subject == str(settled.payment_id)
    assert "reversed in the ledger, but settled on chain" in violation.detail
    assert any(f.subject == str(gone.payment_id) and not f.violation for f in report.findings)


async def test_entries_other_than_the_rules_are_a_violation() -> None:
    chain = FakeChain()
    record = _record(_plain(), "0xaa")
    _settle(chain, "0xaa", [record], transfers=1)
    (debit, credit) = record.recorded
    skimmed = (Entry(debit.account, debit.amount), Entry(credit.account, credit.amount - 1))
    report = await _check(Ledger([replace(record, recorded=skimmed)]), chain)
    (violation,) = report.violations
    assert violation.check == "recorded" and "are not the payment's" in violation.detail


async def test_a_completed_payment_without_its_transaction_is_a_violation() -> None:
    record = replace(_record(_plain(), "0xaa"), has_payment_transaction=False, recorded=())
    report = await _check(Ledger([record]), FakeChain())
    (violation,) = report.violations
    assert violation.detail == "completed without a ledger transaction"


async def test_a_collected_payment_must_have_paid_the_treasury() -> None:
    chain = FakeChain()
    collected = LedgerPayment(_payer(), SHOP, USDC, CHAIN, 1000, PROVIDER, 100)
    record = _record(collected, "0xaa")
    _settle(chain, "0xaa", [record], transfers=1)
    chain.balances_of[(USDC.lower(), TREASURY.lower())] = 0
    report = await _check(Ledger([record]), chain, TREASURY)
    assert [v.detail for v in report.violations if v.check == "recorded"] == [
        f"collected for a provider but paid to {SHOP}, not the treasury"
    ]


@pytest.mark.parametrize(
    ("balance", "in_flight", "ok"),
    [(5000, 0, True), (5600, 1000, True), (6001, 1000, False), (4999, 1000, False)],
)
async def test_the_treasury_holds_what_the_ledger_says(
    balance: int, in_flight: int, ok: bool
) -> None:
    chain = FakeChain()
    chain.balances_of[(USDC.lower(), TREASURY.lower())] = balance
    ledger = Ledger(holdings={USDC: 5000}, in_flight={USDC: in_flight} if in_flight else {})
    report = await _check(ledger, chain, TREASURY)
    assert report.ok is ok, report.findings
    (finding,) = report.findings
    assert finding.check == "treasury"


async def test_an_unbalanced_transaction_is_a_violation() -> None:
    transaction = uuid4()
    report = await _check(Ledger(unbalanced=[(transaction, 7)]), FakeChain())
    (violation,) = report.violations
    assert (violation.check, violation.subject) == ("balanced", str(transaction))
