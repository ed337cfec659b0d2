"""Verification of x402 `exact` payments on EVM chains (EIP-3009), with no RPC.

Everything here is pure CPU and runs on every paid request, so it is kept lean: the
EIP-712 domain separator is cached, the TransferWithAuthorization struct hash is packed
by hand (six fixed 32-byte words), Keccak-256 calls pycryptodome's C core directly, and
the signer is recovered with libsecp256k1 (coincurve).

What it cannot know without state or a chain (nonce already used, payer balance) is the
caller's job; see `payfirst.x402.reasons` for the codes to answer those with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from ctypes import byref, c_size_t, c_ubyte, c_void_p, create_string_buffer
from functools import lru_cache
from typing import Any, Final, NoReturn

from coincurve import PublicKey
from eth_hash.auto import keccak as _eth_hash_keccak

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Authorization
from payfirst.domain.reasons import Reason
from payfirst.x402.models import (
    PaymentPayloadV1,
    PaymentPayloadV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
)
from payfirst.x402.networks import chain_id_of

SCHEME_EXACT: Final = "exact"
# validBefore must leave at least this many seconds to settle (as the official SDK).
VALID_BEFORE_MARGIN_S: Final = 6

SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N: Final = SECP256K1_N // 2
_UINT256_LIMIT: Final = 1 << 256


# --- Keccak-256 ------------------------------------------------------------------------


def _make_keccak() -> Callable[[bytes], bytes]:
    """Keccak-256 straight on pycryptodome's C core through ctypes (about 2.5x faster
    than going through its Python hash object), one reusable state per thread; eth-hash
    when that core is not reachable."""
    try:
        from Crypto.Hash import keccak as _pycryptodome_keccak
        from Crypto.Util import _raw_api

        if _raw_api.backend != "ctypes":  # pragma: no cover - cffi builds
            return _eth_hash_keccak
        lib: Any = getattr(_pycryptodome_keccak, "_raw_keccak_lib")  # noqa: B009
        init, reset = lib.keccak_init, lib.keccak_reset
        absorb, squeeze = lib.keccak_absorb, lib.keccak_digest
    except (ImportError, AttributeError, OSError):  # pragma: no cover - fallback
        return _eth_hash_keccak

    local = threading.local()

    def new_state() -> tuple[Any, Any]:
        pointer = c_void_p()
        if init(byref(pointer), c_size_t(64), c_ubyte(24)):
            raise RuntimeError("keccak_init failed")
        state = (pointer, create_string_buffer(32))
        local.state = state
        return state

    def keccak256(data: bytes) -> bytes:
        try:
            state, out = local.state
        except AttributeError:
            state, out = new_state()
        if reset(state) or absorb(state, data, len(data)) or squeeze(state, out, 32, 1):
            return _eth_hash_keccak(data)  # pragma: no cover - never seen
        raw: bytes = out.raw
        return raw

    probe = b"payfirst keccak self-test" * 7
    try:
        if keccak256(b"") == _eth_hash_keccak(b"") and keccak256(probe) == _eth_hash_keccak(probe):
            return keccak256
    except Exception:  # pragma: no cover
        pass
    return _eth_hash_keccak  # pragma: no cover


keccak256: Final = _make_keccak()

EIP712_DOMAIN_TYPEHASH: Final = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
TRANSFER_WITH_AUTHORIZATION_TYPEHASH: Final = keccak256(
    b"TransferWithAuthorization(address from,address to,uint256 value,"
    b"uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
_ZERO12: Final = bytes(12)


# --- addresses -------------------------------------------------------------------------


def _parse_hex(value: object, size: int) -> bytes | None:
    """`0x` + exactly 2*size hex digits -> bytes, else None."""
    if (
        type(value) is not str
        or len(value) != 2 + 2 * size
        or value[0] != "0"
        or value[1] not in "xX"
    ):
        return None
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        return None
    return raw if len(raw) == size else None  # fromhex skips whitespace: length check


@lru_cache(maxsize=65536)
def _checksum_hex(lower_hex40: str) -> str:
    digest_hex = keccak256(lower_hex40.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if d in "89abcdef" else c
        for c, d in zip(lower_hex40, digest_hex[:40], strict=True)
    )


def to_checksum_address(address: str | bytes) -> str:
    """EIP-55 form of a 20-byte address given as bytes or 0x-hex (any case)."""
    raw = address if isinstance(address, bytes) else _parse_hex(address, 20)
    if raw is None or len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return _checksum_hex(raw.hex())


# --- EIP-712 ---------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _domain_separator(asset_lower: str, chain_id: int, name: str, version: str) -> bytes:
    asset = _parse_hex(asset_lower, 20)
    if asset is None:
        raise ValueError(f"asset is not a 20-byte address: {asset_lower!r}")
    return keccak256(
        EIP712_DOMAIN_TYPEHASH
        + keccak256(name.encode("utf-8"))
        + keccak256(version.encode("utf-8"))
        + chain_id.to_bytes(32, "big")
        + _ZERO12
        + asset
    )


def domain_separator(asset: str, chain_id: int, name: str, version: str) -> bytes:
    """The EIP-712 domain separator `{name, version, chainId, verifyingContract=asset}`
    (cached per asset, chain, name, version)."""
    return _domain_separator(asset.lower(), chain_id, name, version)


def _digest(
    separator: bytes,
    from_: bytes,
    to: bytes,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> bytes:
    struct_hash = keccak256(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH
        + _ZERO12
        + from_
        + _ZERO12
        + to
        + value.to_bytes(32, "big")
        + valid_after.to_bytes(32, "big")
        + valid_before.to_bytes(32, "big")
        + nonce
    )
    return keccak256(b"\x19\x01" + separator + struct_hash)


def digest(
    *,
    asset: str,
    chain_id: int,
    name: str,
    version: str,
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: str | bytes,
) -> bytes:
    """The EIP-712 hash a payer signs for an EIP-3009 TransferWithAuthorization."""
    from_raw, to_raw = _parse_hex(from_, 20), _parse_hex(to, 20)
    nonce_raw = nonce if isinstance(nonce, bytes) else _parse_hex(nonce, 32)
    if from_raw is None or to_raw is None or nonce_raw is None or len(nonce_raw) != 32:
        raise ValueError("from/to must be 20-byte and nonce 32-byte 0x-hex values")
    for number in (value, valid_after, valid_before):
        if not 0 <= number < _UINT256_LIMIT:
            raise ValueError(f"{number} is not a uint256")
    return _digest(
        domain_separator(asset, chain_id, name, version),
        from_raw,
        to_raw,
        value,
        valid_after,
        valid_before,
        nonce_raw,
    )


def _recover(message_hash: bytes, rs: bytes, recid: int) -> bytes | None:
    """The 20-byte address that signed `message_hash`, or None."""
    try:
        public_key = PublicKey.from_signature_and_message(
            rs + bytes((recid,)), message_hash, hasher=None
        )
    except Exception:
        return None
    uncompressed: bytes = public_key.format(compressed=False)
    return keccak256(uncompressed[1:])[12:]


def recover_signer(message_hash: bytes, signature: str | bytes) -> str:
    """The EIP-55 address that produced a 65-byte (r, s, v) signature over a hash."""
    sig = signature if isinstance(signature, bytes) else _parse_hex(signature, 65)
    if sig is None or len(sig) != 65 or sig[64] not in (0, 1, 27, 28):
        raise ValueError("not a 65-byte signature with v in {0, 1, 27, 28}")
    address = _recover(message_hash, sig[:64], sig[64] % 27)
    if address is None:
        raise ValueError("signature does not recover to a public key")
    return to_checksum_address(address)


# --- verification ----------------------------------------------------------------------


def _reject(reason: Reason, message: str) -> NoReturn:
    raise PaymentRejected(reason, message)


def _uint(value: object, field: str) -> int:
    """A uint256 given as a decimal string (the wire form) or a JSON integer."""
    if type(value) is str:
        if 0 < len(value) <= 78 and value.isascii() and value.isdigit():
            number = int(value)
            if number < _UINT256_LIMIT:
                return number
    elif type(value) is int and 0 <= value < _UINT256_LIMIT:
        return value
    _reject(Reason.INVALID_PAYLOAD, f"{field} must be a non-negative decimal uint256")


def _address(value: object, field: str) -> bytes:
    raw = _parse_hex(value, 20)
    if raw is None:
        _reject(Reason.INVALID_PAYLOAD, f"{field} must be a 0x-prefixed 20-byte address")
    return raw


def _same_amount(offered: str, required: str) -> bool:
    if offered == required:
        return True
    try:
        return int(offered) == int(required)
    except ValueError:
        return False


def _check_accepted(accepted: PaymentRequirementsV2, requirements: PaymentRequirementsV2) -> None:
    """v2: the requirements the client says it accepted must be the ones we ask for."""
    if not _same_amount(accepted.amount, requirements.amount):
        _reject(
            Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH,
            f"accepted.amount {accepted.amount} differs from the required {requirements.amount}",
        )
    if accepted.pay_to.lower() != requirements.pay_to.lower():
        _reject(
            Reason.INVALID_EXACT_EVM_PAYLOAD_RECIPIENT_MISMATCH,
            f"accepted.payTo {accepted.pay_to} differs from the required {requirements.pay_to}",
        )
    if accepted.asset.lower() != requirements.asset.lower():
        _reject(
            Reason.INVALID_PAYMENT_REQUIREMENTS,
            f"accepted.asset {accepted.asset} differs from the required {requirements.asset}",
        )


def verify_exact_evm(
    payload: PaymentPayloadV1 | PaymentPayloadV2,
    requirements: PaymentRequirementsV1 | PaymentRequirementsV2,
    now: int,
) -> Authorization:
    """Check an exact-EVM payment against the requirements it pays, at unix time `now`.

    Returns the authorization (addresses EIP-55, nonce lowercase 0x-hex, signature
    lowercase 0x-hex with v normalised to 27/28). Raises PaymentRejected(reason) at
    the first failed check, in this order: x402 version (`invalid_x402_version`), scheme
    (`unsupported_scheme`), network (`invalid_network`), for v2 `accepted` against the
    requirements, payload shape (`invalid_payload`), recipient, value, validAfter,
    validBefore, signature. Nonce reuse and balance are not checked here."""
    # 1. version, scheme, network (and for v2 what the client says it accepted)
    if type(payload) is PaymentPayloadV2:
        if type(requirements) is not PaymentRequirementsV2:
            _reject(Reason.INVALID_X402_VERSION, "an x402 v2 payload needs v2 requirements")
        accepted: PaymentRequirementsV2 | None = payload.accepted
        scheme, network = payload.accepted.scheme, payload.accepted.network
    elif type(payload) is PaymentPayloadV1:
        if type(requirements) is not PaymentRequirementsV1:
            _reject(Reason.INVALID_X402_VERSION, "an x402 v1 payload needs v1 requirements")
        accepted = None
        scheme, network = payload.scheme, payload.network
    else:
        _reject(Reason.INVALID_X402_VERSION, f"unsupported payload {type(payload).__name__}")
    if scheme != SCHEME_EXACT or requirements.scheme != SCHEME_EXACT:
        _reject(Reason.UNSUPPORTED_SCHEME, f"scheme {scheme!r} is not supported (only 'exact')")
    try:
        chain_id = chain_id_of(requirements.network)
        same_network = network == requirements.network or chain_id_of(network) == chain_id
    except ValueError:
        same_network = False
    if not same_network:
        _reject(
            Reason.INVALID_NETWORK,
            f"network {network!r} is not the required {requirements.network!r}",
        )
    if accepted is not None:
        _check_accepted(accepted, requirements)  # type: ignore[arg-type]

    # 2. payload shape
    inner: Mapping[str, Any] = payload.payload
    auth = inner.get("authorization")
    if type(auth) is not dict:
        _reject(Reason.INVALID_PAYLOAD, "payload.authorization must be an object")
    from_raw = _address(auth.get("from"), "authorization.from")
    to_raw = _address(auth.get("to"), "authorization.to")
    value = _uint(auth.get("value"), "authorization.value")
    valid_after = _uint(auth.get("validAfter"), "authorization.validAfter")
    valid_before = _uint(auth.get("validBefore"), "authorization.validBefore")
    nonce = _parse_hex(auth.get("nonce"), 32)
    if nonce is None:
        _reject(Reason.INVALID_PAYLOAD, "authorization.nonce must be 0x-prefixed 32 bytes")
    signature = _parse_hex(inner.get("signature"), 65)
    if signature is None:
        _reject(Reason.INVALID_PAYLOAD, "payload.signature must be 0x-prefixed 65 bytes")
    v = signature[64]
    if v not in (0, 1, 27, 28):
        _reject(Reason.INVALID_PAYLOAD, f"signature v must be 0, 1, 27 or 28, not {v}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < r < SECP256K1_N:
        _reject(Reason.INVALID_PAYLOAD, "signature r is out of range")
    if not 0 < s <= SECP256K1_HALF_N:
        _reject(Reason.INVALID_PAYLOAD, "signature s is zero or high (malleable, EIP-2)")

    # 3. recipient
    to_hex = to_raw.hex()
    if "0x" + to_hex != requirements.pay_to.lower():
        _reject(
            Reason.INVALID_EXACT_EVM_PAYLOAD_RECIPIENT_MISMATCH,
            f"authorization.to must be payTo {requirements.pay_to}",
        )

    # 4. value: exactly the price
    required = int(requirements.amount)
    if value != required:
        _reject(
            Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH,
            f"authorization.value {value} must be exactly {required}",
        )

    # 5-6. time window
    if valid_after > now:
        _reject(
            Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_AFTER,
            f"authorization is not valid before {valid_after} (now {now})",
        )
    if valid_before < now + VALID_BEFORE_MARGIN_S:
        _reject(
            Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_BEFORE,
            f"authorization expires at {valid_before}: less than "
            f"{VALID_BEFORE_MARGIN_S} s from now ({now})",
        )

    # 7. signature
    extra = requirements.extra or {}
    name, version = extra.get("name"), extra.get("version")
    if type(name) is not str or type(version) is not str:
        _reject(
            Reason.MISSING_EIP712_DOMAIN, "requirements.extra needs the asset's name and version"
        )
    try:
        separator = _domain_separator(requirements.asset.lower(), chain_id, name, version)
    except ValueError:
        _reject(
            Reason.INVALID_PAYMENT_REQUIREMENTS, f"asset {requirements.asset!r} is not an address"
        )
    message_hash = _digest(separator, from_raw, to_raw, value, valid_after, valid_before, nonce)
    if _recover(message_hash, signature[:64], v % 27) != from_raw:
        _reject(
            Reason.INVALID_EXACT_EVM_PAYLOAD_SIGNATURE,
            "signature does not recover to authorization.from "
            f"(EIP-712 domain {name!r} version {version!r}, chain {chain_id})",
        )

    return Authorization(
        from_=_checksum_hex(from_raw.hex()),
        to=_checksum_hex(to_hex),
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce="0x" + nonce.hex(),
        signature="0x" + signature[:64].hex() + ("1b" if v % 27 == 0 else "1c"),
    )
