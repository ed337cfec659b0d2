"""The HTTP edge against a real `payfirst api` process (uvicorn/httptools, PostgreSQL, the
session's anvil): no input kills it, slow clients are cut off, oversized requests are
refused, start-up failures are one line, signals stop it cleanly.

Every test ends by checking that the server is still alive and answering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from payfirst.adapters.devchain import Deployment, free_port
from payfirst.adapters.store_postgres import PostgresStore

BIN = Path(sys.executable).parent
READY_S = 30.0


@dataclass
class ApiProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_alive(self) -> None:
        assert self.process.poll() is None, (
            f"server died ({self.process.returncode}):\n{self.log()}"
        )
        answer = httpx.get(f"{self.url}/api/tokens", timeout=10)
        assert answer.status_code == 200, answer.text

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def payfirst_env(
    pg_store: PostgresStore, pg_dsn: str, rpc_url: str, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYFIRST_")}
    env.update(
        PAYFIRST_DATABASE_URL=f"{pg_dsn}?search_path={pg_store.schema}",
        PAYFIRST_RPC_URL=rpc_url,
        PAYFIRST_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def start_api(
    pg_store: PostgresStore, pg_dsn: str, devchain: Deployment, tmp_path: Path
) -> Iterator[Callable[..., ApiProcess]]:
    started: list[ApiProcess] = []

    def start(**settings: str) -> ApiProcess:
        port = free_port()
        log_path = tmp_path / f"api-{len(started)}.log"
        env = payfirst_env(pg_store, pg_dsn, devchain.rpc_url, PAYFIRST_PORT=str(port), **settings)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [BIN / "payfirst", "api"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        api = ApiProcess(process, port, log_path)
        started.append(api)

        def ready() -> bool:
            assert process.poll() is None, f"server exited:\n{api.log()}"
            return "payfirst ready" in api.log()

        wait_for(ready, READY_S, "payfirst ready")
        return api

    try:
        yield start
    finally:
        for api in started:
            api.stop()


@pytest_asyncio.fixture
async def token_registered(pg_store: PostgresStore, devchain: Deployment) -> str:
    await pg_store.upsert_token(devchain.to_token())
    return devchain.token


def post(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        url, content=body, headers={"content-type": "application/json", **headers}, timeout=30
    )


def nested(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


def deep_object(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


# --- item 1: no input may crash the process ----------------------------------------------


def test_deep_json_never_kills_the_server(
    start_api: Callable[..., ApiProcess], token_registered: str
) -> None:
    """The bodies that segfaulted the process answer 413 (too large) or 400 (too deep), with
    a JSON reason; with the size limit raised far above them, the depth check alone
    refuses them before any recursive parsing."""
    api = start_api()
    cases = [
        ("/verify", nested(60_000), 413),
        (f"/api/mint/{token_registered}", nested(100_000), 413),
        ("/api/x402-batch-mint", deep_object(100_000), 413),
        ("/verify", nested(32_000), 400),
        ("/settle", deep_object(10_000), 400),
        (f"/api/mint/{token_registered}", nested(30_000, '{"a":[', "]}")[:60_000], 400),
    ]
    for path, body, status in cases:
        answer = post(api.url + path, body)
        assert answer.status_code == status, (path, answer.text)
        assert answer.json()["error"] in ("payload_too_large", "invalid_payload", "invalid_request")
        api.assert_alive()
    assert "Traceback" not in api.log()

    roomy = start_api(PAYFIRST_MAX_BODY_BYTES=str(4 * 1024 * 1024))
    for path in ("/verify", "/settle", f"/api/mint/{token_registered}", "/api/x402-batch-mint"):
        for body in (nested(100_000), deep_object(200_000), nested(300_000, '{"k":[', "]}")):
            answer = post(roomy.url + path, body)
            assert answer.status_code == 400, (path, answer.text)
            assert "deeper than 32" in answer.json()["message"]
            roomy.assert_alive()


def test_body_size_limit_holds_without_or_with_a_lying_content_length(
    start_api: Callable[..., ApiProcess], token_registered: str
) -> None:
    api = start_api(PAYFIRST_MAX_BODY_BYTES="2048")
    big = b'{"quantity": 1, "pad": "' + b"x" * 5000 + b'"}'
    # Declared too large: refused unread.
    answer = post(f"{api.url}/api/mint/{token_registered}", big)
    assert answer.status_code == 413 and answer.json()["error"] == "payload_too_large"

    # Chunked (no Content-Length): refused once the bytes read pass the limit.
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    answer = httpx.post(
        f"{api.url}/verify",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "payload_too_large"
    # A small body passes the edge.
    answer = post(f"{api.url}/api/mint/{token_registered}", b'{"quantity": 1}')
    assert answer.status_code == 402
    api.assert_alive()


def _raw_exchange(port: int, payload: bytes, timeout: float = 20.0) -> bytes:
    """Send raw bytes, read until the server closes (or answers and we time out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
        return received


def test_oversized_headers_are_refused(start_api: Callable[..., ApiProcess]) -> None:
    api = start_api()
    huge_value = b"A" * (1024 * 1024)
    answers = [
        # One 1 MB X-PAYMENT header.
        _raw_exchange(
            api.port,
            b"POST /verify HTTP/1.1\r\nHost: x\r\nX-PAYMENT: " + huge_value + b"\r\n\r\n",
        ),
        # Thousands of small headers.
        _raw_exchange(
            api.port,
            b"GET /health HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
            + b"\r\n",
        ),
        # A request line of 100 KB.
        _raw_exchange(api.port, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        # A header that never ends.
        _raw_exchange(api.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + huge_value),
    ]
    for raw in answers:
        assert raw.startswith(b"HTTP/1.1 431"), raw[:200]
        assert (
            json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"] == "request_header_fields_too_large"
        )
    api.assert_alive()
    # Through httpx too: an oversized payment header is refused before it is decoded.
    answer = httpx.post(
        f"{api.url}/verify", headers={"X-PAYMENT": "A" * 40_000}, content=b"{}", timeout=30
    )
    assert answer.status_code == 431
    api.assert_alive()


# --- item 7: slow clients are cut off ----------------------------------------------------


async def _until_closed(reader: asyncio.StreamReader, limit_s: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    async with asyncio.timeout(limit_s):
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def _trickling(
    port: int, head: bytes, piece: Callable[[int], bytes], trickle_s: float, hold_s: float
) -> bytes:
    """Send `head`, then `piece(i)` every `trickle_s` seconds; everything the server sends
    until it closes the connection (within `hold_s`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for i in range(int(hold_s / trickle_s)):
                    await asyncio.sleep(trickle_s)
                    writer.write(piece(i))
                    await writer.drain()

        trickling = asyncio.create_task(trickle())
        try:
            return await _until_closed(reader, hold_s)
        finally:
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trickling
    finally:
        writer.close()


async def _slowloris(port: int, trickle_s: float, hold_s: float) -> bytes:
    """Headers that never end: one more header line every `trickle_s`."""
    head = b"POST /verify HTTP/1.1\r\nHost: x\r\n"
    return await _trickling(port, head, lambda i: b"X-%d: a\r\n" % i, trickle_s, hold_s)


async def _trickled_body(port: int, trickle_s: float, hold_s: float) -> bytes:
    """A body announced as 1000 bytes that arrives one byte every `trickle_s`."""
    head = (
        b"POST /verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    return await _trickling(port, head, lambda _: b" ", trickle_s, hold_s)


async def _idle(port: int, hold_s: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await _until_closed(reader, hold_s)
    finally:
        writer.close()


async def test_slow_and_idle_clients_are_closed(start_api: Callable[..., ApiProcess]) -> None:
    """300 slowloris connections, 50 trickled bodies and 1,000 idle connections are all
    closed by the server within its header/body timeouts (2 s here), while an ordinary
    client is still served."""
    api = start_api(
        PAYFIRST_HEADER_TIMEOUT_S="2", PAYFIRST_BODY_TIMEOUT_S="2", PAYFIRST_MAX_CONNECTIONS="4000"
    )
    started = time.monotonic()
    hold_s = 15.0  # far beyond the timeouts: a connection still open then was never closed
    results = await asyncio.gather(
        *[_slowloris(api.port, 0.5, hold_s) for _ in range(300)],
        *[_trickled_body(api.port, 0.3, hold_s) for _ in range(50)],
        *[_idle(api.port, hold_s) for _ in range(1000)],
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} connections not closed by the server: {failures[:3]!r}"
    slowloris, trickled, idle = results[:300], results[300:350], results[350:]
    assert all(isinstance(r, bytes) and r.startswith(b"HTTP/1.1 408") for r in slowloris)
    assert all(isinstance(r, bytes) and r.startswith(b"HTTP/1.1 408") for r in trickled)
    assert all(r == b"" for r in idle)  # nothing was asked: closed without an answer
    assert elapsed < hold_s
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{api.url}/api/tokens")).status_code == 200
    api.assert_alive()


async def test_connections_beyond_the_limit_are_refused(
    start_api: Callable[..., ApiProcess],
) -> None:
    api = start_api(PAYFIRST_MAX_CONNECTIONS="50", PAYFIRST_HEADER_TIMEOUT_S="30")
    held = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(50)]
    try:
        # The 51st is answered 503 and closed at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        refused = await _until_closed(reader, 10)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 503"), refused[:200]
        assert json.loads(refused.split(b"\r\n\r\n", 1)[1])["error"] == "too_many_connections"
    finally:
        for _, w in held:
            w.close()
    # Freed: served again.
    async with httpx.AsyncClient() as http:
        deadline = time.monotonic() + 10
        while True:
            try:
                if (await http.get(f"{api.url}/api/tokens")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not served after the connections closed"
            await asyncio.sleep(0.1)
    api.assert_alive()


# --- item 8: start-up failures are one line -----------------------------------------------


def _run_payfirst(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "payfirst", command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["api", "worker"])
def test_unreachable_database_at_start_is_one_line(
    command: str, pg_store: PostgresStore, pg_dsn: str, devchain: Deployment
) -> None:
    env = payfirst_env(pg_store, pg_dsn, devchain.rpc_url)
    env["PAYFIRST_DATABASE_URL"] = f"postgresql://payfirst:secret@127.0.0.1:{free_port()}/nowhere"
    done = _run_payfirst(command, env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "database" in lines[0] and "unreachable" in lines[0]
    assert "secret" not in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("command", ["api", "worker"])
def test_unreachable_rpc_at_start_is_one_line(
    command: str, pg_store: PostgresStore, pg_dsn: str
) -> None:
    env = payfirst_env(pg_store, pg_dsn, f"http://127.0.0.1:{free_port()}")
    done = _run_payfirst(command, env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "chain RPC" in lines[0] and "unreachable" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


# --- item 9: signals ---------------------------------------------------------------------


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("command", ["worker", "api"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_cleanly_on_signals_even_with_sigint_inherited_ignored(
    command: str,
    sig: signal.Signals,
    pg_store: PostgresStore,
    pg_dsn: str,
    devchain: Deployment,
    tmp_path: Path,
) -> None:
    """As a background job of a non-interactive shell starts it: SIGINT ignored. It still
    stops on SIGINT (and SIGTERM), logs the signal, and exits 0."""
    port = free_port()
    env = payfirst_env(pg_store, pg_dsn, devchain.rpc_url, PAYFIRST_PORT=str(port))
    log_path = tmp_path / "process.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [BIN / "payfirst", command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint,
        )
    try:
        marker = "payfirst ready" if command == "api" else "running with relayers"
        wait_for(lambda: marker in log_path.read_text(), READY_S, marker)
        process.send_signal(sig)
        assert process.wait(timeout=15) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert f"{sig.name} received: stopping" in log_path.read_text()
    assert "Traceback" not in log_path.read_text()
