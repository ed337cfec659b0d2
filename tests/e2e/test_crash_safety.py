"""SPEC §2 rule 4: a worker killed at any instant loses nothing and duplicates nothing.

The worker runs as a real `payfirst worker` process on the test's own PostgreSQL schema and
the shared anvil chain (reverted to its deployment after each test). `PAYFIRST_CRASH_AT`
makes it SIGKILL itself at one of the crash points of `payfirst.pipeline.faults`:

- `after_persist`: the signed transactions are committed, nothing is broadcast;
- `after_broadcast`: the transactions reached the node, `sent` was never written;
- `in_callback`: the mint items were inserted inside the completing transaction, which
  never commits.

Each test queues real signed payments through the in-process API (no worker in the test
process), lets the worker die at its crash point, checks that the state left behind is
exactly what that point means, restarts the worker without the crash point and checks
that every payment completed once: USDC moved once per payment, every mint id minted once,
and `check_invariants` holds."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import pytest
import pytest_asyncio

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.evm import abi, calls
from payfirst.pipeline import faults
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.relayer_loops import RelayerLoops
from tests.e2e.harness import Harness, assert_delivered_exactly_once, check_invariants
from tests.fixtures.chain import SharedChain, TrackedRpc
from tests.fixtures.store import execute_raw, fetch_raw

PAYFIRST_BIN = Path(sys.executable).with_name("payfirst")
# (payer index, quantity): 6 payments from 3 payers, quantities 1-3.
ORDERS = [(1, 1), (2, 2), (3, 3), (1, 3), (2, 1), (3, 2)]
# Short intervals keep the test quick; the worker reads them at every tick.
FAST_SETTINGS = {
    "payment_batch_interval_ms": 200,
    "confirmation_interval_ms": 200,
    "mint_interval_ms": 200,
}
CRASH_WAIT_S = 30.0
# This case waits for the killed worker's lease to expire by itself (its TTL, 15 s).
NATURAL_LEASE_EXPIRY = (faults.AFTER_PERSIST, "direct")
SETTLE_WAIT_S = 45.0


def worker_dsn(dsn: str, schema: str) -> str:
    """`dsn` with `search_path=<schema>`: asyncpg sends unknown DSN query parameters as
    server settings, so the worker process works in the test's own schema."""
    separator = "&" if urlsplit(dsn).query else "?"
    return f"{dsn}{separator}search_path={schema}"


@dataclass
class WorkerProcesses:
    """`payfirst worker` subprocesses of one test; `kill_all` ends whichever still run."""

    database_url: str
    rpc_url: str
    log_dir: Path
    started: list[tuple[asyncio.subprocess.Process, Path]] = field(default_factory=list)

    async def start(
        self, crash_at: str | None, *, settler: str | None = None
    ) -> tuple[asyncio.subprocess.Process, Path]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYFIRST_")}
        env.update(
            PAYFIRST_DATABASE_URL=self.database_url,
            PAYFIRST_RPC_URL=self.rpc_url,
            PAYFIRST_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        if settler:  # batched settlement through the BatchSettler, else one tx per payment
            env["PAYFIRST_SETTLER_ADDRESS"] = settler
        if crash_at is not None:
            env["PAYFIRST_CRASH_AT"] = crash_at
        log_path = self.log_dir / f"worker-{len(self.started)}-{crash_at or 'normal'}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                str(PAYFIRST_BIN),
                "worker",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append((process, log_path))
        return process, log_path

    async def stop(self, process: asyncio.subprocess.Process) -> None:
        """Ctrl-C, as an operator would; SIGKILL if it does not exit."""
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def kill_all(self) -> None:
        for process, _ in self.started:
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest_asyncio.fixture
async def crash_env(
    pg_store: PostgresStore, pg_dsn: str, tmp_path: Path, shared_chain: SharedChain
) -> AsyncIterator[tuple[Harness, WorkerProcesses]]:
    assert pg_store.schema is not None
    chain, deployment = await shared_chain.checkout()
    await pg_store.upsert_token(deployment.to_token())
    for name, value in FAST_SETTINGS.items():
        await pg_store.set_setting(name, value)
    rpc = TrackedRpc(deployment.rpc_url)
    # Never started: the worker of these tests is the subprocess. The Harness only needs
    # one for its type; the API's wake-up callback stays a no-op.
    idle = RelayerLoops(
        pg_store, EvmChain(rpc), Relayer.from_key(ANVIL_KEYS[0], deployment.chain_id)
    )
    services = Services(store=pg_store, chain=EvmChain(rpc))
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(services)), base_url="http://127.0.0.1"
    )
    workers = WorkerProcesses(worker_dsn(pg_dsn, pg_store.schema), deployment.rpc_url, tmp_path)
    await clear_leases(pg_store)  # a lease left by another test's worker (same dev key)
    try:
        yield Harness(chain, deployment, pg_store, rpc, http, idle), workers
    finally:
        await workers.kill_all()
        await clear_leases(pg_store)
        await http.aclose()
        await rpc.aclose()
        await shared_chain.checkin(rpc)


async def clear_leases(store: PostgresStore) -> None:
    exists = await fetch_raw(store, "SELECT to_regclass('relayer_leases') IS NOT NULL AS ok")
    if exists[0]["ok"]:
        await execute_raw(store, "DELETE FROM relayer_leases")


def log_tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


async def payments_by_id(h: Harness) -> dict[UUID, dict[str, Any]]:
    rows = await fetch_raw(
        h.store,
        "SELECT id, status, payer, quantity, tx_hash, raw_tx, nonce, relayer, auth_nonce"
        " FROM payment_queue",
    )
    return {UUID(str(r["id"])): r for r in rows}


async def mint_item_count(h: Harness) -> int:
    rows = await fetch_raw(h.store, "SELECT count(*) AS n FROM mint_queue")
    return int(rows[0]["n"])


async def authorization_used(h: Harness, payer: str, nonce: str) -> bool:
    raw = await h.rpc.eth_call(h.deployment.usdc, calls.authorization_state(payer, nonce))
    return bool(abi.decode_result(["bool"], raw)[0])


async def wait_for_exit(process: asyncio.subprocess.Process, log_path: Path) -> int:
    try:
        return await asyncio.wait_for(process.wait(), timeout=CRASH_WAIT_S)
    except TimeoutError:
        raise AssertionError(
            f"worker did not reach its crash point within {CRASH_WAIT_S}s:\n{log_tail(log_path)}"
        ) from None


async def assert_after_persist(h: Harness, relayer_nonce_before: int) -> None:
    """Signed transactions are in the database; the node has seen none of them."""
    payments = await payments_by_id(h)
    relayer = h.deployment.relayer_address
    assert {r["status"] for r in payments.values()} == {"processing"}
    # One nonce per transaction (a batched settlement carries several payments).
    nonces = sorted({int(r["nonce"]) for r in payments.values()})
    assert nonces == list(range(relayer_nonce_before, relayer_nonce_before + len(nonces)))
    for row in payments.values():
        assert row["raw_tx"] and row["tx_hash"] and row["relayer"] == relayer
        assert await h.rpc.get_transaction(row["tx_hash"]) is None, "broadcast before the crash"
        assert not await authorization_used(h, row["payer"], row["auth_nonce"])
    assert await h.rpc.get_transaction_count(relayer, "pending") == relayer_nonce_before
    assert await mint_item_count(h) == 0


async def assert_after_broadcast(h: Harness, relayer_nonce_before: int) -> None:
    """The node has every transaction (mined, or in its pool); no row says `sent`."""
    payments = await payments_by_id(h)
    assert {r["status"] for r in payments.values()} == {"processing"}
    for row in payments.values():
        receipt = await h.rpc.get_transaction_receipt(row["tx_hash"])
        if receipt is None:
            assert await h.rpc.get_transaction(row["tx_hash"]) is not None, (
                f"tx {row['tx_hash']} neither mined nor in the pool"
            )
        else:
            assert int(receipt["status"], 16) == 1
    pending_nonce = await h.rpc.get_transaction_count(h.deployment.relayer_address, "pending")
    assert pending_nonce == relayer_nonce_before + len({r["nonce"] for r in payments.values()})
    assert await mint_item_count(h) == 0


async def assert_in_callback(h: Harness, relayer_nonce_before: int) -> None:
    """Every payment is `sent` with a successful receipt; the completing transaction that
    inserted mint items never committed, so there are none."""
    payments = await payments_by_id(h)
    assert {r["status"] for r in payments.values()} == {"sent"}
    for row in payments.values():
        receipt = await h.rpc.get_transaction_receipt(row["tx_hash"])
        assert receipt is not None and int(receipt["status"], 16) == 1
        assert await authorization_used(h, row["payer"], row["auth_nonce"])
    assert await mint_item_count(h) == 0
    for row in payments.values():
        assert await h.token_balance(row["payer"]) == 0


INTERMEDIATE = {
    faults.AFTER_PERSIST: assert_after_persist,
    faults.AFTER_BROADCAST: assert_after_broadcast,
    faults.IN_CALLBACK: assert_in_callback,
}


async def expire_dead_leases(h: Harness, natural: bool) -> None:
    """The killed worker's relayer lease outlives it by its TTL; only then may the restarted
    worker take the key over. `natural`: let that happen (what production sees); else
    expire it now, as the TTL passing would, to keep the test short."""
    if natural:
        return
    exists = await fetch_raw(h.store, "SELECT to_regclass('relayer_leases') IS NOT NULL AS ok")
    if exists[0]["ok"]:
        await execute_raw(h.store, "UPDATE relayer_leases SET expires_at = now() - interval '1s'")


@pytest.mark.parametrize("settlement", ["direct", "batched"])
@pytest.mark.parametrize("crash_at", list(INTERMEDIATE))
async def test_worker_killed_at_crash_point_recovers_exactly_once(
    crash_env: tuple[Harness, WorkerProcesses], crash_at: str, settlement: str
) -> None:
    h, workers = crash_env
    d = h.deployment
    settler = d.settler if settlement == "batched" else None
    if settlement == "batched":
        assert settler, "the dev chain deployed no BatchSettler"
    payers = {i: h.payer(i) for i, _ in ORDERS}
    usdc_before = {i: await h.usdc_balance(p.address) for i, p in payers.items()}
    token_usdc_before = await h.usdc_balance(d.token)
    relayer_nonce_before = await h.rpc.get_transaction_count(d.relayer_address, "pending")

    answers = [await h.buy(payers[i], quantity) for i, quantity in ORDERS]
    assert [a.status_code for a in answers] == [202] * len(ORDERS), [a.text for a in answers]
    ordered = {
        UUID(a.json()["paymentQueueId"]): (i, q) for a, (i, q) in zip(answers, ORDERS, strict=True)
    }
    assert len(ordered) == len(ORDERS)

    # 1. The worker dies by SIGKILL at its crash point.
    process, log_path = await workers.start(crash_at, settler=settler)
    returncode = await wait_for_exit(process, log_path)
    assert returncode == -signal.SIGKILL, f"exit {returncode}:\n{log_tail(log_path)}"
    await INTERMEDIATE[crash_at](h, relayer_nonce_before)
    if settlement == "batched":
        txs = await fetch_raw(h.store, "SELECT count(DISTINCT tx_hash) AS n FROM payment_queue")
        assert int(txs[0]["n"]) < len(ORDERS), "batched settlement put one payment per tx"

    # 2. Restarted without the crash point, it finishes everything (after the dead worker's
    # lease ran out: naturally once, fast-forwarded otherwise).
    await expire_dead_leases(h, natural=(crash_at, settlement) == NATURAL_LEASE_EXPIRY)
    process, log_path = await workers.start(None, settler=settler)
    try:
        await h.settled(max_wait=SETTLE_WAIT_S)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{log_tail(log_path)}") from None
    assert process.returncode is None, f"worker exited:\n{log_tail(log_path)}"
    await workers.stop(process)

    # 3. Exactly once, by the database and by the chain.
    payments = await payments_by_id(h)
    assert set(payments) == set(ordered)
    await assert_delivered_exactly_once(
        h,
        {payment_id: (payers[i], quantity) for payment_id, (i, quantity) in ordered.items()},
        {payers[i].address: before for i, before in usdc_before.items()},
        token_usdc_before,
        relayer_nonce_before,
    )


async def test_crash_point_fires_only_when_armed(
    crash_env: tuple[Harness, WorkerProcesses],
) -> None:
    """Control: with no crash point the same worker settles a payment without dying, so the
    SIGKILLs above are the crash points' doing."""
    h, workers = crash_env
    answer = await h.buy(h.payer(4), 2)
    assert answer.status_code == 202
    started = time.monotonic()
    process, log_path = await workers.start(None)
    try:
        await h.settled(max_wait=SETTLE_WAIT_S)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{log_tail(log_path)}") from None
    assert time.monotonic() - started < SETTLE_WAIT_S
    assert process.returncode is None
    await workers.stop(process)
    assert process.returncode in (0, -signal.SIGINT)
    assert await h.token_balance(h.payer(4).address) == 2 * h.deployment.mint_amount
    await check_invariants(h.store, h.rpc)
