"""DevChain: starting anvil, attaching to a running chain, stopping, and what it deploys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from payfirst.adapters.chain_rpc import ChainUnavailable, RpcClient, RpcError
from payfirst.adapters.devchain import (
    ANVIL_KEYS,
    Deployment,
    DevAccount,
    DevChain,
    DevChainError,
    free_port,
)
from payfirst.domain.models import Token
from payfirst.evm import abi, calls


async def usdc_balance(rpc: RpcClient, deployment: Deployment, holder: str) -> int:
    (value,) = abi.decode_result(
        ["uint256"], await rpc.eth_call(deployment.usdc, calls.balance_of(holder))
    )
    return int(value)


async def is_minter(rpc: RpcClient, token: str, account: str) -> bool:
    (value,) = abi.decode_result(
        ["bool"], await rpc.eth_call(token, calls.has_role(calls.MINTER_ROLE, account))
    )
    return bool(value)


def test_anvil_keys_are_the_dev_accounts() -> None:
    assert len(ANVIL_KEYS) == 10
    assert (
        DevAccount.from_key(ANVIL_KEYS[0]).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    )
    assert (
        DevAccount.from_key(ANVIL_KEYS[9]).address == "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"
    )


async def test_session_chain_is_deployed(devchain: Deployment, rpc: RpcClient) -> None:
    assert devchain.chain_id == 31337 == await rpc.chain_id()
    assert devchain.rpc_url.startswith("http://127.0.0.1:")
    accounts = await rpc.call("eth_accounts")
    assert [a.lower() for a in accounts] == [
        DevAccount.from_key(k).address.lower() for k in ANVIL_KEYS
    ]
    assert devchain.relayer_address == DevAccount.from_key(ANVIL_KEYS[0]).address
    assert [p.key for p in devchain.payers] == list(ANVIL_KEYS[1:])
    assert await is_minter(rpc, devchain.token, devchain.relayer_address)
    assert len(await rpc.get_code(devchain.usdc)) > 0
    assert len(await rpc.get_code(devchain.token)) > 0


async def test_start_stop_fresh_chain(tmp_path: Path) -> None:
    chain = DevChain()
    deployment = await chain.start(max_mint_count=7, price_per_mint=2_500_000)
    try:
        rpc = chain.rpc
        for payer in deployment.payers:
            assert await usdc_balance(rpc, deployment, payer.address) == 1_000_000 * 10**6
        assert await usdc_balance(rpc, deployment, deployment.relayer_address) == 0
        assert await is_minter(rpc, deployment.token, deployment.relayer_address)
        assert not await is_minter(rpc, deployment.token, deployment.payers[0].address)

        token = deployment.to_token()
        assert token == Token(
            address=deployment.token,
            chain_id=31337,
            name="Payfirst Demo",
            symbol="PFD",
            payment_asset=deployment.usdc,
            asset_name="USDC",
            asset_version="2",
            asset_decimals=6,
            price_per_mint=2_500_000,
            mint_amount=1000 * 10**18,
            max_mint_count=7,
            reserved_count=0,
        )
        assert token.remaining == 7

        path = tmp_path / "var" / "devchain.json"
        deployment.save(path)
        assert Deployment.load(path) == deployment
        assert Deployment.from_json(deployment.to_json()) == deployment
    finally:
        await chain.stop()
    async with RpcClient(deployment.rpc_url, timeout=1.0) as probe:
        with pytest.raises(ChainUnavailable):
            await probe.chain_id()


async def test_attach_does_not_own_the_chain(devchain: Deployment, rpc: RpcClient) -> None:
    attached = DevChain()
    deployment = await attached.start(rpc_url=devchain.rpc_url, token_symbol="PF2")
    try:
        assert deployment.rpc_url == devchain.rpc_url
        assert deployment.usdc != devchain.usdc
        assert deployment.token != devchain.token
        assert deployment.token_symbol == "PF2"
        payer = deployment.payers[0].address
        assert await usdc_balance(rpc, deployment, payer) == 1_000_000 * 10**6
    finally:
        await attached.stop()
    assert await rpc.chain_id() == 31337  # stopping an attached DevChain leaves anvil running


async def test_start_on_given_port_with_interval_mining() -> None:
    """A port of our own choosing, and blocks every 0.2 s instead of automine."""
    chain = DevChain()
    port = free_port()
    deployment = await chain.start(port=port, block_time=0.2, funded_payers=2)
    try:
        assert deployment.rpc_url == f"http://127.0.0.1:{port}"
        assert len(deployment.payers) == 2
        for payer in deployment.payers:
            assert await usdc_balance(chain.rpc, deployment, payer.address) == 10**12
    finally:
        await chain.stop()


async def test_start_twice_is_refused(devchain: Deployment) -> None:
    chain = DevChain()
    await chain.start(rpc_url=devchain.rpc_url, funded_payers=0)
    try:
        with pytest.raises(DevChainError, match="already started"):
            await chain.start(rpc_url=devchain.rpc_url)
    finally:
        await chain.stop()


# -- RpcClient against anvil -------------------------------------------------------------


async def test_rpc_call_many_keeps_call_order(devchain: Deployment, rpc: RpcClient) -> None:
    payer = devchain.payers[0].address
    chain_id, number, nonce, empty = await rpc.call_many(
        [
            ("eth_chainId", []),
            ("eth_blockNumber", []),
            ("eth_getTransactionCount", [payer, "latest"]),
            ("eth_getTransactionReceipt", ["0x" + "00" * 32]),
        ]
    )
    assert int(chain_id, 16) == 31337
    assert int(number, 16) <= await rpc.block_number() <= int(number, 16) + 1  # 0.5 s blocks
    assert int(nonce, 16) == await rpc.get_transaction_count(payer, "latest")
    assert empty is None
    assert await rpc.call_many([]) == []


async def test_rpc_call_many_errors_per_item(devchain: Deployment, rpc: RpcClient) -> None:
    requests: list[tuple[str, list[object]]] = [
        ("eth_chainId", []),
        ("eth_noSuchMethod", []),
        ("eth_blockNumber", []),
    ]
    with pytest.raises(RpcError):
        await rpc.call_many(requests)
    first, error, third = await rpc.call_many(requests, return_errors=True)
    assert int(first, 16) == 31337
    assert isinstance(error, RpcError)
    assert error.code != 0
    assert int(third, 16) > 0


async def test_rpc_call_error_and_unavailable() -> None:
    with pytest.raises(RpcError) as info:
        async with RpcClient(
            "http://127.0.0.1:1",
            transport=httpx.MockTransport(
                lambda request: httpx.Response(
                    200,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "error": {"code": 3, "message": "execution reverted", "data": "0x1234"},
                    },
                )
            ),
        ) as failing:
            await failing.eth_call("0x" + "11" * 20, "0x")
    assert (info.value.code, info.value.revert_data) == (3, "0x1234")

    async with RpcClient(
        "http://127.0.0.1:1",
        transport=httpx.MockTransport(lambda request: httpx.Response(502, text="bad gateway")),
    ) as broken:
        with pytest.raises(ChainUnavailable, match="502"):
            await broken.block_number()
    async with RpcClient(f"http://127.0.0.1:{free_port()}", timeout=1.0) as nobody:
        with pytest.raises(ChainUnavailable):
            await nobody.chain_id()
