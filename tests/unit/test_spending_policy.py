"""SpendingPolicy rules and the rolling 24 h SpendingLedger (no IO)."""

from __future__ import annotations

import pytest

from payfirst.client import PaymentRefused, Quote, SpendingLedger, SpendingPolicy

USDC = "0x036CbD53842c8542D6f58D8d1C8F2eE98d7a3c2a"
OTHER = "0x1111111111111111111111111111111111111111"
SHOP = "0x2222222222222222222222222222222222222222"
ELSEWHERE = "0x3333333333333333333333333333333333333333"


def quote(amount: int = 10_000, **overrides: str) -> Quote:
    fields = {"asset": USDC, "network": "eip155:84532", "pay_to": SHOP} | overrides
    return Quote(amount=amount, **fields)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refusal(policy: SpendingPolicy, q: Quote, spent: int = 0) -> PaymentRefused:
    with pytest.raises(PaymentRefused) as caught:
        policy.check(q, spent)
    return caught.value


def test_no_limits_allows_anything() -> None:
    SpendingPolicy().check(quote(10**30), spent_today=10**30)


def test_max_per_payment_names_rule_and_amounts() -> None:
    policy = SpendingPolicy(max_per_payment=10_000)
    policy.check(quote(10_000))
    refused = refusal(policy, quote(10_001))
    assert refused.rule == "max_per_payment"
    assert (refused.amount, refused.limit) == (10_001, 10_000)
    assert "max_per_payment" in str(refused)
    assert "10001" in str(refused) and "10000" in str(refused)


def test_per_asset_limits_are_case_insensitive_and_refuse_unlisted_assets() -> None:
    policy = SpendingPolicy(max_per_payment={USDC.lower(): 5_000})
    policy.check(quote(5_000, asset=USDC.upper().replace("0X", "0x")))
    assert refusal(policy, quote(5_001)).limit == 5_000
    unlisted = refusal(policy, quote(1, asset=OTHER))
    assert (unlisted.rule, unlisted.limit) == ("max_per_payment", 0)


def test_max_per_day_counts_what_was_spent() -> None:
    policy = SpendingPolicy(max_per_day=25_000)
    policy.check(quote(10_000), spent_today=15_000)
    refused = refusal(policy, quote(10_000), spent=20_000)
    assert refused.rule == "max_per_day"
    assert (refused.amount, refused.limit, refused.spent) == (10_000, 25_000, 20_000)
    assert "30000" in str(refused)


@pytest.mark.parametrize("allowed", ["base-sepolia", "eip155:84532"])
def test_networks_match_by_chain_whatever_the_spelling(allowed: str) -> None:
    policy = SpendingPolicy(allowed_networks=[allowed])
    policy.check(quote(network="eip155:84532"))
    policy.check(quote(network="base-sepolia"))
    refused = refusal(policy, quote(network="base"))
    assert refused.rule == "allowed_networks"
    assert refused.network == "base"
    refusal(policy, quote(network="solana:mainnet"))


def test_unknown_network_in_policy_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown network"):
        SpendingPolicy(allowed_networks=["nowhere"])


def test_allowed_assets_and_pay_to() -> None:
    policy = SpendingPolicy(allowed_assets=[USDC.lower()], allowed_pay_to=[SHOP])
    policy.check(quote())
    assert refusal(policy, quote(asset=OTHER)).rule == "allowed_assets"
    refused = refusal(policy, quote(pay_to=ELSEWHERE))
    assert refused.rule == "allowed_pay_to"
    assert ELSEWHERE in str(refused)


def test_a_single_string_is_one_allowed_value_not_its_characters() -> None:
    policy = SpendingPolicy(allowed_pay_to=SHOP, allowed_networks="base-sepolia")
    policy.check(quote())
    assert refusal(policy, quote(pay_to=ELSEWHERE)).rule == "allowed_pay_to"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_limits_must_be_non_negative_integers(bad: object) -> None:
    with pytest.raises(ValueError, match="max_per_day"):
        SpendingPolicy(max_per_day=bad)  # type: ignore[arg-type]


def test_ledger_counts_only_committed_payments() -> None:
    ledger = SpendingLedger(clock=Clock())
    policy = SpendingPolicy(max_per_day=25_000)
    accepted = ledger.reserve(policy, quote(10_000))
    refused_by_server = ledger.reserve(policy, quote(10_000))
    assert ledger.spent(USDC) == 0  # reservations are not spending
    ledger.commit(accepted)
    ledger.release(refused_by_server)
    assert ledger.spent(USDC) == 10_000
    assert ledger.spent(USDC.lower()) == 10_000
    assert ledger.spent(OTHER) == 0


def test_reservations_in_flight_count_against_the_daily_limit() -> None:
    ledger = SpendingLedger(clock=Clock())
    policy = SpendingPolicy(max_per_day=15_000)
    ledger.reserve(policy, quote(10_000))
    with pytest.raises(PaymentRefused) as caught:
        ledger.reserve(policy, quote(10_000))
    assert (caught.value.rule, caught.value.spent) == ("max_per_day", 10_000)


def test_daily_window_is_rolling_24_hours() -> None:
    clock = Clock()
    ledger = SpendingLedger(clock=clock)
    policy = SpendingPolicy(max_per_day=20_000)
    ledger.commit(ledger.reserve(policy, quote(15_000)))
    clock.now += 12 * 3600
    ledger.commit(ledger.reserve(policy, quote(5_000)))
    with pytest.raises(PaymentRefused):
        ledger.reserve(policy, quote(1))
    clock.now += 12 * 3600  # the first payment is now 24 h old: out of the window
    assert ledger.spent(USDC) == 5_000
    ledger.reserve(policy, quote(15_000))
    clock.now += 12 * 3600
    assert ledger.spent(USDC) == 0


def test_daily_limits_are_per_asset() -> None:
    ledger = SpendingLedger(clock=Clock())
    policy = SpendingPolicy(max_per_day={USDC: 10_000, OTHER: 10_000})
    ledger.commit(ledger.reserve(policy, quote(10_000)))
    ledger.commit(ledger.reserve(policy, quote(10_000, asset=OTHER)))
    with pytest.raises(PaymentRefused):
        ledger.reserve(policy, quote(1, asset=OTHER))
