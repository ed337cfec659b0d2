"""Calldata for the contract functions payfirst calls (`0x` hex, ready for `eth_call` or a
transaction's `data`): the EIP-3009 payment asset, the BatchSettler and the MintToken."""

from __future__ import annotations

from typing import Any

from eth_utils.crypto import keccak

from payfirst.domain.models import Authorization
from payfirst.evm.abi import bytes32, checksum, encode_call

__all__ = [
    "DEFAULT_ADMIN_ROLE",
    "EIP712_DOMAIN_TYPES",
    "MINTER_ROLE",
    "MINT_TOKEN_READS",
    "SETTLE_BATCH",
    "TRANSFER_WITH_AUTHORIZATION_BYTES",
    "TRANSFER_WITH_AUTHORIZATION_VRS",
    "authorization_state",
    "balance_of",
    "batch_mint",
    "getter",
    "grant_role",
    "has_minted",
    "has_role",
    "mint",
    "mint_usdc",
    "settle_batch",
    "split_signature",
    "transfer_with_authorization_bytes",
    "transfer_with_authorization_vrs",
]

MINTER_ROLE = keccak(text="MINTER_ROLE")
DEFAULT_ADMIN_ROLE = b"\x00" * 32


# -- EIP-3009 payment asset -------------------------------------------------------------


def split_signature(signature: str | bytes) -> tuple[int, bytes, bytes]:
    """(v, r, s) of a 65-byte r‖s‖v signature, with v normalised to 27/28."""
    raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    if len(raw) != 65:
        raise ValueError(f"an ECDSA signature has 65 bytes, got {len(raw)}")
    v = raw[64]
    if v in (0, 1):
        v += 27
    if v not in (27, 28):
        raise ValueError(f"signature v must be 0, 1, 27 or 28, got {raw[64]}")
    return v, raw[:32], raw[32:64]


def _auth_head(auth: Authorization) -> list[Any]:
    return [
        checksum(auth.from_),
        checksum(auth.to),
        auth.value,
        auth.valid_after,
        auth.valid_before,
        bytes32(auth.nonce),
    ]


TRANSFER_WITH_AUTHORIZATION_VRS = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
TRANSFER_WITH_AUTHORIZATION_BYTES = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
)


def transfer_with_authorization_vrs(auth: Authorization) -> str:
    """Calldata for EIP-3009 `transferWithAuthorization(..., v, r, s)` (every USDC)."""
    v, r, s = split_signature(auth.signature)
    return encode_call(TRANSFER_WITH_AUTHORIZATION_VRS, [*_auth_head(auth), v, r, s])


def transfer_with_authorization_bytes(auth: Authorization) -> str:
    """Calldata for USDC v2.2's `transferWithAuthorization(..., bytes signature)`, which
    also accepts ERC-1271 smart-wallet signatures. A 65-byte signature with v = 0/1 gets
    v normalised to 27/28; other signatures are passed through untouched."""
    raw = bytes.fromhex(auth.signature.removeprefix("0x"))
    if len(raw) == 65 and raw[64] in (0, 1):
        raw = raw[:64] + bytes([raw[64] + 27])
    return encode_call(TRANSFER_WITH_AUTHORIZATION_BYTES, [*_auth_head(auth), raw])


SETTLE_BATCH = (
    "settle(address,(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)[])"
)


def settle_batch(asset: str, auths: list[Authorization]) -> str:
    """Calldata for BatchSettler `settle(asset, Authorization[])`: one
    `transferWithAuthorization(..., v, r, s)` of `asset` per item, each able to fail on its
    own."""
    items = [(*_auth_head(a), *split_signature(a.signature)) for a in auths]
    return encode_call(SETTLE_BATCH, [checksum(asset), items])


def authorization_state(authorizer: str, nonce: str | bytes) -> str:
    """Calldata for `authorizationState(address,bytes32) returns (bool)`."""
    return encode_call(
        "authorizationState(address,bytes32)", [checksum(authorizer), bytes32(nonce)]
    )


def balance_of(address: str) -> str:
    """Calldata for `balanceOf(address) returns (uint256)`."""
    return encode_call("balanceOf(address)", [checksum(address)])


def mint_usdc(to: str, amount: int) -> str:
    """Calldata for DemoUSDC's owner-only `mint(address,uint256)`."""
    return encode_call("mint(address,uint256)", [checksum(to), amount])


# -- mint token -----------------------------------------------------------------------------


def mint(to: str, mint_id: str | bytes) -> str:
    """Calldata for MintToken `mint(address,bytes32)`."""
    return encode_call("mint(address,bytes32)", [checksum(to), bytes32(mint_id)])


def batch_mint(tos: list[str], mint_ids: list[str] | list[bytes]) -> str:
    """Calldata for MintToken `batchMint(address[],bytes32[])`."""
    if len(tos) != len(mint_ids):
        raise ValueError(f"{len(tos)} recipients but {len(mint_ids)} mint ids")
    return encode_call(
        "batchMint(address[],bytes32[])",
        [[checksum(t) for t in tos], [bytes32(m) for m in mint_ids]],
    )


def has_minted(mint_id: str | bytes) -> str:
    """Calldata for MintToken `hasMinted(bytes32) returns (bool)`."""
    return encode_call("hasMinted(bytes32)", [bytes32(mint_id)])


def grant_role(role: bytes, account: str) -> str:
    return encode_call("grantRole(bytes32,address)", [role, checksum(account)])


def getter(signature: str) -> str:
    """Calldata for a function of no arguments, e.g. `PRICE_PER_MINT()`."""
    return encode_call(signature, [])


#: What `Chain.mint_token_terms` reads of a MintToken, and each answer's ABI type.
MINT_TOKEN_READS: tuple[tuple[str, str], ...] = (
    ("name()", "string"),
    ("symbol()", "string"),
    ("MINT_AMOUNT()", "uint256"),
    ("MAX_MINT_COUNT()", "uint256"),
    ("PRICE_PER_MINT()", "uint256"),
    ("PAYMENT_TOKEN()", "address"),
    ("mintCount()", "uint256"),
    ("MINTER_ROLE()", "bytes32"),
)

#: EIP-5267's `eip712Domain()` answer.
EIP712_DOMAIN_TYPES = ["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"]


def has_role(role: bytes, account: str) -> str:
    return encode_call("hasRole(bytes32,address)", [role, checksum(account)])
