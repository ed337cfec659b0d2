"""A small asyncio TCP proxy on loopback, for taking a node away from payfirst and giving it
back: `stop()` closes the listener and every open connection (clients then see refused
connections), `start()` listens again on the same port.

`cut_on(marker)` arms a nastier outage: the next request whose bytes contain `marker` is
forwarded to the upstream, but its answer is never relayed — the proxy goes down at once,
so the client cannot know whether the upstream acted on it (a broadcast whose reply was
lost)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from pathlib import Path


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._marker: bytes | None = None
        self._cut = asyncio.Event()
        self._down = False

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        assert self._server is None, "proxy already running"
        self._down = False
        for attempt in range(30):  # the old listener's port may take a moment to free
            try:
                self._server = await asyncio.start_server(
                    self._handle, "127.0.0.1", self.port, reuse_address=True
                )
                return
            except OSError:
                if attempt == 29:
                    raise
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Close the listener and every connection through it (idempotent)."""
        self._down = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2)

    def cut_on(self, marker: bytes) -> None:
        """Go down right after forwarding the next request that contains `marker`."""
        self._cut.clear()
        self._marker = marker

    async def wait_cut(self, max_wait: float) -> None:
        """Until the armed cut happened (TimeoutError after `max_wait` seconds)."""
        await asyncio.wait_for(self._cut.wait(), max_wait)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        self._writers.update((writer, up_writer))
        current = asyncio.current_task()
        assert current is not None
        self._tasks.add(current)
        cutting = asyncio.Event()  # this connection carries the request to cut on
        try:
            await asyncio.gather(
                self._to_upstream(reader, up_writer, cutting),
                self._to_client(up_reader, writer, cutting),
            )
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            for w in (writer, up_writer):
                _abort(w)
                self._writers.discard(w)
            self._tasks.discard(current)

    async def _to_upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cutting: asyncio.Event
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data or self._down:
                _abort(writer)
                return
            if self._marker is not None and self._marker in data:
                self._marker = None
                cutting.set()  # its answer will never reach the client
            writer.write(data)
            await writer.drain()

    async def _to_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cutting: asyncio.Event
    ) -> None:
        while True:
            data = await reader.read(65536)
            if cutting.is_set():
                # The upstream has answered the marked request, so it acted on it: drop
                # the answer and take the whole proxy down.
                self._down = True
                self.cuts += 1
                _abort(writer)
                task = asyncio.get_running_loop().create_task(self.stop())
                task.add_done_callback(lambda _: self._cut.set())
                return
            if not data or self._down:
                _abort(writer)
                return
            writer.write(data)
            await writer.drain()


def stable_port() -> int:
    """A free loopback port below the kernel's ephemeral range: while the proxy is down, no
    outgoing connection of this or any other process can be given it as its source port,
    so the proxy can always listen on it again."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(10_000, max(low, 10_001)))
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def _abort(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()
