"""The ledger's rules (payfirst.domain.ledger): which entries a completed payment writes."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payfirst.domain.ledger import (
    MAX_FEE_BPS,
    PLATFORM,
    Account,
    AccountKind,
    Entry,
    LedgerPayment,
    entries_for_payment,
    fee_of,
    reversal_of,
    total,
)

PAYER = "0x1000000000000000000000000000000000000001"
SHOP = "0x2000000000000000000000000000000000000002"
TREASURY = "0x3000000000000000000000000000000000000003"
USDC = "0x4000000000000000000000000000000000000004"
CHAIN = 8453
PROVIDER = UUID("7b5a3e8c-0000-4000-8000-000000000001")


def account(kind: AccountKind, owner: str) -> Account:
    return Account(kind, owner, USDC, CHAIN)


def payment(amount: int, provider: UUID | None = None, fee_bps: int | None = None) -> LedgerPayment:
    pay_to = SHOP if provider is None else TREASURY
    return LedgerPayment(PAYER, pay_to, USDC, CHAIN, amount, provider, fee_bps)


def test_a_plain_payment_moves_the_amount_from_the_payer_to_the_payee() -> None:
    assert entries_for_payment(payment(25_000)) == [
        Entry(account(AccountKind.EXTERNAL, PAYER), -25_000),
        Entry(account(AccountKind.EXTERNAL, SHOP), 25_000),
    ]


def test_a_collected_payment_credits_the_provider_its_share_and_the_platform_its_fee() -> None:
    # 2.5 % of 1 USDC
    assert entries_for_payment(payment(1_000_000, PROVIDER, 250)) == [
        Entry(account(AccountKind.EXTERNAL, PAYER), -1_000_000),
        Entry(account(AccountKind.PROVIDER, str(PROVIDER)), 975_000),
        Entry(account(AccountKind.FEES, PLATFORM), 25_000),
    ]


def test_the_fee_is_rounded_down_in_the_providers_favour() -> None:
    # 1 % of 199 is 1.99: the platform takes 1, the provider 198
    entries = entries_for_payment(payment(199, PROVIDER, 100))
    assert [e.amount for e in entries] == [-199, 198, 1]


def test_zero_entries_are_left_out() -> None:
    no_fee = entries_for_payment(payment(5_000, PROVIDER, 0))
    assert [e.account.kind for e in no_fee] == [AccountKind.EXTERNAL, AccountKind.PROVIDER]
    all_fee = entries_for_payment(payment(5_000, PROVIDER, MAX_FEE_BPS))
    assert [e.account.kind for e in all_fee] == [AccountKind.EXTERNAL, AccountKind.FEES]
    assert entries_for_payment(payment(0)) == []


def test_a_reversal_negates_every_entry() -> None:
    entries = entries_for_payment(payment(1_000_000, PROVIDER, 250))
    reversal = reversal_of(entries)
    assert [e.amount for e in reversal] == [1_000_000, -975_000, -25_000]
    assert [e.account for e in reversal] == [e.account for e in entries]
    assert total(entries + reversal) == 0


@pytest.mark.parametrize(("amount", "fee_bps"), [(1, -1), (1, MAX_FEE_BPS + 1), (-1, 0)])
def test_a_fee_out_of_bounds_is_refused(amount: int, fee_bps: int) -> None:
    with pytest.raises(ValueError, match=r"a fee is|an amount is"):
        fee_of(amount, fee_bps)


amounts = st.integers(min_value=0, max_value=2**256 - 1)
fees = st.integers(min_value=0, max_value=MAX_FEE_BPS)


@given(amount=amounts, fee_bps=fees, collected=st.booleans())
def test_every_payment_transaction_sums_to_zero(amount: int, fee_bps: int, collected: bool) -> None:
    entries = entries_for_payment(payment(amount, uuid4() if collected else None, fee_bps))
    assert total(entries) == 0
    assert total(reversal_of(entries)) == 0
    assert all(e.amount != 0 for e in entries)
    # the payer is debited exactly the amount: the on-chain transfer
    debits = [e.amount for e in entries if e.account == account(AccountKind.EXTERNAL, PAYER)]
    assert sum(debits) == -amount


@given(amount=amounts, fee_bps=fees)
def test_a_fee_never_exceeds_the_amount_nor_goes_negative(amount: int, fee_bps: int) -> None:
    fee = fee_of(amount, fee_bps)
    assert 0 <= fee <= amount
    # rounded down: within one unit of the exact share
    assert fee * MAX_FEE_BPS <= amount * fee_bps < (fee + 1) * MAX_FEE_BPS
    entries = entries_for_payment(payment(amount, PROVIDER, fee_bps))
    assert all(e.amount > 0 for e in entries if e.account.kind is not AccountKind.EXTERNAL)
