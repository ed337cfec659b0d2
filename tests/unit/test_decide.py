"""The confirmer's decisions (payfirst.pipeline.decide): every outcome from typed facts,
no IO. The rule under test: a payment fails only from positive facts at depth; absent
data (no receipt, no log, no answer) never fails it."""

from __future__ import annotations

import pytest

from payfirst.pipeline.decide import (
    CHAIN_CONFIRMATION_DEPTH,
    UNKNOWN_CHAIN_CONFIRMATION_DEPTH,
    Action,
    MintFacts,
    PaymentFacts,
    SettleReceipt,
    bumped_fee,
    confirmation_depth,
    decide_mint,
    decide_payment,
    decision_block,
    needs_authorization_state,
)

OURS = "0x" + "aa" * 32
THEIRS = "0x" + "bb" * 32
NOW = 1_700_000_000


def facts(
    *,
    receipt: SettleReceipt | None = None,
    relayer_nonce: int = 7,
    tx_nonce: int = 7,
    used: bool | None = None,
    used_by: str | None = None,
    chain_time: int = NOW,
    valid_before: int = NOW + 600,
) -> PaymentFacts:
    return PaymentFacts(
        tx_nonce=tx_nonce,
        relayer_nonce=relayer_nonce,
        receipt=receipt,
        chain_time=chain_time,
        valid_before=valid_before,
        authorization_used=used,
        used_by=used_by,
    )


def receipt(*, success: bool = True, used_here: bool = False, batch: bool = False) -> SettleReceipt:
    return SettleReceipt(tx_hash=OURS, success=success, used_here=used_here, whole_batch=batch)


def test_receipt_at_depth_with_our_log_completes_with_that_tx() -> None:
    f = facts(receipt=receipt(used_here=True), relayer_nonce=8)
    assert not needs_authorization_state(f)
    outcome = decide_payment(f)
    assert (outcome.action, outcome.tx_hash) == (Action.COMPLETE, OURS)


def test_authorization_used_at_depth_by_a_found_tx_completes_with_it() -> None:
    # Our receipt missing (a lagging node) or another submitter: the log decides.
    for r in (None, receipt(success=False), receipt(success=True)):
        f = facts(receipt=r, relayer_nonce=8, used=True, used_by=THEIRS)
        outcome = decide_payment(f)
        assert (outcome.action, outcome.tx_hash) == (Action.COMPLETE, THEIRS)


def test_nonce_consumed_no_receipt_authorization_used_but_no_log_waits() -> None:
    """The lagging-RPC case of issue 8 item 4: never `confirmation_failed`."""
    f = facts(relayer_nonce=8, used=True)
    assert needs_authorization_state(f)
    assert decide_payment(f).action is Action.WAIT


def test_nonce_consumed_no_receipt_authorization_unknown_waits() -> None:
    assert decide_payment(facts(relayer_nonce=8, used=None)).action is Action.WAIT


def test_nonce_consumed_no_receipt_authorization_unused_requeues() -> None:
    assert decide_payment(facts(relayer_nonce=8, used=False)).action is Action.REQUEUE


def test_reverted_direct_call_at_depth_and_authorization_unused_fails() -> None:
    outcome = decide_payment(facts(receipt=receipt(success=False), relayer_nonce=8, used=False))
    assert (outcome.action, outcome.reason) == (Action.FAIL, "transaction reverted")


def test_item_failed_inside_a_batch_and_authorization_unused_fails() -> None:
    r = receipt(success=True, batch=True)
    outcome = decide_payment(facts(receipt=r, relayer_nonce=8, used=False))
    assert outcome.action is Action.FAIL
    assert "inside the batch" in outcome.reason


def test_whole_batch_reverted_and_authorization_unused_requeues() -> None:
    r = receipt(success=False, batch=True)
    assert decide_payment(facts(receipt=r, relayer_nonce=8, used=False)).action is Action.REQUEUE


@pytest.mark.parametrize("used", [True, None])
def test_receipt_without_our_log_never_fails_unless_unused_is_known(used: bool | None) -> None:
    for r in (receipt(success=False), receipt(success=True, batch=True)):
        assert decide_payment(facts(receipt=r, relayer_nonce=8, used=used)).action is Action.WAIT


def test_not_mined_at_depth_waits() -> None:
    f = facts(relayer_nonce=7)
    assert not needs_authorization_state(f)
    assert decide_payment(f).action is Action.WAIT


def test_expired_at_the_decision_block_and_unused_fails() -> None:
    f = facts(chain_time=NOW, valid_before=NOW, used=False)
    assert needs_authorization_state(f)
    outcome = decide_payment(f)
    assert outcome.action is Action.FAIL
    assert "expired" in outcome.reason


@pytest.mark.parametrize("used", [True, None])
def test_expired_but_authorization_used_or_unknown_waits(used: bool | None) -> None:
    assert decide_payment(facts(chain_time=NOW + 1, valid_before=NOW, used=used)).action is (
        Action.WAIT
    )


def test_expiry_is_judged_by_the_decision_blocks_clock_only() -> None:
    # Not yet past validBefore at the decision block: wait, whatever the wall clock says.
    assert decide_payment(facts(chain_time=NOW - 1, valid_before=NOW, used=False)).action is (
        Action.WAIT
    )


def test_mint_decisions() -> None:
    assert decide_mint(MintFacts(5, 6, True)) is Action.COMPLETE
    assert decide_mint(MintFacts(5, 6, False)) is Action.REQUEUE
    assert decide_mint(MintFacts(5, 6, None)) is Action.REQUEUE  # dropped: hasMinted decides
    assert decide_mint(MintFacts(5, 5, None)) is Action.WAIT


def test_confirmation_depth_per_chain_and_setting() -> None:
    assert confirmation_depth(31337, -1) == CHAIN_CONFIRMATION_DEPTH[31337] == 1
    assert confirmation_depth(8453, -1) == confirmation_depth(84532, None) == 60
    assert confirmation_depth(424242, -1) == UNKNOWN_CHAIN_CONFIRMATION_DEPTH
    assert confirmation_depth(8453, 0) == 0
    assert confirmation_depth(31337, 3) == 3
    assert decision_block(100, 3) == 97
    assert decision_block(2, 3) == 0


def test_bumped_fee_is_ten_percent_up_at_least_and_the_market_at_least() -> None:
    assert bumped_fee(100, 0) == 110
    assert bumped_fee(101, 0) == 112  # rounded up: 101 * 1.1 = 111.1
    assert bumped_fee(0, 0) == 1
    assert bumped_fee(100, 500) == 500
    for old in (1, 7, 10**9, 3 * 10**9 + 1):
        assert bumped_fee(old, 0) * 10 >= old * 11
