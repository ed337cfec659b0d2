"""ABI encoding and decoding helpers (pure functions of eth-abi, no IO)."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

__all__ = ["bytes32", "checksum", "decode_result", "encode_call", "selector"]


def _split_types(inner: str) -> list[str]:
    """Splits "address,(uint256,bytes)[],bool" at top-level commas."""
    types: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            types.append(inner[start:i].strip())
            start = i + 1
    tail = inner[start:].strip()
    if tail:
        types.append(tail)
    return types


def _signature_types(signature: str) -> list[str]:
    open_at = signature.find("(")
    if open_at <= 0 or not signature.endswith(")"):
        raise ValueError(f"not a function signature: {signature!r}")
    return _split_types(signature[open_at + 1 : -1])


def selector(signature: str) -> bytes:
    """The 4-byte function selector of a canonical signature like "mint(address,bytes32)"."""
    return keccak(text=signature.replace(" ", ""))[:4]


def encode_call(signature: str, args: list[Any]) -> str:
    """Calldata (`0x` hex) for calling `signature` with `args`."""
    signature = signature.replace(" ", "")
    types = _signature_types(signature)
    if len(types) != len(args):
        raise ValueError(f"{signature} takes {len(types)} arguments, got {len(args)}")
    return "0x" + (selector(signature) + abi_encode(types, args)).hex()


def decode_result(types: list[str], data: bytes | str) -> tuple[Any, ...]:
    """Decodes return data (bytes or `0x` hex) as the ABI `types`."""
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
    return tuple(abi_decode(types, raw))


def bytes32(value: str | bytes) -> bytes:
    """Exactly 32 bytes, from bytes or `0x` hex."""
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else value
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def checksum(value: str) -> str:
    """EIP-55 checksummed form of an address."""
    return str(to_checksum_address(value))
