"""The Chain port over EVM JSON-RPC: `EvmChain` turns the node's raw answers into the
port's typed records. Every many-item method is one JSON-RPC batch (contract reads: RPC
batches of READS_PER_RPC_BATCH, sent concurrently, since providers cap their size)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from payfirst.adapters.chain_rpc import RpcClient, RpcError
from payfirst.evm import calls
from payfirst.evm.abi import checksum, decode_result
from payfirst.ports.chain import (
    AUTHORIZATION_USED_TOPIC,
    AssetTerms,
    AuthorizationRef,
    Block,
    BlockId,
    ChainRejected,
    ChainUnavailable,
    Log,
    MintTokenTerms,
    Receipt,
)

log = logging.getLogger("payfirst.chain")

# Contract reads per JSON-RPC batch (providers cap batch sizes).
READS_PER_RPC_BATCH = 100

T = TypeVar("T")
_Call = tuple[str, list[Any]]


class EvmChain:
    """The Chain port on one `RpcClient` (which the caller owns and closes): for a network
    of several RPC URLs a `FailoverRpcClient`, so every method moves to the next URL when
    one cannot be reached, and `answered_at` is when any of them last answered."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    @property
    def answered_at(self) -> float:
        return self.rpc.answered_at

    async def chain_id(self) -> int:
        return await self.rpc.chain_id()

    async def block_number(self) -> int:
        return await self.rpc.block_number()

    async def get_block(self, block: BlockId = "latest") -> Block | None:
        return _block(await self.rpc.get_block(block))

    async def get_blocks(self, numbers: Sequence[int]) -> list[Block | None]:
        answers = await self.rpc.call_many(
            [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
        )
        return [_block(a) for a in answers]

    async def latest_base_fee(self) -> int:
        return await self.rpc.latest_base_fee()

    async def get_transaction_count(self, address: str, block: BlockId = "pending") -> int:
        return await self.rpc.get_transaction_count(address, block)

    async def get_transaction_counts(self, addresses: Sequence[str], block: BlockId) -> list[int]:
        answers = await self.rpc.call_many(
            [("eth_getTransactionCount", [a, _tag(block)]) for a in addresses]
        )
        return [_quantity(a) for a in answers]

    async def get_receipts(self, tx_hashes: Sequence[str]) -> list[Receipt | None]:
        answers = await self.rpc.call_many([("eth_getTransactionReceipt", [h]) for h in tx_hashes])
        return [_receipt(a) if isinstance(a, dict) else None for a in answers]

    async def authorization_states(
        self, authorizations: Sequence[AuthorizationRef], block: BlockId
    ) -> list[bool | None]:
        return await self._reads(
            [
                _eth_call(a.asset, calls.authorization_state(a.authorizer, a.nonce), block)
                for a in authorizations
            ],
            lambda raw: bool(decode_result(["bool"], raw)[0]),
        )

    async def balances(
        self, holdings: Sequence[tuple[str, str]], block: BlockId
    ) -> list[int | None]:
        return await self._reads(
            [_eth_call(asset, calls.balance_of(holder), block) for asset, holder in holdings],
            lambda raw: int(decode_result(["uint256"], raw)[0]),
        )

    async def native_balances(self, holders: Sequence[str], block: BlockId) -> list[int | None]:
        return await self._reads(
            [("eth_getBalance", [holder, _tag(block)]) for holder in holders], _quantity
        )

    async def has_minted(self, mints: Sequence[tuple[str, str]], block: BlockId) -> list[bool]:
        answers = await self.rpc.call_many(
            [_eth_call(token, calls.has_minted(mint_id), block) for token, mint_id in mints]
        )
        return [bool(decode_result(["bool"], a)[0]) for a in answers]

    async def authorization_logs(
        self, authorization: AuthorizationRef, from_block: int, to_block: int
    ) -> list[Log]:
        logs = await self.rpc.call(
            "eth_getLogs",
            {
                "address": authorization.asset,
                "fromBlock": hex(from_block),
                "toBlock": hex(to_block),
                "topics": [
                    AUTHORIZATION_USED_TOPIC,
                    "0x" + authorization.authorizer[2:].lower().rjust(64, "0"),
                    authorization.nonce,
                ],
            },
        )
        return [_log(entry) for entry in logs or []]

    async def has_code(self, address: str, block: BlockId) -> bool:
        code = await self.rpc.call("eth_getCode", address, _tag(block))
        if not isinstance(code, str) or not code.startswith("0x"):
            raise ChainUnavailable(f"expected code as 0x hex, got {code!r:.100}")
        return len(code) > 2

    async def mint_token_terms(self, token: str, block: BlockId) -> MintTokenTerms | None:
        answers = await self._read_each(
            token, [(calls.getter(f), [t]) for f, t in calls.MINT_TOKEN_READS], block
        )
        if any(a is None for a in answers):
            return None
        name, symbol, mint_amount, max_count, price, payment, count, role = (
            a[0] for a in answers if a is not None
        )
        return MintTokenTerms(
            address=checksum(token),
            name=str(name),
            symbol=str(symbol),
            mint_amount=int(mint_amount),
            max_mint_count=int(max_count),
            price_per_mint=int(price),
            payment_token=checksum(str(payment)),
            mint_count=int(count),
            minter_role=bytes(role),
        )

    async def asset_terms(self, asset: str, block: BlockId) -> AssetTerms | None:
        nobody = "0x" + "00" * 20
        domain, name, version, decimals, state = await self._read_each(
            asset,
            [
                (calls.getter("eip712Domain()"), calls.EIP712_DOMAIN_TYPES),
                (calls.getter("name()"), ["string"]),
                (calls.getter("version()"), ["string"]),
                (calls.getter("decimals()"), ["uint8"]),
                (calls.authorization_state(nobody, b"\x00" * 32), ["bool"]),
            ],
            block,
        )
        if decimals is None:
            return None
        eip3009 = state is not None
        if domain is not None:
            _, d_name, d_version, d_chain_id, d_contract, _, _ = domain
            return AssetTerms(
                address=checksum(asset),
                name=str(d_name),
                version=str(d_version),
                decimals=int(decimals[0]),
                eip3009=eip3009,
                domain_chain_id=int(d_chain_id),
                verifying_contract=checksum(str(d_contract)),
            )
        if name is None or version is None:
            return None
        return AssetTerms(
            address=checksum(asset),
            name=str(name[0]),
            version=str(version[0]),
            decimals=int(decimals[0]),
            eip3009=eip3009,
        )

    async def have_role(
        self, contract: str, role: bytes, accounts: Sequence[str], block: BlockId
    ) -> list[bool | None]:
        return await self._reads(
            [_eth_call(contract, calls.has_role(role, a), block) for a in accounts],
            lambda raw: bool(decode_result(["bool"], raw)[0]),
        )

    async def send_raw_transaction(self, raw_tx: str) -> str:
        return await self.rpc.send_raw_transaction(raw_tx)

    async def send_raw_transactions(self, raw_txs: Sequence[str]) -> list[str | ChainRejected]:
        answers = await self.rpc.call_many(
            [("eth_sendRawTransaction", [raw]) for raw in raw_txs], return_errors=True
        )
        return [a if isinstance(a, RpcError) else str(a).lower() for a in answers]

    async def _reads(self, reads: list[_Call], decode: Callable[[str], T]) -> list[T | None]:
        """`eth_call`s decoded in call order; an item the node refused or answered with
        unreadable data is None, and so is every item of an RPC batch it refused as a whole."""

        async def chunk(part: list[_Call]) -> list[T | None]:
            try:
                answers = await self.rpc.call_many(part, return_errors=True)
            except RpcError as exc:
                log.warning("contract reads refused (%s): their answers are unknown", exc)
                return [None] * len(part)
            return [_decoded(decode, a) for a in answers]

        size = READS_PER_RPC_BATCH
        parts = await asyncio.gather(
            *(chunk(reads[i : i + size]) for i in range(0, len(reads), size))
        )
        return [answer for part in parts for answer in part]

    async def _read_each(
        self, to: str, reads: Sequence[tuple[str, list[str]]], block: BlockId
    ) -> list[tuple[Any, ...] | None]:
        """Reads of one contract in one JSON-RPC batch, each decoded as its own types; a
        read that reverted or answered unreadable data is None."""
        answers = await self.rpc.call_many(
            [_eth_call(to, data, block) for data, _ in reads], return_errors=True
        )
        return [
            _decoded(functools.partial(_decode_as, types), a)
            for (_, types), a in zip(reads, answers, strict=True)
        ]


def _decode_as(types: list[str], raw: str) -> tuple[Any, ...]:
    return decode_result(types, raw)


def _decoded(decode: Callable[[str], T], answer: Any) -> T | None:
    if not isinstance(answer, str):
        return None
    try:
        return decode(answer)
    except Exception:  # an empty or short answer (no contract there): unknown
        return None


def _eth_call(to: str, data: str, block: BlockId) -> _Call:
    return ("eth_call", [{"to": to, "data": data}, _tag(block)])


def _tag(block: BlockId) -> str:
    return hex(block) if isinstance(block, int) else block


def _quantity(value: Any) -> int:
    if not isinstance(value, str):
        raise ChainUnavailable(f"expected a hex quantity, got {value!r}")
    return int(value, 16)


def _block(raw: Any) -> Block | None:
    if not isinstance(raw, dict):
        return None
    base_fee = raw.get("baseFeePerGas")
    return Block(
        number=_quantity(raw.get("number")),
        timestamp=_quantity(raw.get("timestamp")),
        hash=str(raw.get("hash")).lower(),
        base_fee=_quantity(base_fee) if base_fee is not None else 0,
        gas_limit=_quantity(raw.get("gasLimit")),
    )


def _log(raw: dict[str, Any]) -> Log:
    return Log(
        address=str(raw.get("address")),
        topics=tuple(str(t) for t in raw.get("topics") or []),
        data=str(raw.get("data") or "0x"),
        block_number=_quantity(raw.get("blockNumber")),
        tx_hash=str(raw.get("transactionHash")).lower(),
        removed=bool(raw.get("removed")),
    )


def _receipt(raw: dict[str, Any]) -> Receipt:
    to = raw.get("to")
    return Receipt(
        tx_hash=str(raw.get("transactionHash")).lower(),
        block_number=_quantity(raw.get("blockNumber")),
        block_hash=str(raw.get("blockHash")).lower(),
        success=_quantity(raw.get("status")) == 1,
        to=str(to) if to else None,
        logs=tuple(_log(entry) for entry in raw.get("logs") or []),
    )
