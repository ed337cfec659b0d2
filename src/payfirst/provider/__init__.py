"""Selling side of x402: `PaymentMiddleware` prices routes of a Starlette / FastAPI app,
with payfirst (or any x402 facilitator) verifying and settling the payments."""

from payfirst.provider.facilitator_client import FacilitatorClient, FacilitatorError
from payfirst.provider.middleware import EXPOSED_HEADERS, PaymentMiddleware, Price, VerifiedPayment

__all__ = [
    "EXPOSED_HEADERS",
    "FacilitatorClient",
    "FacilitatorError",
    "PaymentMiddleware",
    "Price",
    "VerifiedPayment",
]
