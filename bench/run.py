"""The payfirst benchmark suite (`make bench`): real processes, real PostgreSQL, anvil.

One run measures, printing each figure as it goes:

- accept: payments/s and latency p50/p99 of `POST /api/mint/{token}` with a distinct,
  validly signed payment per request, at 100 and 1,000 connections (wrk; `payfirst api`
  alone, so no worker competes for the 2 cores; wrk shares them);
- peak RSS of the API process after 10,000 payments were queued (no worker running);
- settlement: a burst of 5,000 payments through `payfirst api` + `payfirst worker`,
  first accept -> last payment `completed` (settled and confirmed);
- request -> mint confirmed, p50/p99, for a steady stream of 200 payments, each client
  long-polling `GET /api/payment/{id}?wait=30`;
- gas per settled payment with `payment_tx_batching` = 1 and = 0 (when the setting exists);
- side by side on the same payers and chain: the official x402 SDK facilitator
  (verify + settle one by one, waiting for each receipt) vs payfirst unbatched, N payments.

Writes bench/results/latest.{json,md,png}.

    .venv/bin/python bench/run.py [--quick] [--no-profile] [--no-sdk]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from eth_account import Account

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, DevChain, free_port, send_transaction
from payfirst.adapters.store_factory import open_store
from payfirst.client.signing import Payer
from payfirst.x402 import PaymentRequiredV2, PaymentRequirementsV2, ResourceInfo, decode_header

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "var" / "bench"
PAYFIRST = ROOT / ".venv" / "bin" / "payfirst"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
LUA = ROOT / "bench" / "accept.lua"
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB", "payfirst_bench")
DSN = ADMIN_DSN.rsplit("/", 1)[0] + "/" + DB_NAME
BATCHING = "payment_tx_batching"
WORKER_KEY = ANVIL_KEYS[0]  # payfirst's relayer; the SDK gets a key of its own
PAYER_KEYS = ANVIL_KEYS[1:10]
BODY = b'{"quantity":1}'
TERMINAL = ("completed", "failed", "confirmation_failed")

TARGETS = {
    "accept_rps_1000": 3000.0,
    "accept_p99_ms_1000": 50.0,
    "settle_rps": 500.0,
    "mint_latency_p50_s": 3.0,
    "gas_ratio": 0.7,
    "rss_mb": 300.0,
}


def say(text: str) -> None:
    print(text, flush=True)


# -- signing ---------------------------------------------------------------------------


def _sign_chunk(args: tuple[list[str], dict[str, Any], dict[str, Any] | None, int]) -> list[str]:
    keys, requirements_wire, resource_wire, n = args
    requirements = PaymentRequirementsV2.model_validate(requirements_wire)
    resource = ResourceInfo.model_validate(resource_wire) if resource_wire else None
    payers = [Payer(k) for k in keys]
    return [payers[i % len(payers)].pay_v2(requirements, resource) for i in range(n)]


class Signer:
    """Pre-signs distinct v2 PAYMENT-SIGNATURE headers (random nonces, payers 1-9) on all
    cores (nothing else runs while it does)."""

    def __init__(self, required: PaymentRequiredV2) -> None:
        self.requirements = required.accepts[0].model_dump(by_alias=True)
        self.resource = required.resource.model_dump(by_alias=True) if required.resource else None
        self.pool = ProcessPoolExecutor(max_workers=os.cpu_count() or 2)

    def sign(self, n: int) -> list[str]:
        workers = os.cpu_count() or 2
        shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
        chunks = [
            (list(PAYER_KEYS[i::workers]) or list(PAYER_KEYS), self.requirements, self.resource, s)
            for i, s in enumerate(shares)
            if s
        ]
        headers: list[str] = []
        for part in self.pool.map(_sign_chunk, chunks):
            headers.extend(part)
        return headers

    def close(self) -> None:
        self.pool.shutdown()


# -- processes -------------------------------------------------------------------------


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
        # wrk plays thousands of buyers from one loopback address and nine payers: the
        # per-client and per-payer limits would measure the limiter, not the pipeline.
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


# -- database --------------------------------------------------------------------------


async def reset_database(deployment: Deployment, rpc_url: str) -> None:
    """Drop and re-create the bench database, `payfirst migrate`, register the token."""
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await admin.close()
    await asyncio.to_thread(
        subprocess.run,
        [str(PAYFIRST), "migrate"],
        env=payfirst_env(rpc_url, 4021),
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    store = await open_store(DSN)
    try:
        await store.upsert_token(deployment.to_token())
    finally:
        await store.close()


async def settings(db: asyncpg.Connection) -> dict[str, int]:
    """The settings in force: the stored rows over the defaults (in code since issue 9,
    seeded in the table before)."""
    stored = {r["name"]: int(r["value"]) for r in await db.fetch("SELECT * FROM system_settings")}
    try:
        from payfirst.domain.settings import RuntimeSettings
    except ImportError:  # an older payfirst: the table holds every setting
        return stored
    return RuntimeSettings.from_rows(stored)[0].as_rows()


async def set_batching(db: asyncpg.Connection, value: int) -> bool:
    """Sets payment_tx_batching; False when this payfirst has no such setting."""
    from payfirst.ports import store as store_port

    try:
        from payfirst.domain.settings import SPECS as known_settings
    except ImportError:  # an older payfirst
        known_settings = getattr(store_port, "DEFAULT_SETTINGS", {})
    known = BATCHING in known_settings
    row = await db.fetchrow("SELECT value FROM system_settings WHERE name = $1", BATCHING)
    if row is None and not known:
        return False
    await db.execute(
        "INSERT INTO system_settings (name, value) VALUES ($1, $2) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        BATCHING,
        value,
    )
    return True


async def wait_settled(
    db: asyncpg.Connection, ids: list[str], max_wait: float, label: str
) -> dict[str, int]:
    """Polls until every payment in `ids` is terminal (or `max_wait` passes)."""
    deadline = time.monotonic() + max_wait
    next_note = time.monotonic() + 5
    counts: dict[str, int] = {}
    while True:
        rows = await db.fetch(
            "SELECT status, count(*) AS n FROM payment_queue WHERE id = ANY($1::uuid[]) "
            "GROUP BY status",
            ids,
        )
        counts = {r["status"]: int(r["n"]) for r in rows}
        if sum(counts.get(s, 0) for s in TERMINAL) >= len(ids):
            return counts
        if time.monotonic() >= deadline:
            say(f"    {label}: gave up after {max_wait:.0f} s: {counts}")
            return counts
        if time.monotonic() >= next_note:
            say(f"    {label}: {counts}")
            next_note += 5
        await asyncio.sleep(0.2)


async def last_completed_epoch(db: asyncpg.Connection, ids: list[str]) -> float | None:
    value = await db.fetchval(
        "SELECT extract(epoch FROM max(updated_at)) FROM payment_queue "
        "WHERE id = ANY($1::uuid[]) AND status = 'completed'",
        ids,
    )
    return float(value) if value is not None else None


async def gas_of(rpc: RpcClient, tx_hashes: Sequence[str]) -> tuple[int, int]:
    """Total gasUsed of the distinct transactions, and how many there were."""
    distinct = sorted({h for h in tx_hashes if h})
    total = 0
    for start in range(0, len(distinct), 200):
        chunk = distinct[start : start + 200]
        receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
        total += sum(int(r["gasUsed"], 16) for r in receipts if r)
    return total, len(distinct)


async def payment_gas(rpc: RpcClient, db: asyncpg.Connection, ids: list[str]) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT tx_hash FROM payment_queue WHERE id = ANY($1::uuid[]) AND status = 'completed'",
        ids,
    )
    total, txs = await gas_of(rpc, [r["tx_hash"] for r in rows])
    return {
        "payments": len(rows),
        "txs": txs,
        "gas_total": total,
        "gas_per_payment": total / len(rows) if rows else None,
    }


# -- load generators -------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float


async def post_all(
    port: int, path: str, headers: Sequence[str], concurrency: int, max_wait: float
) -> list[Reply]:
    """POSTs one request per header over `concurrency` keep-alive connections (a minimal
    HTTP/1.1 client: far cheaper per request than httpx, so the load generator takes less
    of the 2 cores). Bounded by the number of headers and by `max_wait`."""
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
    return [json.loads(r.body)["paymentQueueId"] for r in replies if r.status == 202]


def status_counts(replies: list[Reply]) -> dict[str, int]:
    return dict(collections.Counter(str(r.status) for r in replies))


def wrk(port: int, path: str, headers_file: Path, connections: int, seconds: int) -> dict[str, Any]:
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


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# -- the run ---------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    chain: DevChain
    deployment: Deployment
    rpc: RpcClient
    signer: Signer
    path: str
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def rpc_url(self) -> str:
        return self.deployment.rpc_url

    # accept ---------------------------------------------------------------------------

    async def accept(self) -> None:
        processes = self.args.api_processes
        say(
            f"\n== accept: `payfirst api` alone (no worker, {processes} process(es)), "
            "wrk -t1 on the same 2 cores"
        )
        await reset_database(self.deployment, self.rpc_url)
        port = free_port()
        env = payfirst_env(self.rpc_url, port) | {"PAYFIRST_API_PROCESSES": str(processes)}
        api = await start_api(env, port, "accept-api")
        runs: dict[str, Any] = {"processes": processes}
        try:
            seconds = self.args.accept_seconds
            guess = 4000.0
            for connections in (100, 1000):
                n = int(seconds * guess * 1.3) + 2000
                started = time.monotonic()
                headers_file = WORK / "accept-headers.txt"
                headers_file.write_text("\n".join(self.signer.sign(n)) + "\n")
                say(f"  signed {n} payments in {time.monotonic() - started:.1f} s")
                out = wrk(port, self.path, headers_file, connections, seconds)
                duration = out["duration_us"] / 1e6
                ok = out["requests"] - out["errors_status"]
                run = {
                    "connections": connections,
                    "seconds": round(duration, 2),
                    "requests": out["requests"],
                    "accepted": ok,
                    "payments_per_s": round(ok / duration, 1),
                    "p50_ms": out["p50_us"] / 1000,
                    "p90_ms": out["p90_us"] / 1000,
                    "p99_ms": out["p99_us"] / 1000,
                    "max_ms": out["max_us"] / 1000,
                    "errors": {k: out[k] for k in out if k.startswith("errors_") and out[k]},
                    "resent_payments": out["wrapped"],
                }
                runs[str(connections)] = run
                guess = max(run["payments_per_s"], 500.0)
                say(
                    f"  {connections:>5} connections: {run['payments_per_s']:,.0f} payments/s, "
                    f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms "
                    f"({ok} accepted in {duration:.1f} s; errors {run['errors'] or 'none'})"
                )
            db = await asyncpg.connect(DSN)
            try:
                queued = await db.fetchval("SELECT count(*) FROM payment_queue")
            finally:
                await db.close()
            say(f"  payments in the queue after both runs: {queued}")
            runs["queued_in_db"] = int(queued)
            runs["api_memory_mb"] = api.memory_mb()
            if self.args.profile:
                runs["profile"] = await self.profile(api, port)
        finally:
            api.stop()
        self.results["accept"] = runs

    async def profile(self, api: Proc, port: int) -> dict[str, Any]:
        """py-spy on the API process during one more 1000-connection run."""
        if not PY_SPY.exists():
            say("  (py-spy not installed: no profile)")
            return {}
        seconds = self.args.accept_seconds
        headers_file = WORK / "accept-headers.txt"
        headers_file.write_text("\n".join(self.signer.sign(int(seconds * 3000))) + "\n")
        raw = WORK / "accept-profile.txt"
        spy = subprocess.Popen(  # noqa: ASYNC220 (py-spy runs alongside; waited for below)
            [
                *(str(PY_SPY), "record", "--pid", str(api.pid), "--format", "raw"),
                *("--rate", "200", "--duration", str(seconds + 1), "--nonblocking"),
                *("--output", str(raw)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(0.5)
        out = wrk(port, self.path, headers_file, 1000, seconds)
        try:
            spy.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
        if not raw.exists():
            say(f"  py-spy produced no profile: {spy.stderr.read().decode() if spy.stderr else ''}")
            return {}
        summary = summarise_profile(raw)
        (RESULTS / "accept-profile.txt").write_text(format_profile(summary))
        rate = (out["requests"] - out["errors_status"]) / (out["duration_us"] / 1e6)
        summary["payments_per_s_while_profiled"] = round(rate, 1)
        say(f"  profiled 1000-connection run ({rate:,.0f} payments/s under py-spy); top self:")
        for name, share in summary["self"][:8]:
            say(f"    {share:5.1f} %  {name}")
        return summary

    # memory ---------------------------------------------------------------------------

    async def memory(self) -> None:
        n = self.args.rss_n
        say(f"\n== memory: `payfirst api` after {n:,} payments queued (no worker)")
        await reset_database(self.deployment, self.rpc_url)
        port = free_port()
        api = await start_api(payfirst_env(self.rpc_url, port), port, "rss-api")
        try:
            before = api.memory_mb()
            headers = self.signer.sign(n)
            replies = await post_all(port, self.path, headers, 100, 120)
            after = api.memory_mb()
            db = await asyncpg.connect(DSN)
            try:
                queued = int(
                    await db.fetchval("SELECT count(*) FROM payment_queue WHERE status='pending'")
                )
            finally:
                await db.close()
        finally:
            api.stop()
        self.results["memory"] = {
            "queued": queued,
            "replies": status_counts(replies),
            "api_rss_mb_at_start": round(before["VmRSS"], 1),
            "api_peak_rss_mb": round(after["VmHWM"], 1),
            "api_rss_mb": round(after["VmRSS"], 1),
        }
        say(
            f"  {queued:,} queued: API peak RSS (VmHWM) {after['VmHWM']:.0f} MB "
            f"(at start {before['VmRSS']:.0f} MB)"
        )

    # settlement, latency, gas, side by side ---------------------------------------------

    async def pipeline(self) -> None:
        await reset_database(self.deployment, self.rpc_url)
        port = free_port()
        env = payfirst_env(self.rpc_url, port, getattr(self.deployment, "settler", ""))
        db = await asyncpg.connect(DSN)
        batching = await set_batching(db, 1)
        self.results["batching_setting"] = batching
        if not batching:
            say(f"\n(no `{BATCHING}` setting in this payfirst: every settlement is one tx)")
        api = await start_api(env, port, "pipeline-api")
        worker = await start_worker(env, "pipeline-worker")
        try:
            self.results["settings"] = await settings(db)
            # Latency first, on a quiet pipeline: after the burst, its 5,000 mints are still
            # being delivered and every new payment would queue behind them.
            await self.latency(port)
            await self.settle_burst(db, port)
            self.results["worker_peak_rss_mb"] = round(worker.memory_mb()["VmHWM"], 1)
            self.results["api_peak_rss_mb_pipeline"] = round(api.memory_mb()["VmHWM"], 1)
            say(
                f"  worker peak RSS {self.results['worker_peak_rss_mb']:.0f} MB, "
                f"API {self.results['api_peak_rss_mb_pipeline']:.0f} MB"
            )
            await self.compare_payfirst(db, port, batching)
        finally:
            worker.stop()
            api.stop()
            await db.close()

    async def burst(
        self, db: asyncpg.Connection, port: int, n: int, concurrency: int, label: str
    ) -> dict[str, Any]:
        headers = self.signer.sign(n)
        started = time.time()
        replies = await post_all(port, self.path, headers, concurrency, 120)
        accept_s = time.time() - started
        ids = accepted_ids(replies)
        counts = await wait_settled(db, ids, self.args.settle_timeout, label)
        polled = time.time()
        last = await last_completed_epoch(db, ids)
        end = min(last, polled) if last is not None else polled
        completed = counts.get("completed", 0)
        seconds = end - started
        gas = await payment_gas(self.rpc, db, ids)
        return {
            "payments": n,
            "replies": status_counts(replies),
            "accept_s": round(accept_s, 2),
            "statuses": counts,
            "completed": completed,
            "seconds": round(seconds, 2),
            "payments_per_s": round(completed / seconds, 1) if seconds > 0 else None,
            "gas": gas,
            "started_epoch": started,
        }

    async def settle_burst(self, db: asyncpg.Connection, port: int) -> None:
        n = self.args.burst
        say(f"\n== settlement: burst of {n:,} payments, `payfirst api` + `payfirst worker`")
        result = await self.burst(db, port, n, 100, "burst")
        self.results["settle"] = result
        gas = result["gas"]["gas_per_payment"]
        say(
            f"  {result['completed']:,}/{n:,} completed in {result['seconds']:.1f} s from first "
            f"accept = {result['payments_per_s']} payments/s (accepting took "
            f"{result['accept_s']:.1f} s; {result['gas']['txs']} settlement txs"
            + (f", {gas:,.0f} gas/payment)" if gas else ")")
        )
        result["mints"] = await self.mints_drained(db, result.pop("started_epoch"))

    async def mints_drained(self, db: asyncpg.Connection, started_at: float) -> dict[str, Any]:
        """After the burst: wait (bounded) until its mints are delivered, so the next runs
        start on a quiet pipeline, and report how long delivery took."""
        deadline = time.monotonic() + self.args.settle_timeout
        while True:
            open_mints = int(
                await db.fetchval(
                    "SELECT count(*) FROM mint_queue WHERE status NOT IN ('completed', 'failed')"
                )
            )
            if open_mints == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        completed = int(
            await db.fetchval("SELECT count(*) FROM mint_queue WHERE status = 'completed'")
        )
        seconds = time.time() - started_at
        say(
            f"  mints delivered {seconds:.1f} s after the first accept "
            f"({completed:,} completed, {open_mints:,} still open)"
        )
        return {
            "completed": completed,
            "open": open_mints,
            "seconds_from_first_accept": round(seconds, 1),
        }

    async def latency(self, port: int) -> None:
        n, rate = self.args.latency_n, self.args.latency_rate
        say(f"\n== latency: {n} payments at {rate}/s, each client long-polls until minted")
        headers = self.signer.sign(n)
        minted: list[float] = []
        confirmed: list[float] = []
        failures: list[str] = []
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=45, limits=limits) as http:

            async def one(i: int, header: str) -> None:
                await asyncio.sleep(i / rate)
                started = time.monotonic()
                answer = await http.post(
                    self.path,
                    content=BODY,
                    headers={"content-type": "application/json", "payment-signature": header},
                )
                if answer.status_code != 202:
                    failures.append(f"{answer.status_code} {answer.text[:100]}")
                    return
                payment_id = answer.json()["paymentQueueId"]
                paid = False
                while time.monotonic() - started < self.args.settle_timeout:
                    view = (await http.get(f"/api/payment/{payment_id}?wait=30")).json()
                    if view["status"] in ("failed", "confirmation_failed"):
                        failures.append(f"{payment_id} {view['status']}")
                        return
                    if view["status"] == "completed" and not paid:
                        paid = True
                        confirmed.append(time.monotonic() - started)
                    mints = view.get("mints") or []
                    if paid and mints and all(m["status"] == "completed" for m in mints):
                        minted.append(time.monotonic() - started)
                        return
                    if any(m["status"] == "failed" for m in mints):
                        failures.append(f"{payment_id}: mint failed")
                        return
                failures.append(f"{payment_id}: not minted in time")

            await asyncio.wait_for(
                asyncio.gather(*(one(i, h) for i, h in enumerate(headers))),
                n / rate + self.args.settle_timeout + 30,
            )
        result = {
            "payments": n,
            "rate_per_s": rate,
            "minted": len(minted),
            "failures": failures[:10],
            "mint_p50_s": round(percentile(minted, 50), 2),
            "mint_p99_s": round(percentile(minted, 99), 2),
            "payment_p50_s": round(percentile(confirmed, 50), 2),
            "payment_p99_s": round(percentile(confirmed, 99), 2),
        }
        self.results["latency"] = result
        say(
            f"  request -> mint confirmed: p50 {result['mint_p50_s']} s, p99 "
            f"{result['mint_p99_s']} s ({len(minted)}/{n} minted; request -> payment completed "
            f"p50 {result['payment_p50_s']} s, p99 {result['payment_p99_s']} s)"
        )

    async def compare_payfirst(self, db: asyncpg.Connection, port: int, batching: bool) -> None:
        n = self.args.compare_n
        runs: dict[str, Any] = {}
        modes = ((1, "batched"), (0, "unbatched")) if batching else ((None, "as is"),)
        for value, label in modes:
            if value is not None:
                await set_batching(db, value)
                await asyncio.sleep(0.5)  # settings are read at every tick
            say(
                f"\n== payfirst, {BATCHING} = {value if value is not None else 'n/a'}: {n} payments"
            )
            result = await self.burst(db, port, n, 100, label)
            result.pop("started_epoch")
            runs[label] = result
            gas = result["gas"]["gas_per_payment"]
            say(
                f"  {result['completed']}/{n} completed in {result['seconds']:.1f} s = "
                f"{result['payments_per_s']} payments/s; {result['gas']['txs']} txs, "
                + (f"{gas:,.0f} gas/payment" if gas else "no gas figure")
            )
        if batching:
            await set_batching(db, 1)
        self.results["compare_payfirst"] = runs

    async def sdk(self) -> None:
        n = self.args.compare_n
        say(f"\n== official x402 SDK facilitator: verify + settle {n} payments one by one")
        key = "0x" + os.urandom(32).hex()
        address = Account.from_key(key).address
        tx = await send_transaction(
            self.rpc, ANVIL_KEYS[9], address, "0x", gas=21_000, value=100 * 10**18
        )
        await self.rpc.wait_for_receipt(tx)
        headers = self.signer.sign(n)
        result = await asyncio.to_thread(
            sdk_settle, key, self.rpc_url, headers, self.args.sdk_timeout
        )
        total, txs = await gas_of(self.rpc, result.pop("tx_hashes"))
        settled = result["settled"]
        result["gas"] = {
            "txs": txs,
            "gas_total": total,
            "gas_per_payment": total / settled if settled else None,
        }
        self.results["sdk"] = result
        say(
            f"  {settled}/{result['attempted']} settled in {result['seconds']:.1f} s = "
            f"{result['payments_per_s']} payments/s"
            + (f", {total / settled:,.0f} gas/payment" if settled else "")
            + (f"; failures: {result['failures'][:3]}" if result["failures"] else "")
        )


def sdk_settle(key: str, rpc_url: str, headers: list[str], max_wait: float) -> dict[str, Any]:
    """The official SDK's facilitator, as its docs set it up, on eip155:31337."""
    from x402 import x402FacilitatorSync
    from x402.mechanisms.evm import FacilitatorWeb3Signer
    from x402.mechanisms.evm.exact import register_exact_evm_facilitator
    from x402.schemas import PaymentPayload

    signer = FacilitatorWeb3Signer(private_key=key, rpc_url=rpc_url)
    facilitator = x402FacilitatorSync()
    register_exact_evm_facilitator(facilitator, signer, networks="eip155:31337")
    payloads = [PaymentPayload.model_validate(decode_header(h)) for h in headers]
    tx_hashes: list[str] = []
    failures: list[str] = []
    started = time.monotonic()
    attempted = 0
    for payload in payloads:
        if time.monotonic() - started > max_wait:
            break
        attempted += 1
        verified = facilitator.verify(payload, payload.accepted)
        if not verified.is_valid:
            failures.append(f"verify: {verified.invalid_reason}")
            continue
        settled = facilitator.settle(payload, payload.accepted)
        if not settled.success:
            failures.append(f"settle: {settled.error_reason}")
            continue
        tx_hashes.append(settled.transaction)
    seconds = time.monotonic() - started
    return {
        "attempted": attempted,
        "settled": len(tx_hashes),
        "seconds": round(seconds, 2),
        "payments_per_s": round(len(tx_hashes) / seconds, 2) if seconds else None,
        "failures": failures[:10],
        "tx_hashes": tx_hashes,
        "relayer": Account.from_key(key).address,
    }


# -- profile summary ---------------------------------------------------------------------


def summarise_profile(path: Path) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks -> the top functions by self and inclusive share."""
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}

    def top(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * c / total, 1)) for name, c in counter.most_common(n)]

    return {"samples": total, "self": top(self_counts, 25), "inclusive": top(inclusive, 40)}


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number
    # and shorten site-packages paths so one function is one entry.
    name, _, location = frame.partition(" (")
    location = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in location:
            location = location.split(marker, 1)[1]
            break
    return f"{name} ({location})" if location else name


def format_profile(summary: dict[str, Any]) -> str:
    lines = [f"py-spy samples: {summary['samples']}", "", "top self time:"]
    lines += [f"  {share:5.1f} %  {name}" for name, share in summary["self"]]
    lines += ["", "top inclusive time:"]
    lines += [f"  {share:5.1f} %  {name}" for name, share in summary["inclusive"]]
    return "\n".join(lines) + "\n"


# -- report ------------------------------------------------------------------------------


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, result, target, met?) for the table."""

    def met(ok: bool | None) -> str:
        return "n/a" if ok is None else ("yes" if ok else "**no**")

    out: list[tuple[str, str, str, str]] = []
    accept = results.get("accept", {})
    for c in ("100", "1000"):
        run = accept.get(c)
        if not run:
            continue
        target_rps = c == "1000"
        out.append(
            (
                f"accept (`payfirst api` alone, {accept.get('processes', 1)} processes), "
                f"{c} connections: payments/s",
                f"{run['payments_per_s']:,.0f}",
                "≥ 3,000" if target_rps else "",
                met(run["payments_per_s"] >= TARGETS["accept_rps_1000"]) if target_rps else "",
            )
        )
        out.append(
            (
                f"accept, {c} connections: latency p50 / p99",
                f"{run['p50_ms']:.1f} ms / {run['p99_ms']:.1f} ms",
                "p99 < 50 ms" if target_rps else "",
                met(run["p99_ms"] < TARGETS["accept_p99_ms_1000"]) if target_rps else "",
            )
        )
    settle = results.get("settle")
    if settle:
        out.append(
            (
                f"settlement: burst of {settle['payments']:,}, settled + confirmed payments/s",
                f"{settle['payments_per_s']} ({settle['completed']:,} in {settle['seconds']} s)",
                "≥ 500",
                met((settle["payments_per_s"] or 0) >= TARGETS["settle_rps"]),
            )
        )
        mints = settle.get("mints")
        if mints:
            out.append(
                (
                    "settlement burst: all its mints delivered, s after first accept",
                    f"{mints['seconds_from_first_accept']} s ({mints['open']} still open)",
                    "",
                    "",
                )
            )
    latency = results.get("latency")
    if latency:
        out.append(
            (
                f"request → mint confirmed, {latency['payments']} at {latency['rate_per_s']}/s:"
                " p50 / p99",
                f"{latency['mint_p50_s']} s / {latency['mint_p99_s']} s",
                "p50 ≤ 3 s",
                met(latency["mint_p50_s"] <= TARGETS["mint_latency_p50_s"]),
            )
        )
        out.append(
            (
                "request → payment confirmed: p50 / p99",
                f"{latency['payment_p50_s']} s / {latency['payment_p99_s']} s",
                "",
                "",
            )
        )
    compare = results.get("compare_payfirst", {})
    batched = (compare.get("batched") or {}).get("gas", {}).get("gas_per_payment")
    if batched is None and results.get("batching_setting"):
        batched = (settle or {}).get("gas", {}).get("gas_per_payment")
    unbatched = (compare.get("unbatched") or compare.get("as is") or {}).get("gas", {})
    unbatched_gas = unbatched.get("gas_per_payment")
    if unbatched_gas:
        if batched:
            ratio = batched / unbatched_gas
            out.append(
                (
                    "gas per settled payment, batched vs one tx each",
                    f"{batched:,.0f} vs {unbatched_gas:,.0f} ({ratio:.2f}x)",
                    "≤ 0.7x",
                    met(ratio <= TARGETS["gas_ratio"]),
                )
            )
        else:
            out.append(
                (
                    "gas per settled payment (no batching setting yet: one tx each)",
                    f"{unbatched_gas:,.0f}",
                    "≤ 0.7x unbatched",
                    met(False),
                )
            )
    memory = results.get("memory")
    if memory:
        out.append(
            (
                f"API peak RSS with {memory['queued']:,} queued",
                f"{memory['api_peak_rss_mb']:.0f} MB",
                "< 300 MB",
                met(memory["api_peak_rss_mb"] < TARGETS["rss_mb"]),
            )
        )
    if "worker_peak_rss_mb" in results:
        out.append(
            ("worker peak RSS (pipeline runs)", f"{results['worker_peak_rss_mb']:.0f} MB", "", "")
        )
    sdk = results.get("sdk")
    for label, run in compare.items():
        out.append(
            (
                f"side by side: payfirst ({label}), {run['payments']} payments",
                f"{run['payments_per_s']} payments/s ({run['completed']} in {run['seconds']} s)",
                "",
                "",
            )
        )
    if sdk:
        out.append(
            (
                f"side by side: x402 SDK facilitator, {sdk['attempted']} payments one by one",
                f"{sdk['payments_per_s']} payments/s ({sdk['settled']} in {sdk['seconds']} s)",
                "",
                "",
            )
        )
        gas = sdk["gas"]["gas_per_payment"]
        if gas:
            out.append(("gas per payment, x402 SDK facilitator", f"{gas:,.0f}", "", ""))
    return out


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"payfirst benchmark, {meta['date']} (commit {meta['commit']}, {meta['cpus']} cores, "
        f"anvil --block-time 1, PostgreSQL, run took {meta['run_s']:.0f} s)",
        "",
        "| measure | result | target | met? |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m} | {r} | {t} | {ok} |" for m, r, t, ok in rows(results)]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    accept = results.get("accept", {})
    conns = [c for c in ("100", "1000") if c in accept]
    ax = axes[0]
    ax.bar([f"{c} conn" for c in conns], [accept[c]["payments_per_s"] for c in conns], color="C0")
    ax.axhline(TARGETS["accept_rps_1000"], color="red", linestyle="--", label="target")
    ax.set_title("accept: payments/s")
    ax.legend()
    ax = axes[1]
    x = range(len(conns))
    ax.bar([i - 0.2 for i in x], [accept[c]["p50_ms"] for c in conns], 0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [accept[c]["p99_ms"] for c in conns], 0.4, label="p99")
    ax.set_xticks(list(x), [f"{c} conn" for c in conns])
    ax.axhline(TARGETS["accept_p99_ms_1000"], color="red", linestyle="--")
    ax.set_title("accept latency (ms)")
    ax.legend()
    ax = axes[2]
    labels, values = [], []
    if "settle" in results:
        labels.append(f"payfirst\nburst {results['settle']['payments']}")
        values.append(results["settle"]["payments_per_s"] or 0)
    for label, run in results.get("compare_payfirst", {}).items():
        labels.append(f"payfirst\n{label} {run['payments']}")
        values.append(run["payments_per_s"] or 0)
    if "sdk" in results:
        labels.append(f"x402 SDK\n{results['sdk']['attempted']}")
        values.append(results["sdk"]["payments_per_s"] or 0)
    ax.bar(labels, values, color="C2")
    ax.set_yscale("log")
    ax.set_title("settled + confirmed payments/s (log)")
    ax = axes[3]
    labels, values = [], []
    for label, run in results.get("compare_payfirst", {}).items():
        if run["gas"]["gas_per_payment"]:
            labels.append(f"payfirst\n{label}")
            values.append(run["gas"]["gas_per_payment"])
    if results.get("sdk", {}).get("gas", {}).get("gas_per_payment"):
        labels.append("x402 SDK")
        values.append(results["sdk"]["gas"]["gas_per_payment"])
    ax.bar(labels, values, color="C3")
    ax.set_title("gas per settled payment")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "latest.md").write_text(markdown(results))
    chart(results, RESULTS / "latest.png")


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True)
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


async def main_async(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        say("wrk is not installed (apt-get install -y wrk; `make bench` does it)")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "commit": commit(),
            "cpus": os.cpu_count(),
            "args": vars(args),
        }
    }
    chain = DevChain()
    say("starting anvil (--block-time 1) and deploying the demo contracts ...")
    deployment = await chain.start(block_time=1.0, max_mint_count=10**8)
    rpc = RpcClient(deployment.rpc_url)
    signer: Signer | None = None
    try:
        path = f"/api/mint/{deployment.token}"
        await reset_database(deployment, deployment.rpc_url)
        port = free_port()
        api = await start_api(payfirst_env(deployment.rpc_url, port), port, "requirements")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                answer = await http.post(path, content=BODY)
                required = PaymentRequiredV2.model_validate(
                    decode_header(answer.headers["PAYMENT-REQUIRED"])
                )
        finally:
            api.stop()
        signer = Signer(required)
        bench = Bench(args, chain, deployment, rpc, signer, path, results)
        phases = [bench.accept, bench.memory, bench.pipeline]
        if args.sdk:
            phases.append(bench.sdk)
        for phase in phases:
            try:
                await phase()
            except Exception as exc:
                say(f"  !! {phase.__name__} failed: {type(exc).__name__}: {exc}")
                results.setdefault("errors", []).append(f"{phase.__name__}: {exc}")
            results["meta"]["run_s"] = round(time.monotonic() - started, 1)
            write_results(results)
    finally:
        if signer is not None:
            signer.close()
        await rpc.aclose()
        await chain.stop()
    say(f"\n{markdown(results)}")
    say(f"wrote {RESULTS / 'latest.json'}, latest.md, latest.png in {results['meta']['run_s']} s")
    return 1 if results.get("errors") else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--accept-seconds", type=int, default=8)
    parser.add_argument(
        "--api-processes", type=int, default=2, help="PAYFIRST_API_PROCESSES for the accept run"
    )
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--rss-n", type=int, default=10_000)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--latency-rate", type=float, default=20.0)
    parser.add_argument("--compare-n", type=int, default=200)
    parser.add_argument("--settle-timeout", type=float, default=180.0)
    parser.add_argument("--sdk-timeout", type=float, default=240.0)
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--no-sdk", dest="sdk", action="store_false")
    args = parser.parse_args()
    if args.quick:
        args.accept_seconds, args.burst, args.rss_n = 3, 500, 1000
        args.latency_n, args.compare_n, args.settle_timeout, args.sdk_timeout = 40, 30, 90, 60
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
