"""Phase `latency`: request -> mint confirmed for a steady stream of payments through the
whole pipeline, each client long-polling `GET /api/payment/{id}?wait=30` as a buyer does."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.common import BODY, Bench, percentile, say
from bench.pipeline import pipeline


async def run(bench: Bench) -> None:
    n, rate = bench.options.latency_n, bench.options.latency_rate
    timeout = bench.options.settle_timeout
    say(f"\n== latency: {n} payments at {rate}/s, each client long-polls until minted")
    headers = bench.signer.sign(n)
    minted: list[float] = []
    confirmed: list[float] = []
    failures: list[str] = []
    async with pipeline(bench, "latency") as running:
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        base = f"http://127.0.0.1:{running.port}"
        async with httpx.AsyncClient(base_url=base, timeout=45, limits=limits) as http:

            async def one(i: int, header: str) -> None:
                await asyncio.sleep(i / rate)
                started = time.monotonic()
                answer = await http.post(
                    bench.path,
                    content=BODY,
                    headers={"content-type": "application/json", "payment-signature": header},
                )
                if answer.status_code != 202:
                    failures.append(f"{answer.status_code} {answer.text[:100]}")
                    return
                payment_id = answer.json()["paymentQueueId"]
                paid = False
                while time.monotonic() - started < timeout:
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
                n / rate + timeout + 30,
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
    bench.results["latency"] = result
    say(
        f"  request -> mint confirmed: p50 {result['mint_p50_s']} s, p99 "
        f"{result['mint_p99_s']} s ({len(minted)}/{n} minted; request -> payment completed "
        f"p50 {result['payment_p50_s']} s, p99 {result['payment_p99_s']} s)"
    )
