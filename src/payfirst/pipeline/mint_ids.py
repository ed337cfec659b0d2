"""Mint ids: derived from (payer, payment, index), so a retried mint can never mint twice."""

from __future__ import annotations

from uuid import UUID

from eth_utils.crypto import keccak


def mint_id(payer: str, payment_id: UUID, index: int) -> str:
    """keccak256(payer (20 bytes) || payment id (16 bytes) || index (uint32, big endian))."""
    packed = bytes.fromhex(payer[2:]) + payment_id.bytes + index.to_bytes(4, "big")
    return "0x" + keccak(packed).hex()


def mint_ids(payer: str, payment_id: UUID, quantity: int) -> list[str]:
    return [mint_id(payer, payment_id, i) for i in range(quantity)]
