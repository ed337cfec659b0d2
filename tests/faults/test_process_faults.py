"""Fault suite, the process side: the database restarts under load, two workers run on
one relayer key, a worker is killed -9 at a random instant. (Named crash points and the
RPC cut at the worst moments: tests/e2e/test_crash_safety.py and test_rpc_outage.py.)
Each case ends with the same `assert_chain_matches`."""

from __future__ import annotations

import asyncio
import random
import signal

import asyncpg

from payfirst.adapters.store_postgres import PostgresStore
from tests.e2e.test_crash_safety import WorkerProcesses, clear_leases, worker_dsn
from tests.faults.conftest import FaultEnv
from tests.faults.invariants import assert_chain_matches, snapshot

PAYERS = list(range(1, 9))


def orders(count: int, rng: random.Random) -> list[tuple[int, int]]:
    return [(rng.choice(PAYERS), rng.randint(1, 3)) for _ in range(count)]


async def terminate_backends(store: PostgresStore, dsn: str) -> int:
    """A database restart as the store sees it: every server connection of its pool is
    terminated (pg_terminate_backend), from a connection of its own."""
    pids = [
        holder._con.get_server_pid()
        for holder in store.pool._holders
        if holder._con is not None and not holder._con.is_closed()
    ]
    conn = await asyncpg.connect(dsn)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid = ANY($1::int[])",
            pids,
        )
    finally:
        await conn.close()
    return int(killed)


async def test_database_restart_under_load(fault_env: FaultEnv, pg_dsn: str) -> None:
    env = fault_env
    await env.start_worker(batched=True)
    h = env.harness
    before = await snapshot(h, [h.payer(i).address for i in PAYERS])
    rng = random.Random(11)
    ids = []
    killed = 0
    for _ in range(4):
        ids += await env.buy_wave(orders(5, rng))
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        killed += await terminate_backends(env.store, pg_dsn)
    await env.settled()
    assert killed > 0
    assert await assert_chain_matches(h, before) == {"completed": len(ids)}


async def test_two_workers_on_one_key(fault_env: FaultEnv) -> None:
    """Two workers, the same relayer key, no lease between them: nonces are assigned under
    the relayer row's lock, status changes are guarded, so nothing is signed twice."""
    env = fault_env
    await env.start_worker(batched=True)
    await env.start_worker(batched=False)
    h = env.harness
    before = await snapshot(h, [h.payer(i).address for i in PAYERS])
    rng = random.Random(12)
    ids = []
    for _ in range(5):
        ids += await env.buy_wave(orders(6, rng))
        await asyncio.sleep(rng.uniform(0.1, 0.5))
    await env.settled()
    assert await assert_chain_matches(h, before) == {"completed": len(ids)}


async def test_worker_killed_at_random_instants(
    fault_env: FaultEnv, pg_dsn: str, tmp_path: object
) -> None:
    """`payfirst worker` processes SIGKILLed at random instants under load, three times,
    then one left to finish."""
    env = fault_env
    assert env.store.schema is not None
    await clear_leases(env.store)
    procs = WorkerProcesses(
        worker_dsn(pg_dsn, env.store.schema),
        env.deployment.rpc_url,
        tmp_path,  # type: ignore[arg-type]
    )
    h = env.harness
    before = await snapshot(h, [h.payer(i).address for i in PAYERS])
    rng = random.Random(13)
    ids = []
    try:
        for _ in range(3):
            process, _ = await procs.start(None, settler=env.deployment.settler)
            ids += await env.buy_wave(orders(6, rng))
            await asyncio.sleep(rng.uniform(0.5, 3.0))  # the instant of the kill
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await clear_leases(env.store)  # its lease would expire by itself in 15 s
        process, _ = await procs.start(None, settler=env.deployment.settler)
        await env.settled()
        await procs.stop(process)
    finally:
        await procs.kill_all()
        await clear_leases(env.store)
    assert await assert_chain_matches(h, before) == {"completed": len(ids)}
