"""The JSON-RPC Chain adapter without a node (httpx.MockTransport): raw answers become the
port's typed records, a batch method is one HTTP request (contract reads: one per
READS_PER_RPC_BATCH), and what the node did not answer readably is None, never a value."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.evm_chain import READS_PER_RPC_BATCH, EvmChain
from payfirst.ports.chain import AUTHORIZATION_USED_TOPIC, AuthorizationRef, ChainRejected

ASSET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NONCE = "0x" + "01" * 32
TRUE = "0x" + "00" * 31 + "01"

Answer = Callable[[dict[str, Any]], dict[str, Any]]


class Node:
    """Answers each JSON-RPC request with `answer(request)`; counts the HTTP requests."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.posts: list[Any] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.posts.append(body)
        if isinstance(body, list):
            return httpx.Response(200, json=[self._one(item) for item in body])
        return httpx.Response(200, json=self._one(body))

    def _one(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request["id"], **self.answer(request)}


@pytest.fixture
async def node_chain() -> AsyncIterator[Callable[[Answer], tuple[Node, EvmChain]]]:
    clients: list[RpcClient] = []

    def make(answer: Answer) -> tuple[Node, EvmChain]:
        node = Node(answer)
        rpc = RpcClient("http://127.0.0.1:8545", transport=httpx.MockTransport(node.handle))
        clients.append(rpc)
        return node, EvmChain(rpc)

    yield make
    for rpc in clients:
        await rpc.aclose()


async def test_a_receipt_becomes_a_typed_record_with_its_authorizations(
    node_chain: Callable[[Answer], tuple[Node, EvmChain]],
) -> None:
    payer_topic = "0x" + PAYER[2:].lower().rjust(64, "0")
    receipt = {
        "transactionHash": "0x" + "AA" * 32,
        "blockNumber": "0x10",
        "blockHash": "0x" + "BB" * 32,
        "status": "0x1",
        "to": ASSET,
        "logs": [
            {
                "address": ASSET,
                "topics": [AUTHORIZATION_USED_TOPIC, payer_topic, NONCE],
                "data": "0x",
                "blockNumber": "0x10",
                "transactionHash": "0x" + "aa" * 32,
            }
        ],
    }

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        known = request["params"][0] == receipt["transactionHash"]
        return {"result": receipt if known else None}

    node, chain = node_chain(answer)
    got, missing = await chain.get_receipts([str(receipt["transactionHash"]), "0x" + "cc" * 32])
    assert len(node.posts) == 1 and len(node.posts[0]) == 2  # one batch
    assert missing is None
    assert got is not None
    assert (got.tx_hash, got.block_number, got.success) == ("0x" + "aa" * 32, 16, True)
    assert got.block_hash == "0x" + "bb" * 32
    assert got.used(AuthorizationRef(ASSET, PAYER, NONCE))
    assert not got.used(AuthorizationRef(ASSET, PAYER, "0x" + "02" * 32))


async def test_contract_reads_go_in_batches_and_unreadable_answers_are_unknown(
    node_chain: Callable[[Answer], tuple[Node, EvmChain]],
) -> None:
    def answer(request: dict[str, Any]) -> dict[str, Any]:
        holder = request["params"][0]["data"][-40:]
        if holder.endswith("01"):
            return {"error": {"code": -32000, "message": "execution reverted"}}
        if holder.endswith("02"):
            return {"result": "0x"}  # no contract there
        return {"result": "0x" + "00" * 31 + "07"}

    node, chain = node_chain(answer)
    holders = [(ASSET, "0x" + f"{i:040x}") for i in range(READS_PER_RPC_BATCH + 5)]
    balances = await chain.balances(holders, 12)
    assert [len(post) for post in node.posts] == [READS_PER_RPC_BATCH, 5]
    assert all(post[0]["params"][1] == "0xc" for post in node.posts)  # pinned to block 12
    assert balances[0] == 7
    assert balances[1] is None and balances[2] is None
    assert balances[READS_PER_RPC_BATCH + 4] == 7


async def test_a_batch_refused_as_a_whole_reads_as_unknown(
    node_chain: Callable[[Answer], tuple[Node, EvmChain]],
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        error = {"code": -32600, "message": "batch too large"}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": None, "error": error})

    async with RpcClient("http://127.0.0.1:8545", transport=httpx.MockTransport(refuse)) as rpc:
        states = await EvmChain(rpc).authorization_states(
            [AuthorizationRef(ASSET, PAYER, NONCE)] * 3, "latest"
        )
    assert states == [None, None, None]


async def test_authorization_states_and_refused_broadcasts(
    node_chain: Callable[[Answer], tuple[Node, EvmChain]],
) -> None:
    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if request["method"] == "eth_call":
            return {"result": TRUE}
        if request["params"][0] == "0x02bad":
            return {"error": {"code": -32000, "message": "nonce too low"}}
        return {"result": "0x" + "AB" * 32}

    node, chain = node_chain(answer)
    assert await chain.authorization_states([AuthorizationRef(ASSET, PAYER, NONCE)], 5) == [True]
    sent = await chain.send_raw_transactions(["0x02ok", "0x02bad"])
    assert sent[0] == "0x" + "ab" * 32
    assert isinstance(sent[1], ChainRejected) and sent[1].message == "nonce too low"
    assert len(node.posts) == 2
