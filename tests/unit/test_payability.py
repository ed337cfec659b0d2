"""Who can pay, decided before a tx is signed (pipeline/payability.py): no IO."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from payfirst.domain.models import Authorization, Payment
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.pipeline.payability import sort_payable

ASSET = "0x" + "aa" * 20
PAYER = "0x" + "bb" * 20
OTHER = "0x" + "cc" * 20
HOLDER = (ASSET, PAYER)


def pending(amount: int, payer: str = PAYER) -> Payment:
    return Payment(
        id=uuid4(),
        payment_type=PaymentType.MINT,
        payer=payer,
        amount=amount,
        payment_asset=ASSET,
        pay_to="0x" + "dd" * 20,
        quantity=1,
        authorization=Authorization(
            from_=payer,
            to="0x" + "dd" * 20,
            value=amount,
            valid_after=0,
            valid_before=2**40,
            nonce="0x" + uuid4().hex * 2,
            signature="0x" + "11" * 65,
        ),
        metadata={},
        status=PaymentStatus.PENDING,
        tx_hash=None,
        tx_nonce=None,
        relayer=None,
        raw_tx=None,
        error=None,
        created_at=datetime.now(UTC),
        processed_at=None,
        result=None,
    )


def test_the_balance_is_spent_in_queue_order() -> None:
    a, b, c = pending(60), pending(50), pending(40)
    unused = {p.id: False for p in (a, b, c)}
    decided = sort_payable([a, b, c], {HOLDER: 100}, unused, {})
    assert decided.payable == [a.id, c.id]
    assert decided.unpayable == [(b, 40)]
    assert decided.deferred == []


def test_payments_in_flight_defer_what_they_may_consume_but_fail_nothing() -> None:
    a, b, c = pending(40), pending(60), pending(70)
    unused = {p.id: False for p in (a, b, c)}
    decided = sort_payable([a, b, c], {HOLDER: 100}, unused, {HOLDER: 50})
    assert decided.payable == [a.id]  # 100 - 50 in flight covers 40
    assert decided.deferred == [b.id]  # the 60 left cover it only if the 50 never leave
    assert decided.unpayable == [(c, 60)]  # 60 cannot cover 70 whatever happens


def test_an_authorization_used_on_chain_is_sent_to_be_completed_not_failed() -> None:
    """Someone submitted the buyer's authorization first: the money moved, the balance is
    gone, and the payment must end completed (by that tx), never insufficient_funds."""
    a = pending(100)
    decided = sort_payable([a], {HOLDER: 0}, {a.id: True}, {})
    assert decided.payable == [a.id]
    assert decided.unpayable == []


def test_unknown_facts_decide_nothing() -> None:
    a, b = pending(10), pending(10, OTHER)
    decided = sort_payable([a, b], {HOLDER: None, (ASSET, OTHER): 0}, {a.id: False, b.id: None}, {})
    assert (decided.payable, decided.deferred, decided.unpayable) == ([], [], [])
