"""The payout rules that need no IO: what the confirmer decides from a payout's receipts,
which receipt pays it, when a provider's terms call for an automatic payout, its ledger
entries, and what a payout request may hold."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.ledger import AccountKind, total
from payfirst.domain.payouts import (
    Payout,
    PayoutCandidate,
    PayoutStatus,
    PayoutTrigger,
    entries_for_payout,
)
from payfirst.pipeline.decide import Action, PayoutFacts, decide_payout
from payfirst.pipeline.payouts import TRANSFER_TOPIC, pays, transfer_call
from payfirst.ports.chain import Log, Receipt
from payfirst.usecases.payouts import check_amount, check_interval

ASSET = "0x4000000000000000000000000000000000000004"
TREASURY = "0x3000000000000000000000000000000000000003"
PAYEE = "0x2000000000000000000000000000000000000002"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _payout(amount: int = 1000) -> Payout:
    return Payout(
        id=uuid4(),
        provider_id=uuid4(),
        asset=ASSET,
        chain_id=31337,
        to_address=PAYEE,
        amount=amount,
        status=PayoutStatus.SENT,
        trigger=PayoutTrigger.ON_DEMAND,
        created_at=NOW,
        updated_at=NOW,
        relayer=TREASURY,
        tx_nonce=3,
        tx_hash="0xaa",
    )


def _topic(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


def _receipt(*, success: bool = True, logs: tuple[Log, ...] = ()) -> Receipt:
    return Receipt("0xaa", 10, "0xbb", success, ASSET, logs)


def _transfer(sender: str, receiver: str, value: int, address: str = ASSET) -> Log:
    return Log(address, (TRANSFER_TOPIC, _topic(sender), _topic(receiver)), hex(value), 10, "0xaa")


def test_only_a_receipt_that_pays_completes_and_only_a_revert_fails() -> None:
    assert decide_payout(PayoutFacts("0xaa", None)).action is Action.COMPLETE
    assert decide_payout(PayoutFacts("0xaa", None)).tx_hash == "0xaa"
    assert decide_payout(PayoutFacts(None, "0xaa")).action is Action.FAIL
    # Absent data is never evidence: not mined, a receipt a node does not give, a nonce
    # consumed without a receipt of ours, a success without the transfer: all wait.
    assert decide_payout(PayoutFacts(None, None)).action is Action.WAIT
    odd = decide_payout(PayoutFacts(None, None, "0xaa"))
    assert odd.action is Action.WAIT and "without its transfer" in odd.reason


def test_a_receipt_pays_a_payout_with_the_assets_exact_transfer_only() -> None:
    payout = _payout()
    assert pays(_receipt(logs=(_transfer(TREASURY, PAYEE, 1000),)), payout, TREASURY)
    for wrong in (
        _transfer(TREASURY, PAYEE, 999),
        _transfer(PAYEE, TREASURY, 1000),
        _transfer(TREASURY, TREASURY, 1000),
        _transfer(TREASURY, PAYEE, 1000, address=PAYEE),
    ):
        assert not pays(_receipt(logs=(wrong,)), payout, TREASURY)
    reverted = _receipt(success=False, logs=(_transfer(TREASURY, PAYEE, 1000),))
    assert not pays(reverted, payout, TREASURY)


def test_the_transfer_calldata() -> None:
    data = transfer_call(PAYEE, 1000)
    assert data.startswith("0xa9059cbb")  # transfer(address,uint256)
    assert data.endswith(hex(1000)[2:].rjust(64, "0"))


@pytest.mark.parametrize(
    ("available", "threshold", "interval", "since", "due"),
    [
        (100, 100, None, 0.0, PayoutTrigger.THRESHOLD),
        (99, 100, None, 1e9, None),
        (99, 100, 60, 61.0, PayoutTrigger.SCHEDULE),
        (99, None, 60, 59.0, None),
        (0, 1, 60, 1e9, None),
    ],
)
def test_automatic_payouts_are_due_by_threshold_then_schedule(
    available: int,
    threshold: int | None,
    interval: int | None,
    since: float,
    due: PayoutTrigger | None,
) -> None:
    candidate = PayoutCandidate(uuid4(), ASSET, available, threshold, interval, since)
    assert candidate.due() is due


def test_a_payout_moves_money_from_the_provider_to_the_payee() -> None:
    payout = _payout(1234)
    entries = entries_for_payout(payout)
    assert [(e.account.kind, e.account.owner, e.amount) for e in entries] == [
        (AccountKind.PROVIDER, str(payout.provider_id), -1234),
        (AccountKind.EXTERNAL, PAYEE, 1234),
    ]
    assert total(entries) == 0


def test_what_a_payout_request_may_hold() -> None:
    assert check_amount(None) is None
    assert check_amount("25000") == 25_000
    assert check_amount(7) == 7
    for bad in ("0", "-1", "1.5", 0, -3, True, 1.5, "1e6", "", "9" * 79, 2**256):
        with pytest.raises(PaymentRejected):
            check_amount(bad)
    assert check_interval(60) == 60
    for bad_interval in (59, 10**9, "60", True):
        with pytest.raises(PaymentRejected):
            check_interval(bad_interval)
