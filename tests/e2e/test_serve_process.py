"""`payfirst serve` as `make run` starts it: a real process on embedded defaults (SQLite
file, its own anvil, demo contracts), then `payfirst demo` buys mints from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from payfirst.adapters.devchain import Deployment, free_port
from payfirst.adapters.store_postgres import PostgresStore

BIN = Path(sys.executable).parent


def test_serve_then_demo(tmp_path: Path) -> None:
    port, anvil_port = free_port(), free_port()
    env = {
        **os.environ,
        "PAYFIRST_PORT": str(port),
        "PAYFIRST_ANVIL_PORT": str(anvil_port),
        "PAYFIRST_LOG_LEVEL": "INFO",
    }
    for name in ("PAYFIRST_DATABASE_URL", "PAYFIRST_RPC_URL", "PAYFIRST_RELAYER_KEY"):
        env.pop(name, None)
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen(
        [BIN / "payfirst", "serve"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while "payfirst ready" not in (tmp_path / "serve.log").read_text():
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server not ready after 30 s"
            time.sleep(0.1)
        printed = (tmp_path / "serve.log").read_text()
        assert f"http://127.0.0.1:{anvil_port}" in printed
        assert "price per mint: 1.000000 USDC" in printed
        assert (tmp_path / "var" / "payfirst.db").exists()
        tokens = httpx.get(f"{url}/api/tokens").json()["tokens"]
        assert len(tokens) == 1
        assert tokens[0]["symbol"] == "PFD"

        demo = subprocess.run(
            [BIN / "payfirst", "demo", "--url", url, "--payers", "3", "--mints", "6"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "6/6 payments completed and minted" in demo.stdout
        stats = httpx.get(f"{url}/api/payment-stats").json()
        assert stats["payments"]["completed"] == 6
        assert stats["mints"]["completed"] == 6
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
        log.close()
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()
    # Ctrl-C stopped what it started: the anvil port is free again.
    with httpx.Client() as http:
        try:
            http.post(f"http://127.0.0.1:{anvil_port}", json={}, timeout=1)
            raise AssertionError("anvil still answers after Ctrl-C")
        except httpx.TransportError:
            pass


def test_api_processes_share_one_port(
    tmp_path: Path, devchain: Deployment, pg_dsn: str, pg_store: PostgresStore
) -> None:
    """PAYFIRST_API_PROCESSES=2: two processes answer on one port; Ctrl-C stops both."""
    port = free_port()
    env = {
        **os.environ,
        "PAYFIRST_PORT": str(port),
        "PAYFIRST_RPC_URL": devchain.rpc_url,
        "PAYFIRST_DATABASE_URL": f"{pg_dsn}?search_path={pg_store.schema}",
        "PAYFIRST_API_PROCESSES": "2",
    }
    server = subprocess.Popen(
        [BIN / "payfirst", "api"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "api not healthy after 30 s"
            time.sleep(0.1)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(children) == 1
        answers = [httpx.get(f"http://127.0.0.1:{port}/api/tokens").status_code for _ in range(20)]
        assert answers == [200] * 20
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
    assert server.returncode == 0
    assert (
        not Path(f"/proc/{children[0]}").exists()
        or "Z" in Path(f"/proc/{children[0]}/stat").read_text().split()[2]
    )
