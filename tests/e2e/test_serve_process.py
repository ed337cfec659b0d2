"""`payfirst serve` as `make run` starts it: a real process on embedded defaults (an embedded
PostgreSQL under var/postgres, its own anvil kept in var/devchain-state.json, demo contracts),
then `payfirst demo` buys mints from it; a restart continues where it stopped, `--reset`
starts afresh."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from payfirst.adapters.devchain import Deployment, free_port
from payfirst.adapters.store_postgres import PostgresStore

BIN = Path(sys.executable).parent


@contextmanager
def serving(cwd: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """`payfirst serve` in `cwd` until it printed that it is ready; yields its log so far.
    On exit: Ctrl-C (SIGINT), and it must stop cleanly."""
    log_path = cwd / "serve.log"
    log = log_path.open("w+")
    server = subprocess.Popen(
        [BIN / "payfirst", "serve", *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while "payfirst ready" not in log_path.read_text():
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "server not ready after 60 s"
            time.sleep(0.1)
        yield log_path.read_text()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
        log.close()
    assert server.returncode == 0, log_path.read_text()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory `payfirst serve` runs in. Not pytest's tmp_path: as root the embedded
    PostgreSQL runs as another user, who cannot enter pytest's 0700 directories."""
    path = Path(tempfile.mkdtemp(prefix="payfirst-serve-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_serve_then_demo_then_restart(workdir: Path) -> None:
    tmp_path = workdir
    port, anvil_port = free_port(), free_port()
    env = {
        **os.environ,
        "PAYFIRST_PORT": str(port),
        "PAYFIRST_ANVIL_PORT": str(anvil_port),
        "PAYFIRST_LOG_LEVEL": "INFO",
    }
    for name in ("PAYFIRST_DATABASE_URL", "PAYFIRST_RPC_URL", "PAYFIRST_RELAYER_KEY"):
        env.pop(name, None)
    url = f"http://127.0.0.1:{port}"
    pgdata = tmp_path / "var" / "postgres" / "data"
    with serving(tmp_path, env) as printed:
        assert f"http://127.0.0.1:{anvil_port}" in printed
        assert "price per mint: 1.000000 USDC" in printed
        assert (pgdata / "PG_VERSION").exists()
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
        # The operator's commands reach the embedded database of the running server.
        cli_stats = subprocess.run(
            [BIN / "payfirst", "stats"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert cli_stats.returncode == 0, cli_stats.stderr
        assert json.loads(cli_stats.stdout)["payments"]["completed"] == 6
    # Ctrl-C stopped what it started: the anvil port is free again, PostgreSQL is down.
    with httpx.Client() as http:
        try:
            http.post(f"http://127.0.0.1:{anvil_port}", json={}, timeout=1)
            raise AssertionError("anvil still answers after Ctrl-C")
        except httpx.TransportError:
            pass
    assert not (pgdata / "postmaster.pid").exists()
    assert (tmp_path / "var" / "devchain-state.json").exists()

    # A restart continues: the same contracts (not deployed again), the payments kept.
    with serving(tmp_path, env) as printed:
        assert "dev chain continued" in printed
        (token,) = httpx.get(f"{url}/api/tokens").json()["tokens"]
        assert token["address"] == tokens[0]["address"]
        assert token["reservedCount"] == 6
        stats = httpx.get(f"{url}/api/payment-stats").json()
        assert stats["payments"]["completed"] == 6
        assert stats["mints"]["completed"] == 6

    # --reset: a new chain and an empty database.
    with serving(tmp_path, env, "--reset") as printed:
        assert "dev chain continued" not in printed
        stats = httpx.get(f"{url}/api/payment-stats").json()
        assert stats["payments"]["completed"] == 0
        assert httpx.get(f"{url}/api/tokens").json()["tokens"][0]["reservedCount"] == 0


def test_api_processes_share_one_port(
    tmp_path: Path, devchain: Deployment, pg_dsn: str, pg_store: PostgresStore
) -> None:
    """PAYFIRST_API_PROCESSES=2: two processes answer on one port; Ctrl-C stops both. Their
    metrics are one: each writes to PAYFIRST_METRICS_DIR, any of them answers /metrics."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = {
        **os.environ,
        "PAYFIRST_PORT": str(port),
        "PAYFIRST_RPC_URL": devchain.rpc_url,
        "PAYFIRST_DATABASE_URL": f"{pg_dsn}?search_path={pg_store.schema}",
        "PAYFIRST_API_PROCESSES": "2",
        "PAYFIRST_METRICS_DIR": str(metrics_dir),
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
        # Each process asked the chain its id at start: any /metrics counts both.
        pids = {int(f.stem.rsplit("_", 1)[1]) for f in metrics_dir.glob("counter_*.db")}
        assert pids == {server.pid, int(children[0])}
        for _ in range(4):
            families = text_string_to_metric_families(
                httpx.get(f"http://127.0.0.1:{port}/metrics").text
            )
            asked = sum(
                sample.value
                for family in families
                if family.name == "payfirst_rpc_requests"
                for sample in family.samples
                if sample.name.endswith("_total") and sample.labels["method"] == "eth_chainId"
            )
            assert asked >= 2
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
    assert server.returncode == 0
    assert (
        not Path(f"/proc/{children[0]}").exists()
        or "Z" in Path(f"/proc/{children[0]}/stat").read_text().split()[2]
    )
