"""Ethereum JSON-RPC 2.0 over HTTP: the transport at the bottom of the chain adapter.

`RpcClient` speaks plain JSON-RPC through one `httpx.AsyncClient` (single calls, and
`call_many`: many calls as one JSON-RPC batch in one HTTP request) and offers typed
helpers for the few methods payfirst uses.
Quantities go out and come back as Python ints, data as `0x` hex strings or bytes.

Errors (the Chain port's, `payfirst.ports.chain`): a node that answered with a JSON-RPC
error raises `RpcError`, a `ChainRejected` (for a reverted `eth_call` or
`eth_estimateGas`, `data` holds the revert data); a node that could not be reached or
answered garbage raises `ChainUnavailable`. `RpcClient` retries nothing: the pipeline
decides what a failure means. `FailoverRpcClient` speaks to one chain through several
URLs and sends a request the current URL cannot answer to the next one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from payfirst.metrics import metrics, rpc_method
from payfirst.ports.chain import BlockId, ChainRejected, ChainUnavailable

__all__ = [
    "PRIMARY_RETRY_S",
    "BlockId",
    "ChainUnavailable",
    "FailoverRpcClient",
    "RpcClient",
    "RpcError",
    "to_hex",
]

log = logging.getLogger("payfirst.chain")

#: How long `FailoverRpcClient` stays on a fallback URL before it tries the first again.
PRIMARY_RETRY_S = 60.0


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


def _result(url: str, method: str, body: Any) -> Any:
    """The `result` of a single call's answer `body`."""
    if not isinstance(body, dict):
        raise ChainUnavailable(f"{url}: unexpected response to {method}: {body!r:.200}")
    if "error" in body and body["error"] is not None:
        raise _raise_error(body["error"])
    if "result" not in body:
        raise ChainUnavailable(f"{url}: no result for {method}: {body!r:.200}")
    return body["result"]


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
        network: str = "unknown",
    ) -> None:
        self.url = url
        #: The CAIP-2 id of the chain it serves: its metrics' label (never the URL, which
        #: may carry an API key).
        self.network = network
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport ------------------------------------------------------------------

    async def _post(self, payload: Any) -> Any:
        """The endpoint's JSON answer to `payload` (a JSON-RPC error object included)."""
        return await self._post_to(self.url, payload)

    async def _post_to(self, url: str, payload: Any) -> Any:
        m = metrics()
        method = rpc_method(payload)
        started = time.monotonic()
        try:
            body = await self._answer(url, payload)
        except ChainUnavailable:
            m.rpc_requests.labels(self.network, method, "unavailable").inc()
            raise
        finally:
            m.rpc_seconds.labels(self.network).observe(time.monotonic() - started)
        failed = isinstance(body, dict) and body.get("error") is not None
        m.rpc_requests.labels(self.network, method, "error" if failed else "ok").inc()
        return body

    async def _answer(self, url: str, payload: Any) -> Any:
        try:
            response = await self._http.post(url, json=payload)
        except httpx.HTTPError as exc:
            raise ChainUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise ChainUnavailable(
                f"{url}: HTTP {response.status_code}, not JSON: {response.text[:200]!r}"
            ) from exc
        if response.status_code >= 400 and not (isinstance(body, dict) and "error" in body):
            raise ChainUnavailable(f"{url}: HTTP {response.status_code}: {body!r:.200}")
        self.answered_at = time.monotonic()
        return body

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}

    async def call(self, method: str, *params: Any) -> Any:
        """Calls `method` and returns its `result`; raises `RpcError` or `ChainUnavailable`."""
        body = await self._post(self._request(method, params))
        return _result(self.url, method, body)  # `url` after `_post`: the URL that answered

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
        payload = [self._request(method, params) for method, params in calls]
        ids = [item["id"] for item in payload]
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


class FailoverRpcClient(RpcClient):
    """An `RpcClient` on ONE chain through several URLs, in the operator's order of
    preference (the start-up check proves they all serve the same chain id).

    A request the current URL cannot answer (`ChainUnavailable`: connection refused or
    reset, a timeout, an HTTP error without a JSON-RPC answer, not JSON) is sent to the next
    URL, around the list once; `ChainUnavailable` only when none answered. A JSON-RPC error
    (a revert, "nonce too low", "header not found") is the node's answer and is never sent
    elsewhere. Re-sending a request another node may have acted on is safe: payfirst's
    writes are signed raw txs, and the same bytes sent twice are one tx.

    Sticky: the URL that answered serves the next requests, so a dead URL costs one failed
    attempt per switch, not one per request (a timeout costs the whole timeout). Once
    `primary_retry_s` have passed on a fallback, a request tries the first URL again first.
    `answered_at` is when any URL last answered: the chain is out only when all are.

    Switching nodes mid-tick may show an older head, a block not yet seen or a pool without
    our tx: one node lags the other. That is safe, as with any lagging node: the confirmer
    pins a tick's reads to one decision block and never decides from absent data (a missing
    receipt, log or block means wait; a node behind the decision block answers an error;
    docs/ARCHITECTURE.md, "How a payment flows").
    """

    def __init__(
        self,
        urls: Sequence[str],
        timeout: float = 10.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        primary_retry_s: float = PRIMARY_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
        network: str = "unknown",
    ) -> None:
        if not urls:
            raise ValueError("FailoverRpcClient needs at least one URL")
        super().__init__(urls[0], timeout, transport=transport, network=network)
        self.urls = tuple(urls)
        self._primary_retry_s = primary_retry_s
        self._clock = clock
        self._current = 0  # the index of `url`, the URL in use
        self._since = 0.0  # when (clock) `url` became the URL in use

    async def chain_id_at(self, url: str) -> int:
        """The chain id `url` itself serves (start-up checks every URL, not only one)."""
        body = await self._post_to(url, self._request("eth_chainId", ()))
        return _quantity(_result(url, "eth_chainId", body))

    async def _post(self, payload: Any) -> Any:
        start = self._current
        if start != 0 and self._clock() - self._since >= self._primary_retry_s:
            start = 0
        failures: list[ChainUnavailable] = []
        for step in range(len(self.urls)):
            index = (start + step) % len(self.urls)
            try:
                body = await self._post_to(self.urls[index], payload)
            except ChainUnavailable as exc:
                failures.append(exc)
                continue
            if failures or index != self._current:
                self._use(index, failed=len(failures))
            return body
        if len(failures) == 1:
            raise failures[0]
        raise ChainUnavailable(
            f"none of {len(self.urls)} RPC URLs answered: " + "; ".join(map(str, failures))
        )

    def _use(self, index: int, *, failed: int) -> None:
        """`urls[index]` answered, after `failed` URLs did not (or it is the first URL,
        tried again): it serves the next requests."""
        if index != self._current:
            why = f"{failed} URL(s) before it did not answer" if failed else "the first again"
            host = _host(self.urls[index])
            log.warning("RPC on URL %d of %d (%s): %s", index + 1, len(self.urls), host, why)
        self._current = index
        self.url = self.urls[index]
        # Also when the first URL, tried again, failed again: another while before the
        # next try.
        self._since = self._clock()


def _host(url: str) -> str:
    """`url`'s host and port only: providers put API keys in the path or the userinfo."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
