"""Agents' payer addresses and the spending policies the server enforces on them.

The words are the client library's (payfirst.client.policy): amounts are atomic units of
the payment asset; `max_per_payment`, `max_per_day` (a rolling 24 h) and `max_per_month` (the
calendar month, UTC) are per asset, with "*" for every asset the policy does not name, and
an asset a limit does not name at all may not be spent (its limit is 0). Above
`approval_threshold` a payment is held `awaiting_approval` until the payer's owner decides
(an asset it does not name needs no approval). An allow-list None allows anything.

The amounts over time are enforced in the database, in the transaction that queues the
payment (payfirst_queue_payment_v4); `static_refusal` is the rest, checked before."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from uuid import UUID

from payfirst.domain.reasons import Reason

#: The key of a limit that holds for every asset the limit does not name.
ANY_ASSET: Final = "*"
#: How long a payer challenge may be answered.
CHALLENGE_TTL_S: Final = 600


@dataclass(frozen=True, slots=True)
class AgentPayer:
    """A payer address (EIP-55) an agent account proved it controls."""

    address: str
    account_id: UUID
    verified_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PayerChallenge:
    """What an agent signs (EIP-191 personal_sign) with a payer key; used once."""

    nonce: str
    account_id: UUID
    address: str
    message: str
    expires_at: datetime


#: A limit: asset address (EIP-55) or ANY_ASSET -> atomic units.
Limits = Mapping[str, int]


def limit_for(limits: Limits | None, asset: str, default: int | None = 0) -> int | None:
    """The limit of `asset`: None for no limit (no limits at all), else its own, the "*"
    one, or `default`."""
    if limits is None:
        return None
    if asset in limits:
        return limits[asset]
    return limits.get(ANY_ASSET, default)


@dataclass(frozen=True, slots=True)
class SpendingPolicy:
    payer: str
    max_per_payment: Limits | None = None
    max_per_day: Limits | None = None
    max_per_month: Limits | None = None
    approval_threshold: Limits | None = None
    allowed_providers: frozenset[UUID] | None = None
    allowed_endpoints: frozenset[UUID] | None = None
    allowed_pay_to: frozenset[str] | None = None  # EIP-55
    allowed_networks: frozenset[int] | None = None  # chain ids
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """A payment as a policy sees it."""

    amount: int
    asset: str  # EIP-55
    pay_to: str  # EIP-55
    chain_id: int | None
    provider_id: UUID | None = None  # the provider sold to (a paid endpoint's)
    endpoint_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Reason
    message: str


def static_refusal(policy: SpendingPolicy, payment: PaymentFacts) -> Refusal | None:
    """What the policy refuses without counting what was spent: allow-lists, then the
    amount per payment."""
    p = policy
    if p.allowed_providers is not None and payment.provider_id not in p.allowed_providers:
        return Refusal(Reason.POLICY_NOT_ALLOWED, "the payer's policy does not allow this provider")
    if p.allowed_endpoints is not None and payment.endpoint_id not in p.allowed_endpoints:
        return Refusal(Reason.POLICY_NOT_ALLOWED, "the payer's policy does not allow this endpoint")
    if p.allowed_pay_to is not None and payment.pay_to.lower() not in {
        a.lower() for a in p.allowed_pay_to
    }:
        return Refusal(
            Reason.POLICY_NOT_ALLOWED, f"the payer's policy does not allow payTo {payment.pay_to}"
        )
    if p.allowed_networks is not None and payment.chain_id not in p.allowed_networks:
        return Refusal(
            Reason.POLICY_NOT_ALLOWED,
            f"the payer's policy does not allow network eip155:{payment.chain_id}",
        )
    limit = limit_for(p.max_per_payment, payment.asset)
    if limit is not None and payment.amount > limit:
        return Refusal(
            Reason.POLICY_MAX_PER_PAYMENT,
            f"{payment.amount} of asset {payment.asset} is more than the payer's limit of "
            f"{limit} per payment",
        )
    return None


def spent_refusal(
    policy: SpendingPolicy, payment: PaymentFacts, spent_day: int, spent_month: int
) -> Refusal | None:
    """The day and month limits, given what the payer spent (or holds) in the asset."""
    day = limit_for(policy.max_per_day, payment.asset)
    if day is not None and spent_day + payment.amount > day:
        return Refusal(
            Reason.POLICY_DAILY_LIMIT,
            f"{payment.amount} of asset {payment.asset} on top of {spent_day} in the last 24 h "
            f"is more than the payer's limit of {day} per day",
        )
    month = limit_for(policy.max_per_month, payment.asset)
    if month is not None and spent_month + payment.amount > month:
        return Refusal(
            Reason.POLICY_MONTHLY_LIMIT,
            f"{payment.amount} of asset {payment.asset} on top of {spent_month} this month "
            f"is more than the payer's limit of {month} per month",
        )
    return None


#: The refusals payfirst_queue_payment_v4 answers, as the outcome it names them by.
REFUSED_OUTCOMES: Final = {
    Reason.POLICY_NOT_ALLOWED.value: Refusal(
        Reason.POLICY_NOT_ALLOWED,
        "the payer's spending policy does not allow this provider, endpoint, payTo or network",
    ),
    Reason.POLICY_MAX_PER_PAYMENT.value: Refusal(
        Reason.POLICY_MAX_PER_PAYMENT, "more than the payer's spending policy allows per payment"
    ),
    Reason.POLICY_DAILY_LIMIT.value: Refusal(
        Reason.POLICY_DAILY_LIMIT,
        "the payer's spending policy allows no more in this asset in the last 24 h",
    ),
    Reason.POLICY_MONTHLY_LIMIT.value: Refusal(
        Reason.POLICY_MONTHLY_LIMIT,
        "the payer's spending policy allows no more in this asset this month (UTC)",
    ),
}


def challenge_text(
    account_id: UUID, address: str, nonce: str, expires_at: datetime, service: str = "payfirst"
) -> str:
    """The EIP-191 text an agent signs with the payer key to prove it controls it."""
    return (
        f"{service} asks you to prove you control this payer address.\n\n"
        f"Agent account: {account_id}\n"
        f"Payer address: {address}\n"
        f"Nonce: {nonce}\n"
        f"Expires at: {expires_at.isoformat()}\n\n"
        "Signing this message moves no funds."
    )
