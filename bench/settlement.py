"""Phase `settle`: a burst of payments through `payfirst api` + `payfirst worker` (first
accept -> last payment settled and confirmed, then until their mints are delivered), and
gas per payment with `payment_tx_batching` = 1 and = 0."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from bench.common import BATCHING, Bench, say, set_setting, settings_in_force
from bench.pipeline import Pipeline, burst, pipeline


async def run(bench: Bench) -> None:
    n = bench.options.burst
    say(f"\n== settlement: burst of {n:,} payments, `payfirst api` + `payfirst worker`")
    async with pipeline(bench, "settle") as running:
        bench.results["batching_setting"] = running.batching
        bench.results["settings"] = await settings_in_force(bench.rpc_url)
        result = await burst(bench, running, n, 100, "burst")
        bench.results["settle"] = result
        gas = result["gas"]["gas_per_payment"]
        say(
            f"  {result['completed']:,}/{n:,} completed in {result['seconds']:.1f} s from first "
            f"accept = {result['payments_per_s']} payments/s (accepting took "
            f"{result['accept_s']:.1f} s; {result['gas']['txs']} settlement txs"
            + (f", {gas:,.0f} gas/payment)" if gas else ")")
        )
        result["mints"] = await mints_drained(bench, running.db, result.pop("started_epoch"))
        bench.results["worker_peak_rss_mb"] = round(running.worker.memory_mb()["VmHWM"], 1)
        bench.results["api_peak_rss_mb_pipeline"] = round(running.api.memory_mb()["VmHWM"], 1)
        say(
            f"  worker peak RSS {bench.results['worker_peak_rss_mb']:.0f} MB, "
            f"API {bench.results['api_peak_rss_mb_pipeline']:.0f} MB"
        )
        await compare_batching(bench, running)


async def mints_drained(bench: Bench, db: asyncpg.Connection, started_at: float) -> dict[str, Any]:
    """After the burst: wait (bounded) until its mints are delivered, so the next runs start
    on a quiet pipeline, and report how long delivery took."""
    deadline = time.monotonic() + bench.options.settle_timeout
    while True:
        open_mints = int(
            await db.fetchval(
                "SELECT count(*) FROM mint_queue WHERE status NOT IN ('completed', 'failed')"
            )
        )
        if open_mints == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    completed = int(await db.fetchval("SELECT count(*) FROM mint_queue WHERE status = 'completed'"))
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


async def compare_batching(bench: Bench, running: Pipeline) -> None:
    """The same number of payments with one settler tx per batch, then one tx each."""
    n = bench.options.compare_n
    runs: dict[str, Any] = {}
    modes = ((1, "batched"), (0, "unbatched")) if running.batching else ((None, "as is"),)
    for value, label in modes:
        if value is not None:
            await set_setting(bench.rpc_url, BATCHING, value)
            await asyncio.sleep(0.5)  # the worker reads the settings at every tick
        say(f"\n== payfirst, {BATCHING} = {value if value is not None else 'n/a'}: {n} payments")
        result = await burst(bench, running, n, 100, label)
        result.pop("started_epoch")
        runs[label] = result
        gas = result["gas"]["gas_per_payment"]
        say(
            f"  {result['completed']}/{n} completed in {result['seconds']:.1f} s = "
            f"{result['payments_per_s']} payments/s; {result['gas']['txs']} txs, "
            + (f"{gas:,.0f} gas/payment" if gas else "no gas figure")
        )
    if running.batching:
        await set_setting(bench.rpc_url, BATCHING, 1)
    bench.results["compare_payfirst"] = runs
