"""The bench's environment: paths, options, the bench database, payfirst processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.signing import Signer
from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment
from payfirst.adapters.store_factory import open_store

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "var" / "bench"
PAYFIRST = ROOT / ".venv" / "bin" / "payfirst"
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB", "payfirst_bench")
DSN = ADMIN_DSN.rsplit("/", 1)[0] + "/" + DB_NAME
BATCHING = "payment_tx_batching"
WORKER_KEY = ANVIL_KEYS[0]  # payfirst's relayer; the SDK gets a key of its own
BODY = b'{"quantity":1}'
TERMINAL = ("completed", "failed", "confirmation_failed")


def say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Options:
    """What one run measures and how much (run.py's command line)."""

    phases: tuple[str, ...]
    quick: bool = False
    accept_seconds: int = 8
    api_processes: int = 2
    open_rates: tuple[int, ...] = (1000, 2000)
    open_seconds: float = 10.0
    open_clients: int = 2
    burst: int = 5000
    rss_n: int = 10_000
    latency_n: int = 200
    latency_rate: float = 20.0
    compare_n: int = 200
    settle_timeout: float = 180.0
    sdk_concurrency: tuple[int, ...] = (1, 32, 64, 128, 256)
    sdk_rounds: int = 4
    sdk_min_payments: int = 20
    sdk_timeout: float = 240.0
    profile: bool = True


@dataclass
class Bench:
    """What every phase gets: the options, the chain, the signing pool, where results go."""

    options: Options
    deployment: Deployment
    rpc: RpcClient
    signer: Signer
    out: Path
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def rpc_url(self) -> str:
        return self.deployment.rpc_url

    @property
    def path(self) -> str:
        """The mint endpoint every payment is POSTed to."""
        return f"/api/mint/{self.deployment.token}"


# -- payfirst processes -------------------------------------------------------------------


class Proc:
    """A payfirst process (`api` or `worker`) with its log in var/bench/."""

    def __init__(self, command: str, env: dict[str, str], tag: str) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        self.log_path = WORK / f"{tag}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(PAYFIRST), command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.pid = self.process.pid

    def memory_mb(self) -> dict[str, float]:
        """VmHWM (peak resident set) and VmRSS of the process, in MB."""
        out: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                out[name] = int(value.split()[0]) / 1024
        return out

    def log_contains(self, text: str) -> bool:
        return text in self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def payfirst_env(rpc_url: str, port: int, settler: str = "") -> dict[str, str]:
    env = os.environ | {
        "PAYFIRST_DATABASE_URL": DSN,
        "PAYFIRST_RPC_URL": rpc_url,
        "PAYFIRST_RELAYER_KEY": WORKER_KEY,
        "PAYFIRST_HOST": "127.0.0.1",
        "PAYFIRST_PORT": str(port),
        "PAYFIRST_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        # The load generators play thousands of buyers from one loopback address and nine
        # payers: the per-client and per-payer limits would measure the limiter.
        "PAYFIRST_RATE_LIMIT_PER_CLIENT": "0",
        "PAYFIRST_RATE_LIMIT_PER_PAYER": "0",
    }
    if settler:
        # The batch settler the dev chain deployed (payfirst only finds it by itself when
        # `serve` starts the chain).
        env["PAYFIRST_SETTLER_ADDRESS"] = settler
    return env


async def start_api(env: dict[str, str], port: int, tag: str) -> Proc:
    proc = Proc("api", env, tag)
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.process.poll() is not None:
                raise RuntimeError(f"payfirst api exited: see {proc.log_path}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"payfirst api not healthy after 60 s: see {proc.log_path}")


async def start_worker(env: dict[str, str], tag: str) -> Proc:
    proc = Proc("worker", env, tag)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"payfirst worker exited: see {proc.log_path}")
        # "worker running (relayer ...)" before the relayer pool, "recovered relayer ..." after
        if proc.log_contains("worker running") or proc.log_contains("recovered relayer"):
            return proc
        await asyncio.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"payfirst worker not running after 60 s: see {proc.log_path}")


async def payfirst_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [str(PAYFIRST), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- the bench database -------------------------------------------------------------------


async def reset_database(deployment: Deployment, rpc_url: str) -> None:
    """Drop and re-create the bench database, `payfirst migrate`, register the token."""
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await admin.close()
    done = await payfirst_command(payfirst_env(rpc_url, 4021), "migrate")
    if done.returncode != 0:
        raise RuntimeError(f"payfirst migrate failed: {done.stdout}{done.stderr}")
    # No command registers a token on a chain `payfirst serve` did not start.
    store = await open_store(DSN)
    try:
        await store.upsert_token(deployment.to_token())
    finally:
        await store.close()


async def settings_in_force(rpc_url: str) -> dict[str, int]:
    """`payfirst settings show --json`: every setting's value in force."""
    done = await payfirst_command(payfirst_env(rpc_url, 4021), "settings", "show", "--json")
    if done.returncode != 0:
        raise RuntimeError(f"payfirst settings show failed: {done.stdout}{done.stderr}")
    shown = json.loads(done.stdout)
    return {str(s["name"]): int(s["value"]) for s in shown["settings"]}


async def set_setting(rpc_url: str, name: str, value: int) -> bool:
    """`payfirst settings set NAME VALUE`; False when this payfirst has no such setting."""
    done = await payfirst_command(payfirst_env(rpc_url, 4021), "settings", "set", name, str(value))
    return done.returncode == 0


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (NaN for no values)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
