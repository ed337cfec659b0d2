"""Clients waiting on payments: what N concurrent long-polls cost `payfirst api`.

Starts anvil and `payfirst api` (no worker, so payments stay pending) on PostgreSQL
(database payfirst_bench), queues one payment, then holds N concurrent
`GET /api/payment/{id}?wait=W` and reports, while they wait: the API process's RSS, the
latency of `/health` and of a long-poll on an already finished payment; and after they
end, the RSS again. Issue 8 item 6 saw 3,000 waiters take RSS from 74 to 180 MB (never
given back) and /health to 2 s, with each waiter polling the database every 0.2 s.

    .venv/bin/python bench/waiters.py [--waiters 3000] [--wait 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DSN, Proc, payfirst_env, reset_database, start_api
from payfirst.adapters.devchain import ANVIL_KEYS, DevChain, free_port
from payfirst.client.signing import Payer
from payfirst.x402 import PaymentRequiredV2, decode_header


async def queue_payment(http: httpx.AsyncClient, base: str, token: str) -> str:
    asked = await http.post(f"{base}/api/mint/{token}", json={"quantity": 1})
    required = PaymentRequiredV2.model_validate(decode_header(asked.headers["PAYMENT-REQUIRED"]))
    header = Payer(ANVIL_KEYS[1]).pay_v2(required.accepts[0], required.resource)
    answer = await http.post(
        f"{base}/api/mint/{token}", json={"quantity": 1}, headers={"PAYMENT-SIGNATURE": header}
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["paymentQueueId"])


async def timed_get(http: httpx.AsyncClient, url: str) -> float:
    started = time.perf_counter()
    answer = await http.get(url)
    answer.raise_for_status()
    return time.perf_counter() - started


async def main(waiters: int, wait_s: int) -> None:
    chain = DevChain()
    deployment = await chain.start(port=free_port())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = payfirst_env(deployment.rpc_url, port) | {
        "PAYFIRST_MAX_CONNECTIONS": str(waiters + 100),
        "PAYFIRST_LOG_LEVEL": "WARNING",
    }
    api: Proc | None = None
    try:
        await reset_database(deployment, deployment.rpc_url)
        api = await start_api(env, port, "waiters-api")
        limits = httpx.Limits(max_connections=waiters + 10, max_keepalive_connections=waiters + 10)
        async with httpx.AsyncClient(timeout=wait_s + 30, limits=limits) as http:
            pending = await queue_payment(http, base, deployment.token)
            finished = await queue_payment(http, base, deployment.token)
            db = await asyncpg.connect(DSN)
            await db.execute(
                "UPDATE payment_queue SET status = 'failed', error = 'bench' WHERE id = $1",
                finished,
            )
            await db.close()
            rss_before = api.memory_mb()["VmRSS"]
            held = [
                asyncio.create_task(http.get(f"{base}/api/payment/{pending}?wait={wait_s}"))
                for _ in range(waiters)
            ]
            await asyncio.sleep(min(5, wait_s / 3))  # let every request arrive and wait
            rss_waiting = api.memory_mb()["VmRSS"]
            health = [await timed_get(http, f"{base}/health") for _ in range(20)]
            done_at_once = [
                await timed_get(http, f"{base}/api/payment/{finished}?wait={wait_s}")
                for _ in range(20)
            ]
            answers = await asyncio.gather(*held, return_exceptions=True)
            ok = sum(1 for a in answers if isinstance(a, httpx.Response) and a.status_code == 200)
            rss_after = api.memory_mb()["VmRSS"]
        print(f"{waiters} long-polls (?wait={wait_s}) on a pending payment, {ok} answered 200")
        print(
            f"  RSS of payfirst api: {rss_before:.0f} MB before, {rss_waiting:.0f} MB while "
            f"waiting, {rss_after:.0f} MB after"
        )
        print(
            f"  /health while they wait: median {statistics.median(health) * 1000:.1f} ms, "
            f"max {max(health) * 1000:.1f} ms"
        )
        print(
            f"  ?wait={wait_s} on a finished payment: median "
            f"{statistics.median(done_at_once) * 1000:.1f} ms, max {max(done_at_once) * 1000:.1f} ms"
        )
    finally:
        if api is not None:
            api.stop()
        await chain.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=3000)
    parser.add_argument("--wait", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.waiters, args.wait))
