"""Paying side of x402: sign `exact` EVM payments for a payer key, and pay `402` answers
automatically within a spending policy (`PayingClient`)."""

from payfirst.client.paying import PaidResponse, PayingClient, PaymentError, PaymentMade
from payfirst.client.policy import PaymentRefused, Quote, SpendingLedger, SpendingPolicy
from payfirst.client.signing import Payer

__all__ = [
    "PaidResponse",
    "Payer",
    "PayingClient",
    "PaymentError",
    "PaymentMade",
    "PaymentRefused",
    "Quote",
    "SpendingLedger",
    "SpendingPolicy",
]
