"""What the settling phases share: payfirst's whole pipeline (`payfirst api` + `payfirst
worker` on a fresh database), bursts of payments through it, and gas from receipts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.common import (
    BATCHING,
    DSN,
    TERMINAL,
    Bench,
    Proc,
    payfirst_env,
    reset_database,
    say,
    set_setting,
    start_api,
    start_worker,
)
from bench.load import accepted_ids, post_all, status_counts
from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import free_port


@dataclass
class Pipeline:
    port: int
    db: asyncpg.Connection
    api: Proc
    worker: Proc
    batching: bool  # False when this payfirst has no `payment_tx_batching` setting


@asynccontextmanager
async def pipeline(bench: Bench, tag: str, batching: int = 1) -> AsyncIterator[Pipeline]:
    """A fresh database and `payfirst api` + `payfirst worker` on it."""
    await reset_database(bench.deployment, bench.rpc_url)
    has_batching = await set_setting(bench.rpc_url, BATCHING, batching)
    if not has_batching:
        say(f"  (no `{BATCHING}` setting in this payfirst: every settlement is one tx)")
    port = free_port()
    env = payfirst_env(bench.rpc_url, port, bench.deployment.settler)
    api = await start_api(env, port, f"{tag}-api")
    try:
        worker = await start_worker(env, f"{tag}-worker")
    except BaseException:
        api.stop()
        raise
    db = await asyncpg.connect(DSN)
    try:
        yield Pipeline(port, db, api, worker, has_batching)
    finally:
        worker.stop()
        api.stop()
        await db.close()


async def burst(
    bench: Bench, run: Pipeline, n: int, concurrency: int, label: str
) -> dict[str, Any]:
    """`n` payments POSTed over `concurrency` connections; first accept -> last payment
    `completed` (settled and confirmed), and their gas."""
    headers = bench.signer.sign(n)
    started = time.time()
    replies = await post_all(run.port, bench.path, headers, concurrency, 120)
    accept_s = time.time() - started
    ids = accepted_ids(replies)
    counts = await wait_settled(run.db, ids, bench.options.settle_timeout, label)
    polled = time.time()
    last = await last_completed_epoch(run.db, ids)
    end = min(last, polled) if last is not None else polled
    completed = counts.get("completed", 0)
    seconds = end - started
    gas = await payment_gas(bench.rpc, run.db, ids)
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
        receipts = await rpc.call_many([("eth_getTransactionReceipt", [h]) for h in chunk])
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
