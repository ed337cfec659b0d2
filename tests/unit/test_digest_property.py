"""Property: the hand-packed EIP-712 digest equals eth-account's, and recovery returns
the signer."""

from __future__ import annotations

from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from payfirst.x402.exact_evm import SECP256K1_HALF_N, digest, recover_signer, to_checksum_address
from tests.fixtures.eip712 import TRANSFER_TYPES

UINT256 = st.integers(min_value=0, max_value=2**256 - 1)
ADDRESS = st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex())
NONCE = st.binary(min_size=32, max_size=32)
CHAIN_ID = st.integers(min_value=1, max_value=2**64 - 1)
TEXT = st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    asset=ADDRESS,
    chain_id=CHAIN_ID,
    name=TEXT,
    version=TEXT,
    from_=ADDRESS,
    to=ADDRESS,
    value=UINT256,
    valid_after=UINT256,
    valid_before=UINT256,
    nonce=NONCE,
)
def test_digest_equals_eth_account(
    asset: str,
    chain_id: int,
    name: str,
    version: str,
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> None:
    expected = _hash_eip191_message(
        encode_typed_data(
            full_message={
                "types": TRANSFER_TYPES,
                "primaryType": "TransferWithAuthorization",
                "domain": {
                    "name": name,
                    "version": version,
                    "chainId": chain_id,
                    "verifyingContract": to_checksum_address(asset),
                },
                "message": {
                    "from": to_checksum_address(from_),
                    "to": to_checksum_address(to),
                    "value": value,
                    "validAfter": valid_after,
                    "validBefore": valid_before,
                    "nonce": nonce,
                },
            }
        )
    )
    ours = digest(
        asset=asset,
        chain_id=chain_id,
        name=name,
        version=version,
        from_=from_,
        to=to,
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=nonce,
    )
    assert ours == expected
    # the nonce may equally be given as 0x-hex, addresses in any case
    assert ours == digest(
        asset=asset.upper().replace("0X", "0x"),
        chain_id=chain_id,
        name=name,
        version=version,
        from_=from_,
        to=to,
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce="0x" + nonce.hex(),
    )


@settings(max_examples=200, deadline=None)
@given(
    secret=st.integers(min_value=1, max_value=2**256 - 2**129),
    message_hash=st.binary(min_size=32, max_size=32),
)
def test_recovery_returns_the_signer(secret: int, message_hash: bytes) -> None:
    key = PrivateKey.from_int(secret)
    signed = key.sign_recoverable(message_hash, hasher=None)  # r || s || recid, low s
    assert int.from_bytes(signed[32:64], "big") <= SECP256K1_HALF_N
    signer = Account.from_key(key.secret).address
    assert recover_signer(message_hash, signed) == signer
    assert recover_signer(message_hash, signed[:64] + bytes((signed[64] + 27,))) == signer


@given(raw=st.binary(min_size=20, max_size=20))
def test_checksum_matches_eth_utils(raw: bytes) -> None:
    from eth_utils.address import to_checksum_address as reference

    assert to_checksum_address(raw) == reference(raw)
    assert to_checksum_address("0x" + raw.hex().upper()) == reference(raw)
