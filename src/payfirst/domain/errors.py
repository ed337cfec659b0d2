"""Errors the domain raises. A rejection carries a reason (one enum for all of payfirst);
the HTTP edge decides its status code."""

from __future__ import annotations

from payfirst.domain.reasons import Reason


class PaymentRejected(Exception):
    """A request that changes nothing: answered with the x402 `reason` and a message."""

    def __init__(self, reason: Reason, message: str = "") -> None:
        super().__init__(message or reason.value)
        self.reason = reason
        self.message = message or reason.value


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""
