"""Signing EIP-1559 transactions with a local key (no IO)."""

from __future__ import annotations

from typing import Any

from eth_account import Account

from payfirst.domain.models import SignedTx
from payfirst.evm.abi import checksum

__all__ = ["sign_transaction"]


def sign_transaction(private_key: str, tx: dict[str, Any]) -> SignedTx:
    """Signs an EIP-1559 (type 2) transaction.

    `tx` needs chainId, nonce, gas, maxFeePerGas, maxPriorityFeePerGas, and `to` (omit it
    to deploy); `data` and `value` default to empty / 0.
    """
    fields = {"type": 2, "value": 0, "data": "0x", **tx}
    if fields.get("to") is not None:
        fields["to"] = checksum(fields["to"])
    else:
        fields.pop("to", None)
    signed = Account.sign_transaction(fields, private_key)
    return SignedTx(
        raw="0x" + bytes(signed.raw_transaction).hex(), hash="0x" + bytes(signed.hash).hex()
    )
