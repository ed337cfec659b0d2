"""A network's RPC URLs as fallbacks (`FailoverRpcClient`), on a real anvil: a URL that
cannot answer (refused, silent past the timeout, HTTP 503) is passed over for the next, a
JSON-RPC error is an answer and never is, the URL that answered is kept until the first is
tried again, and at start-up every URL must serve the network's chain."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from eth_account import Account

from payfirst.adapters.chain_rpc import ChainUnavailable, FailoverRpcClient, RpcError
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain, free_port
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.app import Unreachable, open_networks
from payfirst.config import Config
from payfirst.domain.errors import ConfigError
from payfirst.evm import signing
from payfirst.ports.chain import ChainRejected
from tests.e2e.tcp_proxy import TcpProxy, stable_port

ANVIL_CHAIN_ID = 31337
OTHER_CHAIN_ID = 31338
DEPLOYER = ANVIL_KEYS[0]  # deployed the demo contracts: its nonce 0 is long used
TIMEOUT_S = 0.5  # the per-request timeout of the clients here (a silent URL costs this)


class Recording(httpx.AsyncHTTPTransport):
    """Notes the URL of every request attempt; answers HTTP 503 for those in `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.down: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        self.seen.append(url)
        if url in self.down:
            return httpx.Response(503, text="upstream unavailable")
        return await super().handle_async_request(request)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def closed_url() -> str:
    """A loopback URL nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


@pytest_asyncio.fixture
async def silent_url() -> AsyncIterator[str]:
    """A loopback server that accepts connections and never answers."""
    release = asyncio.Event()

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        release.set()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


@pytest_asyncio.fixture
async def proxy(devchain: Deployment) -> AsyncIterator[TcpProxy]:
    """A second URL of the dev chain (a TCP proxy in front of it) that can be taken down."""
    anvil_port = urlsplit(devchain.rpc_url).port
    assert anvil_port is not None
    relay = TcpProxy("127.0.0.1", anvil_port, stable_port())
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


def client(urls: list[str], transport: Recording, clock: Clock | None = None) -> FailoverRpcClient:
    return FailoverRpcClient(
        urls, TIMEOUT_S, transport=transport, clock=clock or Clock(), primary_retry_s=60.0
    )


def stale_tx(chain_id: int) -> str:
    """A signed tx from the deployer at nonce 0: every node answers "nonce too low"."""
    signed = signing.sign_transaction(
        DEPLOYER,
        {
            "chainId": chain_id,
            "nonce": 0,
            "gas": 21_000,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
            "to": "0x" + "11" * 20,
            "data": "0x",
            "value": 0,
        },
    )
    return signed.raw


@pytest.mark.parametrize("failure", ["refused", "timeout", "http 503"])
async def test_calls_go_to_the_next_url_when_the_first_cannot_answer(
    devchain: Deployment, silent_url: str, failure: str
) -> None:
    transport = Recording()
    dead = {"refused": closed_url(), "timeout": silent_url, "http 503": closed_url()}[failure]
    if failure == "http 503":
        transport.down.add(dead)
    live = devchain.rpc_url
    async with client([dead, live], transport) as rpc:
        chain = EvmChain(rpc)
        head = await chain.block_number()
        assert head > 0
        assert transport.seen == [dead, live]
        assert rpc.url == live
        assert rpc.answered_at > 0
        # Sticky: the next calls (a single call, a JSON-RPC batch, contract reads) go
        # straight to the URL that answered.
        transport.seen.clear()
        blocks = await chain.get_blocks([head - 1, head])
        assert [b.number if b else None for b in blocks] == [head - 1, head]
        payer = str(Account.from_key(ANVIL_KEYS[1]).address)
        (balance,) = await chain.balances([(devchain.usdc, payer)], "latest")
        assert balance is not None and balance > 0
        assert set(transport.seen) == {live}


async def test_a_json_rpc_error_is_an_answer_and_does_not_switch(
    devchain: Deployment, proxy: TcpProxy
) -> None:
    transport = Recording()
    first, second = devchain.rpc_url, proxy.url
    async with client([first, second], transport) as rpc:
        chain = EvmChain(rpc)
        with pytest.raises(RpcError, match="nonce too low"):
            await chain.send_raw_transaction(stale_tx(ANVIL_CHAIN_ID))
        (answer,) = await chain.send_raw_transactions([stale_tx(ANVIL_CHAIN_ID)])
        assert isinstance(answer, ChainRejected)
        with pytest.raises(RpcError):
            await rpc.call("eth_noSuchMethod")
        assert transport.seen == [first, first, first]
        assert rpc.url == first


async def test_all_urls_dead_is_chain_unavailable(silent_url: str) -> None:
    transport = Recording()
    refused = closed_url()
    async with client([refused, silent_url], transport) as rpc:
        with pytest.raises(ChainUnavailable, match="none of 2 RPC URLs answered") as caught:
            await EvmChain(rpc).block_number()
        assert refused in str(caught.value) and silent_url in str(caught.value)
        assert transport.seen == [refused, silent_url]
        assert rpc.answered_at == 0.0  # the worker's outage tracker sees no answer
    async with client([refused], Recording()) as alone:
        with pytest.raises(ChainUnavailable, match="ConnectError"):
            await alone.block_number()


async def test_sticky_then_back_to_the_first_url_after_a_while(
    devchain: Deployment, proxy: TcpProxy
) -> None:
    transport, clock = Recording(), Clock()
    first, second = proxy.url, devchain.rpc_url
    async with client([first, second], transport, clock) as rpc:
        await rpc.block_number()
        assert transport.seen == [first]

        await proxy.stop()  # the first node goes down
        transport.seen.clear()
        await rpc.block_number()
        assert transport.seen == [first, second]

        await proxy.start()  # back, but the fallback that answered is kept for a while
        transport.seen.clear()
        clock.now += 59
        await rpc.block_number()
        await rpc.call_many([("eth_chainId", []), ("eth_blockNumber", [])])
        assert transport.seen == [second, second]
        assert rpc.url == second

        clock.now += 1  # 60 s on the fallback: the first URL is tried again, and kept
        transport.seen.clear()
        await rpc.block_number()
        await rpc.block_number()
        assert transport.seen == [first, first]
        assert rpc.url == first

        # The first URL fails again: the fallback serves, and the first is tried again
        # only after another 60 s, not at every call.
        await proxy.stop()
        await rpc.block_number()
        clock.now += 60
        transport.seen.clear()
        await rpc.block_number()  # tried the first again: still down
        clock.now += 30
        await rpc.block_number()
        assert transport.seen == [first, second, second]
        clock.now += 30
        transport.seen.clear()
        await rpc.block_number()
        assert transport.seen == [first, second]


def _networks_file(tmp_path: Path, deployment: Deployment, urls: list[str]) -> Path:
    key_file = tmp_path / "relayer.keys"
    key_file.write_text(ANVIL_KEYS[0] + "\n")
    path = tmp_path / "networks.toml"
    rpc_urls = ", ".join(f'"{url}"' for url in urls)
    path.write_text(
        f"""
[[network]]
id = "eip155:{ANVIL_CHAIN_ID}"
rpc_urls = [{rpc_urls}]
relayer_key_file = "{key_file}"

[[network.asset]]
address = "{deployment.usdc}"
name = "{deployment.usdc_name}"
version = "{deployment.usdc_version}"
decimals = 6
"""
    )
    return path


@pytest_asyncio.fixture
async def other_chain() -> AsyncIterator[Deployment]:
    chain = DevChain()
    try:
        yield await chain.start(chain_id=OTHER_CHAIN_ID)
    finally:
        await chain.stop()


async def test_start_up_checks_the_chain_of_every_url(
    devchain: Deployment,
    other_chain: Deployment,
    proxy: TcpProxy,
    pg_store: PostgresStore,
    tmp_path: Path,
) -> None:
    def config(*urls: str) -> Config:
        return Config(networks_file=_networks_file(tmp_path, devchain, list(urls)))

    # A fallback serving another chain is refused, wherever it is in the list.
    for urls in ([devchain.rpc_url, other_chain.rpc_url], [other_chain.rpc_url, proxy.url]):
        with pytest.raises(
            ConfigError,
            match=re.escape(
                f"eip155:{ANVIL_CHAIN_ID}: the RPC at {other_chain.rpc_url} serves another "
                f"chain ({OTHER_CHAIN_ID})"
            ),
        ):
            await open_networks(config(*urls), pg_store, None, None)
    # So is one that cannot be reached: its chain cannot be checked.
    dead = closed_url()
    with pytest.raises(Unreachable, match=re.escape(f"the chain RPC at {dead} is unreachable")):
        await open_networks(config(devchain.rpc_url, dead), pg_store, None, None)

    # All on the chain: the network's Chain uses them all.
    (network,) = await open_networks(config(proxy.url, devchain.rpc_url), pg_store, None, None)
    try:
        assert isinstance(network.rpc, FailoverRpcClient)
        assert network.rpc.urls == (proxy.url, devchain.rpc_url)
        assert await network.chain.chain_id() == ANVIL_CHAIN_ID
        await proxy.stop()
        assert await network.chain.block_number() > 0
        assert network.rpc.url == devchain.rpc_url
    finally:
        await network.rpc.aclose()
