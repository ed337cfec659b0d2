"""Which pending payments their payers can pay, decided before any tx is signed, so a payer
who cannot pay never costs the relayer gas (a pure function of chain facts, unit-tested).

Facts, all read at ONE block: each payer's balance of the asset and whether each
authorization is already used. Plus what the database knows: the payer's payments signed
but not yet decided (their money may still leave the balance)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from payfirst.domain.models import Payment

Holder = tuple[str, str]  # (asset, payer)


@dataclass(slots=True)
class Payability:
    payable: list[UUID] = field(default_factory=list)
    # The balance covers it only if the payer's payments in flight failed: ask next tick.
    deferred: list[UUID] = field(default_factory=list)
    # (payment, balance left for it): the balance does not cover it even before the
    # payments in flight leave it.
    unpayable: list[tuple[Payment, int]] = field(default_factory=list)


def sort_payable(
    pending: Sequence[Payment],
    balances: Mapping[Holder, int | None],
    used: Mapping[UUID, bool | None],
    in_flight: Mapping[Holder, int],
) -> Payability:
    """`pending` oldest first. An authorization already used on chain (someone else
    submitted it: the money moved) is sent anyway, so the confirmer completes the payment
    by that tx; an unknown fact (None: the node did not answer) decides nothing. A payment
    missing from `used` is taken as unused: the sender reads the state only of those the
    balances would refuse or hold back, then decides again."""
    result = Payability()
    left = dict(balances)
    committed = dict(in_flight)
    for payment in pending:
        holder = (payment.payment_asset, payment.payer)
        state = used.get(payment.id, False)
        balance = left.get(holder)
        if state is True:
            result.payable.append(payment.id)
            continue
        if state is None or balance is None:
            continue
        if balance < payment.amount:
            result.unpayable.append((payment, balance))
            continue
        if balance - committed.get(holder, 0) < payment.amount:
            result.deferred.append(payment.id)
            continue
        left[holder] = balance - payment.amount
        result.payable.append(payment.id)
    return result
