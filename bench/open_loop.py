"""The open-loop client: one process of several, run by `accept_open` as
`python -m bench.open_loop ...`. Request i of the whole run is due at t0 + i / rate; this
process sends requests index, index + of, index + 2*of, ... each at its due time whether
or not earlier ones were answered (a new connection when none is idle), and measures each
latency from the due time, so a server that falls behind is charged for the wait
(no coordinated omission).

Protocol with the parent: prints `READY` once its connections are open, reads
`GO <t0>` (t0 on the system-wide CLOCK_MONOTONIC that `time.monotonic()` reads, so all
processes share it), runs, and writes its records as JSON to `--out`.
Only the standard library (and uvloop when installed): it starts fast and stays lean.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

BODY = b'{"quantity":1}'


class Connections:
    """Keep-alive connections to the server: idle ones are reused, new ones opened while
    none is idle (up to `limit`, then requests wait for one: still counted from their due
    time)."""

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.limit = limit
        self.opened = 0
        self.idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            collections.deque()
        )
        self.freed = asyncio.Condition()

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        try:
            return await asyncio.open_connection("127.0.0.1", self.port)
        except BaseException:
            self.opened -= 1
            raise

    async def acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            if self.idle:
                return self.idle.popleft()
            if self.opened < self.limit:
                return await self.open()
            async with self.freed:
                await self.freed.wait()

    async def release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(conn)
        async with self.freed:
            self.freed.notify()

    async def discard(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        conn[1].close()
        self.opened -= 1
        async with self.freed:
            self.freed.notify()


async def exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[int, bool]:
    """Sends one request, reads the whole response: its status, and whether the server
    keeps the connection open."""
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    keep = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    await reader.readexactly(length)
    return status, keep


async def run(args: argparse.Namespace, lines: list[str]) -> dict[str, Any]:
    mine = [(i, lines[i]) for i in range(args.index, args.count, args.of)]
    requests = [
        (
            i,
            (
                f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
                f"PAYMENT-SIGNATURE: {header}\r\n\r\n"
            ).encode()
            + BODY,
        )
        for i, header in mine
    ]
    pool = Connections(args.port, args.max_connections)
    for _ in range(args.connections):
        pool.idle.append(await pool.open())
    print("READY", flush=True)
    go = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0 = float(go.split()[1])

    # (request index, started - due, answered - due or None, status; 0 = transport error)
    records: list[tuple[int, float, float | None, int]] = []
    errors: collections.Counter[str] = collections.Counter()

    async def send(i: int, due: float, request: bytes) -> None:
        started = time.monotonic()
        try:
            conn = await pool.acquire()
        except OSError as exc:
            errors[f"connect: {type(exc).__name__}"] += 1
            records.append((i, started - due, None, 0))
            return
        try:
            status, keep = await exchange(conn, request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            errors[f"exchange: {type(exc).__name__}"] += 1
            records.append((i, started - due, None, 0))
            await pool.discard(conn)
            return
        records.append((i, started - due, time.monotonic() - due, status))
        await (pool.release(conn) if keep else pool.discard(conn))

    tasks: list[asyncio.Task[None]] = []
    for i, request in requests:
        due = t0 + i / args.rate
        delay = due - time.monotonic()
        if delay > 0 or len(tasks) % 64 == 0:  # behind schedule: still let replies in
            await asyncio.sleep(max(delay, 0))
        tasks.append(asyncio.create_task(send(i, due, request)))
    sent_by = time.monotonic() - t0
    _, unfinished = await asyncio.wait(tasks, timeout=args.timeout)
    for task in unfinished:
        task.cancel()
    return {
        "records": records,
        "unfinished": len(unfinished),
        "errors": dict(errors),
        "connections_opened": pool.opened,
        "scheduled_by_s": sent_by,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="one open-loop client process")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--headers", required=True, help="one PAYMENT-SIGNATURE per line")
    parser.add_argument("--count", type=int, required=True, help="requests in the whole run")
    parser.add_argument("--rate", type=float, required=True, help="requests/s, whole run")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--of", type=int, required=True)
    parser.add_argument("--connections", type=int, default=32, help="opened before t0")
    parser.add_argument("--max-connections", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=30.0, help="after the last send")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    lines = Path(args.headers).read_text().splitlines()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args, lines))
    else:
        result = uvloop.run(run(args, lines))
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
