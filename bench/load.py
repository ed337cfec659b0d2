"""Closed-loop load: a minimal keep-alive HTTP/1.1 client, and wrk with bench/accept.lua."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BODY, ROOT

LUA = ROOT / "bench" / "accept.lua"


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float


async def post_all(
    port: int, path: str, headers: Sequence[str], concurrency: int, max_wait: float
) -> list[Reply]:
    """POSTs one request per header over `concurrency` keep-alive connections, each sending
    its next request when the last is answered (far cheaper per request than httpx, so the
    load generator takes less of the 2 cores). Bounded by the headers and by `max_wait`."""
    replies: list[Reply] = []
    pending = iter(headers)
    deadline = time.monotonic() + max_wait

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for header in pending:
                if time.monotonic() > deadline:
                    return
                request = (
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
                    f"PAYMENT-SIGNATURE: {header}\r\n\r\n"
                ).encode() + BODY
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                replies.append(Reply(status, body, time.perf_counter() - started))
        finally:
            writer.close()

    await asyncio.wait_for(
        asyncio.gather(*(connection() for _ in range(concurrency))), max_wait + 30
    )
    return replies


def accepted_ids(replies: list[Reply]) -> list[str]:
    return [str(json.loads(r.body)["paymentQueueId"]) for r in replies if r.status == 202]


def status_counts(replies: list[Reply]) -> dict[str, int]:
    return dict(collections.Counter(str(r.status) for r in replies))


def wrk(port: int, path: str, headers_file: Path, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run (1 thread); the figures bench/accept.lua prints as BENCH_JSON."""
    env = os.environ | {"BENCH_HEADERS": str(headers_file), "BENCH_PATH": path}
    env["BENCH_THREADS"] = "1"
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s"]
    command += ["-s", str(LUA), f"http://127.0.0.1:{port}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
