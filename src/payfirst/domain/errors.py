"""Errors that carry an HTTP status and an x402 reason code to the client."""

from __future__ import annotations


class PaymentRejected(Exception):
    """A request that changes nothing: answered with `status` and the x402 `reason`."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.status = status
        self.reason = reason
        self.message = message or reason


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""
