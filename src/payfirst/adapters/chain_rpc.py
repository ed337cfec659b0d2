"""Ethereum JSON-RPC 2.0 over HTTP: the transport at the bottom of the chain adapter.

`RpcClient` speaks plain JSON-RPC through one `httpx.AsyncClient` (single calls, and
`call_many`: many calls as one JSON-RPC batch in one HTTP request) and offers typed
helpers for the few methods payfirst uses.
Quantities go out and come back as Python ints, data as `0x` hex strings or bytes.

Errors (the Chain port's, `payfirst.ports.chain`): a node that answered with a JSON-RPC
error raises `RpcError`, a `ChainRejected` (for a reverted `eth_call` or
`eth_estimateGas`, `data` holds the revert data); a node that could not be reached or
answered garbage raises `ChainUnavailable`. Nothing is retried here: the
pipeline decides what a failure means.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

import httpx

from payfirst.ports.chain import BlockId, ChainRejected, ChainUnavailable

__all__ = ["BlockId", "ChainUnavailable", "RpcClient", "RpcError", "to_hex"]


class RpcError(ChainRejected):
    """The node answered a JSON-RPC error object."""


def to_hex(value: int | bytes | str) -> str:
    """JSON-RPC form: ints as minimal `0x` quantities, bytes as `0x` data, str unchanged."""
    if isinstance(value, bool):
        raise TypeError("bool is not a JSON-RPC quantity")
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _block(block: BlockId) -> str:
    return hex(block) if isinstance(block, int) else block


def _quantity(value: Any) -> int:
    if not isinstance(value, str):
        raise ChainUnavailable(f"expected a hex quantity, got {value!r}")
    return int(value, 16)


def _raise_error(error: Any) -> RpcError:
    if not isinstance(error, dict):
        return RpcError(-32603, f"malformed error object: {error!r}")
    return RpcError(
        int(error.get("code", -32603)), str(error.get("message", "")), error.get("data")
    )


class RpcClient:
    """An async JSON-RPC client for one endpoint. Close it with `aclose()` (or use it as an
    async context manager). `transport` lets tests plug in `httpx.MockTransport`."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        # When (time.monotonic()) the endpoint last answered JSON-RPC: an outage ends only
        # when it answers again, not when a caller happened to need no call.
        self.answered_at = 0.0
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport ------------------------------------------------------------------

    async def _post(self, payload: Any) -> Any:
        try:
            response = await self._http.post(self.url, json=payload)
        except httpx.HTTPError as exc:
            raise ChainUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise ChainUnavailable(
                f"{self.url}: HTTP {response.status_code}, not JSON: {response.text[:200]!r}"
            ) from exc
        if response.status_code >= 400 and not (isinstance(body, dict) and "error" in body):
            raise ChainUnavailable(f"{self.url}: HTTP {response.status_code}: {body!r:.200}")
        self.answered_at = time.monotonic()
        return body

    async def call(self, method: str, *params: Any) -> Any:
        """Calls `method` and returns its `result`; raises `RpcError` or `ChainUnavailable`."""
        request_id = next(self._ids)
        body = await self._post(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        )
        if not isinstance(body, dict):
            raise ChainUnavailable(f"{self.url}: unexpected response to {method}: {body!r:.200}")
        if "error" in body and body["error"] is not None:
            raise _raise_error(body["error"])
        if "result" not in body:
            raise ChainUnavailable(f"{self.url}: no result for {method}: {body!r:.200}")
        return body["result"]

    async def call_many(
        self, calls: Sequence[tuple[str, Sequence[Any]]], *, return_errors: bool = False
    ) -> list[Any]:
        """Sends all `calls` as one JSON-RPC batch and returns their results in call order.

        An item the node answered with an error raises its `RpcError` (the first one, in
        call order); with `return_errors=True` the `RpcError` is put in the list instead,
        so one bad item does not hide the others' results.
        """
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": list(params)}
            for i, (method, params) in zip(ids, calls, strict=True)
        ]
        body = await self._post(payload)
        if isinstance(body, dict) and "error" in body:
            # The whole JSON-RPC batch was refused (e.g. batches disabled, or too large).
            raise _raise_error(body["error"])
        if not isinstance(body, list):
            raise ChainUnavailable(
                f"{self.url}: JSON-RPC batch answer is not a list: {body!r:.200}"
            )
        by_id: dict[Any, Any] = {item.get("id"): item for item in body if isinstance(item, dict)}
        results: list[Any] = []
        for request_id, (method, _) in zip(ids, calls, strict=True):
            item = by_id.get(request_id)
            if item is None:
                raise ChainUnavailable(
                    f"{self.url}: JSON-RPC batch answer lacks {method} (id {request_id})"
                )
            if item.get("error") is not None:
                error = _raise_error(item["error"])
                if not return_errors:
                    raise error
                results.append(error)
            else:
                results.append(item.get("result"))
        return results

    # -- typed helpers --------------------------------------------------------------

    async def chain_id(self) -> int:
        return _quantity(await self.call("eth_chainId"))

    async def block_number(self) -> int:
        return _quantity(await self.call("eth_blockNumber"))

    async def get_block(self, block: BlockId = "latest") -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.call(
            "eth_getBlockByNumber", _block(block), False
        )
        return result

    async def latest_base_fee(self) -> int:
        """`baseFeePerGas` of the latest block (0 on a chain without EIP-1559)."""
        block = await self.get_block("latest")
        if block is None:
            raise ChainUnavailable(f"{self.url}: no latest block")
        fee = block.get("baseFeePerGas")
        return _quantity(fee) if fee is not None else 0

    async def max_priority_fee(self) -> int:
        return _quantity(await self.call("eth_maxPriorityFeePerGas"))

    async def get_transaction_count(self, address: str, block: BlockId = "pending") -> int:
        return _quantity(await self.call("eth_getTransactionCount", address, _block(block)))

    async def get_balance(self, address: str, block: BlockId = "latest") -> int:
        return _quantity(await self.call("eth_getBalance", address, _block(block)))

    async def get_code(self, address: str, block: BlockId = "latest") -> bytes:
        return bytes.fromhex(str(await self.call("eth_getCode", address, _block(block)))[2:])

    async def send_raw_transaction(self, raw_hex: str) -> str:
        """Broadcasts a signed transaction; returns its hash (lowercase `0x` hex)."""
        return str(await self.call("eth_sendRawTransaction", raw_hex)).lower()

    async def get_transaction_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The receipt, or None while the transaction is not mined (or unknown)."""
        result: dict[str, Any] | None = await self.call("eth_getTransactionReceipt", tx_hash)
        return result

    async def get_transaction(self, tx_hash: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.call("eth_getTransactionByHash", tx_hash)
        return result

    async def wait_for_receipt(
        self, tx_hash: str, *, max_wait: float = 30.0, poll: float = 0.05
    ) -> dict[str, Any]:
        """Polls until `tx_hash` is mined; raises `TimeoutError` after `max_wait` seconds."""
        deadline = time.monotonic() + max_wait
        while True:
            receipt = await self.get_transaction_receipt(tx_hash)
            if receipt is not None:
                return receipt
            if time.monotonic() >= deadline:
                raise TimeoutError(f"transaction {tx_hash} not mined after {max_wait}s")
            await asyncio.sleep(poll)

    async def eth_call(
        self, to: str, data: str, block: BlockId = "latest", *, sender: str | None = None
    ) -> bytes:
        """Executes a read-only call; returns the return data. A revert raises `RpcError`."""
        tx: dict[str, str] = {"to": to, "data": data}
        if sender is not None:
            tx["from"] = sender
        result = await self.call("eth_call", tx, _block(block))
        return bytes.fromhex(str(result)[2:])

    async def estimate_gas(self, tx: dict[str, Any], block: BlockId | None = None) -> int:
        """Gas estimate for `tx` (JSON-RPC form; ints are converted to hex quantities)."""
        rpc_tx = {k: to_hex(v) if isinstance(v, int | bytes) else v for k, v in tx.items()}
        params: list[Any] = [rpc_tx] if block is None else [rpc_tx, _block(block)]
        return _quantity(await self.call("eth_estimateGas", *params))
