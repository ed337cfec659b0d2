"""The confirmer's decisions, as pure functions of typed chain facts (no IO).

Every fact is read at ONE decision block per confirmer tick: the head minus the
confirmation depth. A receipt counts only if its block is at or below the decision block
and is still canonical there; the relayer's nonce, the authorization's state and the
chain's clock are those of the decision block. What is absent (no receipt, no log) is
never evidence: a payment is failed only from positive facts at depth, and "the
authorization was used but I cannot see by which tx" means wait, never fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    COMPLETE = "complete"  # the payment settled (its mints may be created)
    FAIL = "fail"  # terminal: confirmation_failed, supply released
    REQUEUE = "requeue"  # back to pending, to be signed anew
    WAIT = "wait"  # nothing decidable yet


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    reason: str = ""
    tx_hash: str | None = None  # the settling tx (COMPLETE)


@dataclass(frozen=True, slots=True)
class SettleReceipt:
    """The receipt, canonical and at depth, of a tx payfirst signed for the payment's
    relayer nonce (the first one, or a fee-bumped replacement)."""

    tx_hash: str
    success: bool  # status 1
    used_here: bool  # it holds the asset's AuthorizationUsed(payer, nonce) log
    whole_batch: bool  # a settle batch tx (not a direct call of the asset)


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    tx_nonce: int  # the relayer nonce the payment's tx(s) carry
    relayer_nonce: int  # the relayer's transaction count at the decision block
    receipt: SettleReceipt | None
    chain_time: int  # the decision block's timestamp
    valid_before: int  # the authorization's validBefore
    authorization_used: bool | None = None  # authorizationState at the decision block
    used_by: str | None = None  # a tx whose AuthorizationUsed log is at or below it


def needs_authorization_state(facts: PaymentFacts) -> bool:
    """Whether `decide_payment` needs the authorization's state (and a log lookup)."""
    if facts.receipt is not None:
        return not facts.receipt.used_here
    return facts.relayer_nonce > facts.tx_nonce or facts.chain_time >= facts.valid_before


def decide_payment(facts: PaymentFacts) -> Outcome:
    """What to do with a `sent` payment, given the facts at the decision block."""
    receipt = facts.receipt
    if receipt is not None and receipt.used_here:
        return Outcome(Action.COMPLETE, "settled by its tx", receipt.tx_hash)
    if facts.used_by is not None:
        # The authorization's log at depth: payfirst's own tx whose receipt the node did
        # not give, or anyone else's (an authorization moves the money to payTo whoever
        # submits it).
        return Outcome(Action.COMPLETE, "authorization used at depth", facts.used_by)
    used = facts.authorization_used
    if receipt is not None:
        if used is None:
            return Outcome(Action.WAIT, "authorization state unknown")
        if used:
            return Outcome(Action.WAIT, "authorization used, its tx not found yet")
        if receipt.whole_batch and not receipt.success:
            # The whole settle batch reverted (out of gas, say): nothing was used.
            return Outcome(Action.REQUEUE, f"settle batch {receipt.tx_hash} reverted; re-queued")
        if receipt.success:
            return Outcome(Action.FAIL, "authorization failed inside the batch transaction")
        return Outcome(Action.FAIL, "transaction reverted")
    if facts.relayer_nonce > facts.tx_nonce:
        # The nonce is consumed at depth and no tx payfirst signed for it has a receipt.
        if used is None:
            return Outcome(Action.WAIT, "authorization state unknown")
        if used:
            return Outcome(Action.WAIT, "authorization used, its tx not found yet")
        return Outcome(Action.REQUEUE, "tx dropped (its nonce was consumed); re-queued")
    if facts.chain_time >= facts.valid_before and used is False:
        # No block from the decision block on can use it any more.
        return Outcome(Action.FAIL, "not mined before the authorization expired")
    return Outcome(Action.WAIT, "not mined at depth yet")


@dataclass(frozen=True, slots=True)
class MintFacts:
    tx_nonce: int
    relayer_nonce: int  # at the decision block
    receipt_success: bool | None  # the receipt at depth of any tx signed for the nonce


def decide_mint(facts: MintFacts) -> Action:
    """COMPLETE (minted by the tx), REQUEUE (reverted or dropped: `hasMinted` at the
    decision block then decides each item), or WAIT."""
    if facts.receipt_success is True:
        return Action.COMPLETE
    if facts.receipt_success is False or facts.relayer_nonce > facts.tx_nonce:
        return Action.REQUEUE
    return Action.WAIT


@dataclass(frozen=True, slots=True)
class PayoutFacts:
    """The counted receipts (canonical, at depth) of the txs payfirst signed for a payout's
    nonce: at most one can be mined."""

    paid_by: str | None  # a successful receipt holding the asset's Transfer(treasury, to, amount)
    reverted_by: str | None  # a receipt with status 0
    mined_without_transfer: str | None = None  # status 1 but no such Transfer log


def decide_payout(facts: PayoutFacts) -> Outcome:
    """COMPLETE (paid), FAIL (reverted: nothing moved) or WAIT. Nothing else is evidence:
    no authorization stops a payout from being paid twice, so a missing tx (not mined, a
    receipt a node does not give, a nonce consumed without a receipt of ours) is waited
    for, never signed anew."""
    if facts.paid_by is not None:
        return Outcome(Action.COMPLETE, "paid by its tx", facts.paid_by)
    if facts.reverted_by is not None:
        return Outcome(Action.FAIL, f"payout tx {facts.reverted_by} reverted")
    if facts.mined_without_transfer is not None:
        return Outcome(Action.WAIT, f"tx {facts.mined_without_transfer} mined without its transfer")
    return Outcome(Action.WAIT, "not mined at depth yet")


# Confirmation depth: blocks that must be built on a receipt's block before payfirst acts
# on it (decision block = head - depth). Chosen per chain id unless the
# `confirmation_depth` setting (>= 0) overrides it.
CHAIN_CONFIRMATION_DEPTH: dict[int, int] = {
    31337: 1,  # anvil / hardhat dev chains (the dev chain mines a block every 0.5 s)
    1: 64,  # Ethereum: two epochs, the finalized checkpoint
    11155111: 64,  # Sepolia
    # Base / Base Sepolia (2 s blocks): 60 blocks ~ 2 min, when the batch holding the block
    # is posted to Ethereum ("effectively 0% probability of a reorg", docs.base.org,
    # Transaction Finality). L1 batch finality is ~20 min (~600 blocks).
    8453: 60,
    84532: 60,
}
UNKNOWN_CHAIN_CONFIRMATION_DEPTH = 64


def confirmation_depth(chain_id: int, setting: int | None) -> int:
    """The depth for this chain: the setting when >= 0, else the chain's default."""
    if setting is not None and setting >= 0:
        return setting
    return CHAIN_CONFIRMATION_DEPTH.get(chain_id, UNKNOWN_CHAIN_CONFIRMATION_DEPTH)


def decision_block(head: int, depth: int) -> int:
    return max(0, head - depth)


def bumped_fee(old: int, market: int) -> int:
    """A replacement's fee: at least +10% over the old one (EIP-1559 replacement rule,
    geth's and anvil's default price bump), rounded up, and at least the market's."""
    return max(old + max(1, (old + 9) // 10), market)
