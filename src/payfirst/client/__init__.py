"""Paying side of x402: sign `exact` EVM payments for a payer key."""
