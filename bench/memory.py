"""Phase `memory`: the peak RSS of `payfirst api` (no worker) after N payments queued."""

from __future__ import annotations

import asyncpg

from bench.common import DSN, Bench, payfirst_env, reset_database, say, start_api
from bench.load import post_all, status_counts
from payfirst.adapters.devchain import free_port


async def run(bench: Bench) -> None:
    n = bench.options.rss_n
    say(f"\n== memory: `payfirst api` after {n:,} payments queued (no worker)")
    await reset_database(bench.deployment, bench.rpc_url)
    port = free_port()
    api = await start_api(payfirst_env(bench.rpc_url, port), port, "rss-api")
    try:
        before = api.memory_mb()
        headers = bench.signer.sign(n)
        replies = await post_all(port, bench.path, headers, 100, 120)
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
    bench.results["memory"] = {
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
