"""DemoUSDC (EIP-3009) and MintToken on anvil. Authorizations are signed here with
eth_account's EIP-712 support, independently of payfirst's own x402 code."""

from __future__ import annotations

import os
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from payfirst.adapters.chain_rpc import RpcClient, RpcError
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain, send_transaction
from payfirst.domain.models import Authorization
from payfirst.evm import abi, calls
from tests.fixtures.eip712 import EIP712_DOMAIN_TYPE, TRANSFER_WITH_AUTHORIZATION_TYPE

AUTHORIZATION_USED = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
MINTED = "0x" + keccak(text="Minted(bytes32,address,uint256)").hex()


def error_selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


def topic_address(address: str) -> str:
    return "0x" + "00" * 12 + address.lower().removeprefix("0x")


def fresh_id() -> str:
    return "0x" + os.urandom(32).hex()


def sign_authorization(
    key: str,
    deployment: Deployment,
    *,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: str | None = None,
    from_: str | None = None,
) -> Authorization:
    """An EIP-3009 authorization signed with `key` (claiming to come from `from_`, default
    the key's own address)."""
    nonce = nonce or fresh_id()
    sender = from_ or Account.from_key(key).address
    message = {
        "from": sender,
        "to": to,
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": bytes.fromhex(nonce[2:]),
    }
    typed = {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_TYPE,
            "TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION_TYPE,
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": deployment.usdc_name,
            "version": deployment.usdc_version,
            "chainId": deployment.chain_id,
            "verifyingContract": deployment.usdc,
        },
        "message": message,
    }
    signed = Account.sign_typed_data(key, full_message=typed)
    return Authorization(
        from_=sender,
        to=to,
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=nonce,
        signature="0x" + bytes(signed.signature).hex(),
    )


async def now(rpc: RpcClient) -> int:
    block = await rpc.get_block("latest")
    assert block is not None
    return int(block["timestamp"], 16)


async def transact(rpc: RpcClient, key: str, to: str, data: str) -> dict[str, Any]:
    """Sends with a fixed gas limit (no estimate, so a reverting call is still mined)."""
    tx_hash = await send_transaction(rpc, key, to, data, gas=500_000)
    return await rpc.wait_for_receipt(tx_hash)


async def revert_data(rpc: RpcClient, to: str, data: str, sender: str) -> str:
    with pytest.raises(RpcError) as info:
        await rpc.eth_call(to, data, sender=sender)
    reverted = info.value.revert_data
    assert reverted is not None, info.value
    return reverted


async def read_uint(rpc: RpcClient, to: str, data: str) -> int:
    (value,) = abi.decode_result(["uint256"], await rpc.eth_call(to, data))
    return int(value)


async def read_bool(rpc: RpcClient, to: str, data: str) -> bool:
    (value,) = abi.decode_result(["bool"], await rpc.eth_call(to, data))
    return bool(value)


async def balance(rpc: RpcClient, asset: str, holder: str) -> int:
    return await read_uint(rpc, asset, calls.balance_of(holder))


# -- DemoUSDC ------------------------------------------------------------------------


async def test_usdc_metadata(devchain: Deployment, rpc: RpcClient) -> None:
    (decimals,) = abi.decode_result(
        ["uint8"], await rpc.eth_call(devchain.usdc, abi.encode_call("decimals()", []))
    )
    assert decimals == 6
    domain = abi.decode_result(
        ["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"],
        await rpc.eth_call(devchain.usdc, abi.encode_call("eip712Domain()", [])),
    )
    assert domain[1:5] == ("USDC", "2", devchain.chain_id, devchain.usdc.lower())


@pytest.mark.parametrize("form", ["vrs", "bytes"])
async def test_transfer_with_authorization_moves_usdc(
    devchain: Deployment, rpc: RpcClient, form: str
) -> None:
    payer = devchain.payers[0]
    t = await now(rpc)
    auth = sign_authorization(
        payer.key, devchain, to=devchain.token, value=3_000_000, valid_after=0, valid_before=t + 600
    )
    state_call = calls.authorization_state(payer.address, auth.nonce)
    assert await read_bool(rpc, devchain.usdc, state_call) is False
    payer_before = await balance(rpc, devchain.usdc, payer.address)
    token_before = await balance(rpc, devchain.usdc, devchain.token)

    data = (
        calls.transfer_with_authorization_vrs(auth)
        if form == "vrs"
        else calls.transfer_with_authorization_bytes(auth)
    )
    receipt = await transact(rpc, devchain.relayer_key, devchain.usdc, data)

    assert int(receipt["status"], 16) == 1
    assert await balance(rpc, devchain.usdc, payer.address) == payer_before - 3_000_000
    assert await balance(rpc, devchain.usdc, devchain.token) == token_before + 3_000_000
    assert await read_bool(rpc, devchain.usdc, state_call) is True
    used = [log for log in receipt["logs"] if log["topics"][0] == AUTHORIZATION_USED]
    assert len(used) == 1
    assert used[0]["address"].lower() == devchain.usdc.lower()
    assert used[0]["topics"][1:] == [topic_address(payer.address), auth.nonce]


async def test_signature_with_v_0_or_1_is_normalised(devchain: Deployment, rpc: RpcClient) -> None:
    payer = devchain.payers[1]
    t = await now(rpc)
    for form in ("vrs", "bytes"):
        auth = sign_authorization(
            payer.key, devchain, to=devchain.token, value=1, valid_after=0, valid_before=t + 600
        )
        raw = bytes.fromhex(auth.signature[2:])
        low_v = Authorization.from_json(
            {**auth.to_json(), "signature": "0x" + (raw[:64] + bytes([raw[64] - 27])).hex()}
        )
        data = (
            calls.transfer_with_authorization_vrs(low_v)
            if form == "vrs"
            else calls.transfer_with_authorization_bytes(low_v)
        )
        receipt = await transact(rpc, devchain.relayer_key, devchain.usdc, data)
        assert int(receipt["status"], 16) == 1, form


async def test_replayed_nonce_reverts(devchain: Deployment, rpc: RpcClient) -> None:
    payer = devchain.payers[0]
    t = await now(rpc)
    auth = sign_authorization(
        payer.key, devchain, to=devchain.token, value=1_000_000, valid_after=0, valid_before=t + 600
    )
    first = await transact(
        rpc, devchain.relayer_key, devchain.usdc, calls.transfer_with_authorization_vrs(auth)
    )
    assert int(first["status"], 16) == 1
    payer_before = await balance(rpc, devchain.usdc, payer.address)

    for data in (
        calls.transfer_with_authorization_vrs(auth),
        calls.transfer_with_authorization_bytes(auth),
    ):
        reverted = await revert_data(rpc, devchain.usdc, data, devchain.relayer_address)
        assert reverted.startswith(error_selector("ERC3009UsedAuthorization(address,bytes32)"))
        receipt = await transact(rpc, devchain.relayer_key, devchain.usdc, data)
        assert int(receipt["status"], 16) == 0
    assert await balance(rpc, devchain.usdc, payer.address) == payer_before


@pytest.mark.parametrize("window", ["expired", "not_yet_valid"])
async def test_authorization_outside_its_window_reverts(
    devchain: Deployment, rpc: RpcClient, window: str
) -> None:
    payer = devchain.payers[0]
    t = await now(rpc)
    valid_after, valid_before = (0, t - 1) if window == "expired" else (t + 3600, t + 7200)
    auth = sign_authorization(
        payer.key,
        devchain,
        to=devchain.token,
        value=1_000_000,
        valid_after=valid_after,
        valid_before=valid_before,
    )
    for data in (
        calls.transfer_with_authorization_vrs(auth),
        calls.transfer_with_authorization_bytes(auth),
    ):
        reverted = await revert_data(rpc, devchain.usdc, data, devchain.relayer_address)
        assert reverted.startswith(
            error_selector("ERC3009InvalidAuthorizationTime(uint256,uint256)")
        )
        receipt = await transact(rpc, devchain.relayer_key, devchain.usdc, data)
        assert int(receipt["status"], 16) == 0
    state = calls.authorization_state(payer.address, auth.nonce)
    assert await read_bool(rpc, devchain.usdc, state) is False


async def test_wrong_signer_reverts(devchain: Deployment, rpc: RpcClient) -> None:
    victim, thief = devchain.payers[0], devchain.payers[1]
    t = await now(rpc)
    auth = sign_authorization(
        thief.key,
        devchain,
        from_=victim.address,
        to=thief.address,
        value=1_000_000,
        valid_after=0,
        valid_before=t + 600,
    )
    victim_before = await balance(rpc, devchain.usdc, victim.address)
    for data in (
        calls.transfer_with_authorization_vrs(auth),
        calls.transfer_with_authorization_bytes(auth),
    ):
        reverted = await revert_data(rpc, devchain.usdc, data, devchain.relayer_address)
        assert reverted == error_selector("ERC3009InvalidSignature()")
        receipt = await transact(rpc, devchain.relayer_key, devchain.usdc, data)
        assert int(receipt["status"], 16) == 0
    assert await balance(rpc, devchain.usdc, victim.address) == victim_before


async def test_authorization_for_another_domain_reverts(
    devchain: Deployment, rpc: RpcClient
) -> None:
    """A signature over the wrong EIP-712 name ("USD Coin") is the classic failure."""
    payer = devchain.payers[0]
    t = await now(rpc)
    wrong = Deployment.from_json({**devchain.to_json(), "usdc_name": "USD Coin"})
    auth = sign_authorization(
        payer.key, wrong, to=devchain.token, value=1, valid_after=0, valid_before=t + 600
    )
    reverted = await revert_data(
        rpc, devchain.usdc, calls.transfer_with_authorization_vrs(auth), payer.address
    )
    assert reverted == error_selector("ERC3009InvalidSignature()")


async def test_only_owner_mints_usdc(devchain: Deployment, rpc: RpcClient) -> None:
    payer = devchain.payers[0]
    reverted = await revert_data(
        rpc, devchain.usdc, calls.mint_usdc(payer.address, 1), payer.address
    )
    assert reverted.startswith(error_selector("OwnableUnauthorizedAccount(address)"))


# -- MintToken ------------------------------------------------------------------------


async def test_token_parameters(devchain: Deployment, rpc: RpcClient) -> None:
    token = devchain.token
    assert await read_uint(rpc, token, abi.encode_call("MINT_AMOUNT()", [])) == (
        devchain.mint_amount
    )
    assert await read_uint(rpc, token, abi.encode_call("MAX_MINT_COUNT()", [])) == (
        devchain.max_mint_count
    )
    assert await read_uint(rpc, token, abi.encode_call("PRICE_PER_MINT()", [])) == (
        devchain.price_per_mint
    )
    (asset,) = abi.decode_result(
        ["address"], await rpc.eth_call(token, abi.encode_call("PAYMENT_TOKEN()", []))
    )
    assert asset == devchain.usdc.lower()
    (minter_role,) = abi.decode_result(
        ["bytes32"], await rpc.eth_call(token, abi.encode_call("MINTER_ROLE()", []))
    )
    assert minter_role == calls.MINTER_ROLE


async def test_mint_once_per_id(devchain: Deployment, rpc: RpcClient) -> None:
    payer = devchain.payers[2]
    mint_id = fresh_id()
    count_call = abi.encode_call("mintCount()", [])
    count_before = await read_uint(rpc, devchain.token, count_call)
    tokens_before = await balance(rpc, devchain.token, payer.address)
    assert await read_bool(rpc, devchain.token, calls.has_minted(mint_id)) is False

    receipt = await transact(
        rpc, devchain.relayer_key, devchain.token, calls.mint(payer.address, mint_id)
    )

    assert int(receipt["status"], 16) == 1
    assert await read_bool(rpc, devchain.token, calls.has_minted(mint_id)) is True
    assert await balance(rpc, devchain.token, payer.address) == tokens_before + devchain.mint_amount
    assert await read_uint(rpc, devchain.token, count_call) == count_before + 1
    minted = [log for log in receipt["logs"] if log["topics"][0] == MINTED]
    assert len(minted) == 1
    assert minted[0]["topics"][1:] == [mint_id, topic_address(payer.address)]
    assert int(minted[0]["data"], 16) == devchain.mint_amount

    again = calls.mint(payer.address, mint_id)
    reverted = await revert_data(rpc, devchain.token, again, devchain.relayer_address)
    assert reverted == error_selector("AlreadyMinted(bytes32)") + mint_id[2:]
    receipt = await transact(rpc, devchain.relayer_key, devchain.token, again)
    assert int(receipt["status"], 16) == 0
    assert await balance(rpc, devchain.token, payer.address) == tokens_before + devchain.mint_amount


async def test_batch_mint(devchain: Deployment, rpc: RpcClient) -> None:
    payers = [p.address for p in devchain.payers[2:5]]
    ids = [fresh_id() for _ in payers]
    before = [await balance(rpc, devchain.token, p) for p in payers]

    receipt = await transact(
        rpc, devchain.relayer_key, devchain.token, calls.batch_mint(payers, ids)
    )

    assert int(receipt["status"], 16) == 1
    for payer, mint_id, was in zip(payers, ids, before, strict=True):
        assert await read_bool(rpc, devchain.token, calls.has_minted(mint_id)) is True
        assert await balance(rpc, devchain.token, payer) == was + devchain.mint_amount
    assert sum(1 for log in receipt["logs"] if log["topics"][0] == MINTED) == 3

    # One already-minted id reverts the whole batch: nothing of it is minted.
    new_id = fresh_id()
    replay = calls.batch_mint([payers[0], payers[1]], [new_id, ids[1]])
    reverted = await revert_data(rpc, devchain.token, replay, devchain.relayer_address)
    assert reverted == error_selector("AlreadyMinted(bytes32)") + ids[1][2:]
    assert await read_bool(rpc, devchain.token, calls.has_minted(new_id)) is False

    mismatched = abi.encode_call(
        "batchMint(address[],bytes32[])", [payers, [bytes.fromhex(new_id[2:])]]
    )
    reverted = await revert_data(rpc, devchain.token, mismatched, devchain.relayer_address)
    assert reverted == error_selector("LengthMismatch()")
    with pytest.raises(ValueError, match="mint ids"):
        calls.batch_mint(payers, [new_id])


async def test_max_mint_count_enforced(
    dev_chain: DevChain, devchain: Deployment, rpc: RpcClient
) -> None:
    token = await dev_chain.deploy_token(name="Tiny", symbol="TNY", max_mint_count=3)
    payer = devchain.payers[3].address
    ids = [fresh_id() for _ in range(4)]

    first = await transact(
        rpc, devchain.relayer_key, token, calls.batch_mint([payer, payer], ids[:2])
    )
    assert int(first["status"], 16) == 1
    # A batch that would cross the cap reverts as a whole.
    over = calls.batch_mint([payer, payer], ids[2:])
    reverted = await revert_data(rpc, token, over, devchain.relayer_address)
    assert reverted == error_selector("MaxMintCountReached()")

    third = await transact(rpc, devchain.relayer_key, token, calls.mint(payer, ids[2]))
    assert int(third["status"], 16) == 1
    fourth = calls.mint(payer, ids[3])
    reverted = await revert_data(rpc, token, fourth, devchain.relayer_address)
    assert reverted == error_selector("MaxMintCountReached()")
    receipt = await transact(rpc, devchain.relayer_key, token, fourth)
    assert int(receipt["status"], 16) == 0
    assert await read_uint(rpc, token, abi.encode_call("mintCount()", [])) == 3
    assert await balance(rpc, token, payer) == 3 * devchain.mint_amount


async def test_only_minter_role_mints(devchain: Deployment, rpc: RpcClient) -> None:
    outsider = devchain.payers[4]
    assert not await read_bool(
        rpc, devchain.token, calls.has_role(calls.MINTER_ROLE, outsider.address)
    )
    mint_id = fresh_id()
    for data in (
        calls.mint(outsider.address, mint_id),
        calls.batch_mint([outsider.address], [mint_id]),
    ):
        reverted = await revert_data(rpc, devchain.token, data, outsider.address)
        assert reverted.startswith(
            error_selector("AccessControlUnauthorizedAccount(address,bytes32)")
        )
        receipt = await transact(rpc, outsider.key, devchain.token, data)
        assert int(receipt["status"], 16) == 0
    assert await read_bool(rpc, devchain.token, calls.has_minted(mint_id)) is False


async def test_admin_withdraws_payments(devchain: Deployment, rpc: RpcClient) -> None:
    payer = devchain.payers[5]
    t = await now(rpc)
    auth = sign_authorization(
        payer.key, devchain, to=devchain.token, value=2_000_000, valid_after=0, valid_before=t + 60
    )
    paid = await transact(
        rpc, devchain.relayer_key, devchain.usdc, calls.transfer_with_authorization_vrs(auth)
    )
    assert int(paid["status"], 16) == 1
    treasury = Account.from_key(ANVIL_KEYS[0]).address
    withdraw = abi.encode_call(
        "withdraw(address,address,uint256)", [devchain.usdc, treasury, 2_000_000]
    )
    reverted = await revert_data(rpc, devchain.token, withdraw, payer.address)
    assert reverted.startswith(error_selector("AccessControlUnauthorizedAccount(address,bytes32)"))

    before = await balance(rpc, devchain.usdc, treasury)
    receipt = await transact(rpc, devchain.relayer_key, devchain.token, withdraw)
    assert int(receipt["status"], 16) == 1
    assert await balance(rpc, devchain.usdc, treasury) == before + 2_000_000
