"""Phase `open`: `payfirst api` alone (no worker) under an open loop: payments arrive at a
fixed rate (1,000/s, then 2,000/s) whatever the server does, and each latency runs from the
request's scheduled time (bench/open_loop.py). The payments are signed before the clock
starts; the client processes report how far behind the schedule they sent."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from typing import Any

from bench.common import ROOT, WORK, Bench, payfirst_env, percentile, reset_database, say, start_api
from bench.load import post_all, status_counts
from payfirst.adapters.devchain import free_port

# A client that sends this late (p99) did not keep the schedule: its figures understate
# what the server would see at the nominal rate.
LAG_LIMIT_MS = 10.0
CONNECTIONS_PER_CLIENT = 32
MAX_CONNECTIONS_PER_CLIENT = 500
DRAIN_TIMEOUT_S = 30.0
WARM_UP = 500


async def run(bench: Bench) -> None:
    options = bench.options
    processes = options.api_processes
    say(
        f"\n== accept (open loop): `payfirst api` alone ({processes} process(es)), "
        f"{options.open_clients} client processes on the same cores"
    )
    await reset_database(bench.deployment, bench.rpc_url)
    port = free_port()
    env = payfirst_env(bench.rpc_url, port) | {"PAYFIRST_API_PROCESSES": str(processes)}
    api = await start_api(env, port, "open-api")
    runs: dict[str, Any] = {"processes": processes, "client_processes": options.open_clients}
    try:
        # Warm-up (token cache, database pools in every API process): a cold start would
        # show as the first run's tail.
        warm = await post_all(port, bench.path, bench.signer.sign(WARM_UP), 50, 60)
        say(f"  warm-up: {len(warm)} payments, {status_counts(warm)}")
        for rate in options.open_rates:
            result = await at_rate(bench, port, rate, options.open_seconds, options.open_clients)
            runs[str(rate)] = result
            lag = result["schedule_lag_ms"]
            say(
                f"  {rate:>5}/s for {options.open_seconds:g} s: {result['achieved_per_s']:,.0f} "
                f"accepted/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                f"max {result['max_ms']:.1f} ms; errors {result['errors'] or 'none'}; client "
                f"lag p99 {lag['p99']:.1f} ms"
                + ("" if result["client_kept_schedule"] else " (the client fell behind)")
            )
        runs["api_memory_mb"] = api.memory_mb()
    finally:
        api.stop()
    bench.results["accept_open"] = runs


async def at_rate(
    bench: Bench, port: int, rate: int, seconds: float, clients: int
) -> dict[str, Any]:
    count = int(rate * seconds)
    started = time.monotonic()
    headers_file = WORK / "open-headers.txt"
    headers_file.write_text("\n".join(bench.signer.sign(count)) + "\n")
    say(f"  signed {count} payments in {time.monotonic() - started:.1f} s")
    outs = [WORK / f"open-client-{k}.json" for k in range(clients)]
    procs = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.open_loop", "--port", str(port)),
            *("--path", bench.path, "--headers", str(headers_file)),
            *("--count", str(count), "--rate", str(rate), "--index", str(k), "--of", str(clients)),
            *("--connections", str(CONNECTIONS_PER_CLIENT)),
            *("--max-connections", str(MAX_CONNECTIONS_PER_CLIENT)),
            *("--timeout", str(DRAIN_TIMEOUT_S), "--out", str(outs[k])),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for k in range(clients)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"READY":
                raise RuntimeError(f"open-loop client did not start: {line!r}")
        t0 = time.monotonic() + 0.2
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"GO {t0!r}\n".encode())
            await proc.stdin.drain()
        for proc in procs:
            code = await asyncio.wait_for(proc.wait(), seconds + DRAIN_TIMEOUT_S + 60)
            if code != 0:
                raise RuntimeError(f"open-loop client exited with {code}")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return summarise([json.loads(out.read_text()) for out in outs], rate, seconds, count, clients)


def summarise(
    parts: list[dict[str, Any]], rate: int, seconds: float, count: int, clients: int
) -> dict[str, Any]:
    latencies: list[float] = []
    lags: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    last_answer = 0.0
    for part in parts:
        for i, lag, latency, status in part["records"]:
            lags.append(lag * 1000)
            if latency is not None:
                latencies.append(latency * 1000)
                last_answer = max(last_answer, i / rate + latency)
            statuses[str(status)] += 1
    accepted = statuses.pop("202", 0)
    errors: dict[str, int] = {f"status {s}": n for s, n in statuses.items() if s != "0"}
    for part in parts:
        for kind, n in part["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    unfinished = sum(part["unfinished"] for part in parts)
    if unfinished:
        errors["unanswered"] = unfinished
    lag_p99 = percentile(lags, 99)
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "scheduled": count,
        "answered": len(latencies),
        "accepted": accepted,
        # accepted payments over the schedule's span or until the last answer, if later
        "achieved_per_s": round(accepted / max(seconds, last_answer), 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
        "errors": errors,
        "client_processes": clients,
        "connections_opened": sum(part["connections_opened"] for part in parts),
        "schedule_lag_ms": {
            "p50": round(percentile(lags, 50), 2),
            "p99": round(lag_p99, 2),
            "max": round(max(lags, default=float("nan")), 2),
        },
        "client_kept_schedule": lag_p99 <= LAG_LIMIT_MS,
    }
