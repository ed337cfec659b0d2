"""The double-entry ledger's rules: which entries a completed payment writes, and how a
payment is reversed. Pure: the store writes what these functions return.

Amounts are signed integers in the asset's smallest unit: money leaving an account is
negative, money arriving positive, and the entries of one ledger transaction sum to zero.

A plain payment moves `amount` from the payer's external account to the payee's. A payment
collected by the platform (accepted with a provider: its payTo is the network's treasury)
is split at completion: the provider's account gets `amount - fee`, the platform's fee
account `fee`, where fee = amount * fee_bps // 10000 — rounded down, so a rounding unit
always goes to the provider, and the fee never exceeds the amount. Zero entries are left
out (the database refuses them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

#: 100 % in basis points.
MAX_FEE_BPS = 10_000
#: The owner of the platform's fee account.
PLATFORM = "platform"


class AccountKind(StrEnum):
    EXTERNAL = "external"  # an on-chain address (owner: EIP-55)
    PROVIDER = "provider"  # what the treasury holds for a provider (owner: its id)
    FEES = "fees"  # the platform's fees (owner: PLATFORM)


class TransactionKind(StrEnum):
    PAYMENT = "payment"
    REVERSAL = "reversal"
    PAYOUT = "payout"


@dataclass(frozen=True, slots=True)
class Account:
    kind: AccountKind
    owner: str
    asset: str
    chain_id: int


@dataclass(frozen=True, slots=True)
class Entry:
    account: Account
    amount: int  # negative: leaves the account; positive: arrives


@dataclass(frozen=True, slots=True)
class LedgerPayment:
    """What the ledger needs of a completed payment."""

    payer: str
    pay_to: str
    asset: str
    chain_id: int
    amount: int
    provider_id: UUID | None = None  # set: collected by the platform for this provider
    fee_bps: int | None = None  # fixed when the payment was accepted


def fee_of(amount: int, fee_bps: int) -> int:
    """The platform's fee on `amount`, rounded down (in the provider's favour)."""
    if not 0 <= fee_bps <= MAX_FEE_BPS:
        raise ValueError(f"a fee is 0 to {MAX_FEE_BPS} basis points, got {fee_bps}")
    if amount < 0:
        raise ValueError(f"an amount is not negative, got {amount}")
    return amount * fee_bps // MAX_FEE_BPS


def entries_for_payment(payment: LedgerPayment) -> list[Entry]:
    """The balanced entries of a completed payment (none for a zero amount)."""

    def account(kind: AccountKind, owner: str) -> Account:
        return Account(kind, owner, payment.asset, payment.chain_id)

    amount = payment.amount
    if payment.provider_id is None:
        credits = [(account(AccountKind.EXTERNAL, payment.pay_to), amount)]
    else:
        fee = fee_of(amount, payment.fee_bps or 0)
        credits = [
            (account(AccountKind.PROVIDER, str(payment.provider_id)), amount - fee),
            (account(AccountKind.FEES, PLATFORM), fee),
        ]
    entries = [Entry(account(AccountKind.EXTERNAL, payment.payer), -amount)]
    entries += [Entry(acc, value) for acc, value in credits]
    return [e for e in entries if e.amount != 0]


def reversal_of(entries: Sequence[Entry]) -> list[Entry]:
    """The entries that undo `entries`: each negated, in the same order."""
    return [Entry(e.account, -e.amount) for e in entries]


def total(entries: Iterable[Entry]) -> int:
    """The sum of the entries' amounts (zero for a balanced transaction)."""
    return sum(e.amount for e in entries)
