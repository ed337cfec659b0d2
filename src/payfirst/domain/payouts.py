"""Payouts: what the treasury holds for a provider, paid out on chain to its payout address.

A payout is an ERC-20 `transfer(to, amount)` from the network's treasury (one of its
relayer keys), signed and persisted before it is broadcast, like every payfirst tx. It is
`completed` — and only then written to the ledger (provider -amount, the payee's external
account +amount) — when its receipt is at the confirmation depth with the asset's
Transfer(treasury, to, amount) log; a reverted tx is `failed` and its amount is available
again. Nothing else decides a payout: no authorization protects it from being paid twice,
so a tx that is missing is waited for, never signed anew.

A provider's money for one asset on one chain:
- balance: its ledger account (credited at each completed payment, debited at each
  completed payout);
- in payout: its payouts not yet decided (pending, processing, sent);
- available: balance - in payout; a new payout never exceeds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final
from uuid import UUID

from payfirst.domain.ledger import Account, AccountKind, Entry

#: The shortest and longest schedule a provider may set (seconds between payouts).
MIN_PAYOUT_INTERVAL_S: Final = 60
MAX_PAYOUT_INTERVAL_S: Final = 366 * 86_400


class PayoutStatus(StrEnum):
    PENDING = "pending"  # created, no tx yet
    PROCESSING = "processing"  # its tx signed and persisted, not yet broadcast
    SENT = "sent"  # broadcast; the confirmer decides it
    COMPLETED = "completed"  # paid at depth, in the ledger
    FAILED = "failed"  # its tx reverted at depth: nothing moved

    @property
    def in_flight(self) -> bool:
        """Counted against the provider's available balance."""
        return self in (PayoutStatus.PENDING, PayoutStatus.PROCESSING, PayoutStatus.SENT)


class PayoutTrigger(StrEnum):
    ON_DEMAND = "on_demand"  # asked for (API or CLI)
    THRESHOLD = "threshold"  # available reached the provider's payout_threshold
    SCHEDULE = "schedule"  # the last payout is older than the provider's payout_interval_s


@dataclass(frozen=True, slots=True)
class Payout:
    id: UUID
    provider_id: UUID
    asset: str  # EIP-55
    chain_id: int
    to_address: str  # EIP-55: the provider's payout address when it was created
    amount: int
    status: PayoutStatus
    trigger: PayoutTrigger
    created_at: datetime
    updated_at: datetime
    relayer: str | None = None  # the treasury key that signed its tx
    tx_nonce: int | None = None
    tx_hash: str | None = None
    raw_tx: str | None = None
    error: str | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    """A payout to create: `amount` None means all that is available."""

    provider_id: UUID
    asset: str
    chain_id: int
    amount: int | None
    trigger: PayoutTrigger


@dataclass(frozen=True, slots=True)
class PayoutTerms:
    """A provider's payout settings (its account's columns)."""

    payout_address: str | None = None
    payout_threshold: int | None = None  # pay out when available reaches it
    payout_interval_s: int | None = None  # pay out when the last payout is older


@dataclass(frozen=True, slots=True)
class Balance:
    """A provider's money for one asset on one chain, in atomic units."""

    asset: str
    chain_id: int
    balance: int  # its ledger account
    in_payout: int  # payouts pending, processing or sent
    paid_out: int  # completed payouts
    pending: int  # its share of payments accepted but not completed

    @property
    def available(self) -> int:
        return max(0, self.balance - self.in_payout)


@dataclass(frozen=True, slots=True)
class PayoutCandidate:
    """A provider with automatic payouts and money available for one asset on a chain."""

    provider_id: UUID
    asset: str
    available: int
    threshold: int | None
    interval_s: int | None
    since_last_s: float  # since its last payout that did not fail (or its account's creation)

    def due(self) -> PayoutTrigger | None:
        """Which of its terms calls for a payout of what is available now, if any."""
        if self.available <= 0:
            return None
        if self.threshold is not None and self.available >= self.threshold:
            return PayoutTrigger.THRESHOLD
        if self.interval_s is not None and self.since_last_s >= self.interval_s:
            return PayoutTrigger.SCHEDULE
        return None


@dataclass(frozen=True, slots=True)
class TermsChange:
    """The account fields a PATCH sets (a field not given is left as it is; None clears)."""

    payout_address: str | None = None
    payout_threshold: int | None = None
    payout_interval_s: int | None = None
    fee_bps: int | None = None
    given: frozenset[str] = frozenset()


def entries_for_payout(payout: Payout) -> list[Entry]:
    """The balanced ledger entries of a completed payout: the provider's account pays the
    payee's external account."""

    def account(kind: AccountKind, owner: str) -> Account:
        return Account(kind, owner, payout.asset, payout.chain_id)

    return [
        Entry(account(AccountKind.PROVIDER, str(payout.provider_id)), -payout.amount),
        Entry(account(AccountKind.EXTERNAL, payout.to_address), payout.amount),
    ]
