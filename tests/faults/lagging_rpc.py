"""A JSON-RPC proxy on loopback that lies the way a load-balanced provider does (issue 8,
item 4): the receipt of a tx in the newest `lag` blocks answers null, `eth_getLogs` stops
`lag` blocks below the head, while nonces, `eth_call` and block numbers see the head.

It is a tiny ASGI app served by uvicorn in the test's event loop; single calls and
batches are forwarded to the upstream node and their answers rewritten."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import uvicorn

from payfirst.adapters.devchain import free_port


class LaggingRpc:
    def __init__(self, upstream: str, lag: int = 1) -> None:
        self.upstream = upstream
        self.lag = lag
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hidden_receipts = 0  # receipts answered null although mined
        self.clamped_logs = 0  # eth_getLogs calls served below the head
        self._http = httpx.AsyncClient(timeout=10)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):
            if self._server.started:
                return
            await asyncio.sleep(0.02)
        raise RuntimeError("lagging RPC proxy did not start")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=5)
        await self._http.aclose()

    async def _head(self) -> int:
        answer = await self._http.post(
            self.upstream, json={"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber"}
        )
        return int(answer.json()["result"], 16)

    async def _rewrite(self, call: dict[str, Any], head: int) -> dict[str, Any]:
        """Forward one call, lying where a lagging backend would."""
        method = call.get("method")
        params = list(call.get("params") or [])
        visible = head - self.lag  # the newest block this backend's receipts/logs know
        if method == "eth_getLogs" and params:
            query = dict(params[0])
            to_block = query.get("toBlock", "latest")
            if not isinstance(to_block, str) or not to_block.startswith("0x"):
                to_block = hex(head)
            if int(to_block, 16) > visible:
                query["toBlock"] = hex(max(visible, 0))
                self.clamped_logs += 1
                from_block = query.get("fromBlock")
                if (
                    isinstance(from_block, str)
                    and from_block.startswith("0x")
                    and int(from_block, 16) > visible
                ):
                    return {"jsonrpc": "2.0", "id": call.get("id"), "result": []}
            params = [query]
        answer = await self._http.post(self.upstream, json={**call, "params": params})
        body: dict[str, Any] = answer.json()
        if method == "eth_getTransactionReceipt":
            receipt = body.get("result")
            if isinstance(receipt, dict) and int(receipt["blockNumber"], 16) > visible:
                self.hidden_receipts += 1
                body = {**body, "result": None}
        return body

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        payload = json.loads(b"".join(chunks))
        head = await self._head()
        if isinstance(payload, list):
            result: Any = [await self._rewrite(call, head) for call in payload]
        else:
            result = await self._rewrite(payload, head)
        body = json.dumps(result).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
