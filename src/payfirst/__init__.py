"""payfirst: an x402 payment server. Payment first, delivery after."""

__version__ = "0.1.0"
