"""ABI encoding for the contracts payfirst calls, and transaction signing.

The compiled artifacts are package data (`payfirst/contract_artifacts/*.json`, written by
`make contracts` and committed), so an installed wheel has them; `PAYFIRST_CONTRACTS_DIR`
names another directory to read them from. Calldata builders return
`0x` hex strings ready for `eth_call` or a transaction's `data`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from payfirst.domain.errors import ConfigError
from payfirst.domain.models import Authorization, SignedTx

__all__ = [
    "DEFAULT_ADMIN_ROLE",
    "MINTER_ROLE",
    "Artifact",
    "SignedTx",
    "authorization_state",
    "balance_of",
    "batch_mint",
    "build_dir",
    "checksum",
    "decode_result",
    "deploy_data",
    "encode_call",
    "grant_role",
    "has_minted",
    "has_role",
    "load_artifact",
    "mint",
    "mint_usdc",
    "selector",
    "settle_batch",
    "sign_transaction",
    "split_signature",
    "transfer_with_authorization_bytes",
    "transfer_with_authorization_vrs",
]

CONTRACTS_DIR_ENV = "PAYFIRST_CONTRACTS_DIR"

MINTER_ROLE = keccak(text="MINTER_ROLE")
DEFAULT_ADMIN_ROLE = b"\x00" * 32


# -- artifacts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Artifact:
    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    solc_version: str


def build_dir() -> Traversable:
    """Where the artifacts live: `$PAYFIRST_CONTRACTS_DIR`, else the package data
    `payfirst/contract_artifacts` (a source checkout, an editable install or a wheel)."""
    override = os.environ.get(CONTRACTS_DIR_ENV)
    if override:
        return Path(override)
    return resources.files("payfirst.contract_artifacts")


@cache
def load_artifact(name: str) -> Artifact:
    """Loads the artifact `<name>.json` ("DemoUSDC", "MintToken", "BatchSettler")."""
    path = build_dir() / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"contract artifact {path} not found: run `make contracts` in the repository, "
            f"or set {CONTRACTS_DIR_ENV} to the directory holding {name}.json"
        ) from None
    return Artifact(
        contract_name=str(data["contractName"]),
        abi=list(data["abi"]),
        bytecode=str(data["bytecode"]),
        solc_version=str(data["solcVersion"]),
    )


# -- ABI encoding -----------------------------------------------------------------------


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


def deploy_data(artifact: Artifact, constructor_types: list[str], args: list[Any]) -> str:
    """Creation code with ABI-encoded constructor arguments appended."""
    return artifact.bytecode + abi_encode(constructor_types, args).hex()


def _bytes32(value: str | bytes) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else value
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def checksum(value: str) -> str:
    """EIP-55 checksummed form of an address."""
    return str(to_checksum_address(value))


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
        _bytes32(auth.nonce),
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
        "authorizationState(address,bytes32)", [checksum(authorizer), _bytes32(nonce)]
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
    return encode_call("mint(address,bytes32)", [checksum(to), _bytes32(mint_id)])


def batch_mint(tos: list[str], mint_ids: list[str] | list[bytes]) -> str:
    """Calldata for MintToken `batchMint(address[],bytes32[])`."""
    if len(tos) != len(mint_ids):
        raise ValueError(f"{len(tos)} recipients but {len(mint_ids)} mint ids")
    return encode_call(
        "batchMint(address[],bytes32[])",
        [[checksum(t) for t in tos], [_bytes32(m) for m in mint_ids]],
    )


def has_minted(mint_id: str | bytes) -> str:
    """Calldata for MintToken `hasMinted(bytes32) returns (bool)`."""
    return encode_call("hasMinted(bytes32)", [_bytes32(mint_id)])


def grant_role(role: bytes, account: str) -> str:
    return encode_call("grantRole(bytes32,address)", [role, checksum(account)])


def has_role(role: bytes, account: str) -> str:
    return encode_call("hasRole(bytes32,address)", [role, checksum(account)])


# -- signing ----------------------------------------------------------------------------


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
