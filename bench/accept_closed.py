"""Phase `accept`: `payfirst api` alone (no worker) under wrk, a closed loop: each of the
100, then 1,000 connections sends its next payment as soon as the last is answered. Then
one more 1,000-connection run with py-spy on an API process."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import asyncpg

from bench.common import DSN, WORK, Bench, Proc, payfirst_env, reset_database, say, start_api
from bench.load import wrk
from bench.pyspy import PY_SPY, format_profile, summarise_profile
from payfirst.adapters.devchain import free_port

CONNECTIONS = (100, 1000)


async def run(bench: Bench) -> None:
    processes = bench.options.api_processes
    say(
        f"\n== accept (closed loop): `payfirst api` alone (no worker, {processes} process(es)), "
        "wrk -t1 on the same cores"
    )
    await reset_database(bench.deployment, bench.rpc_url)
    port = free_port()
    env = payfirst_env(bench.rpc_url, port) | {"PAYFIRST_API_PROCESSES": str(processes)}
    api = await start_api(env, port, "accept-api")
    runs: dict[str, Any] = {"processes": processes}
    try:
        seconds = bench.options.accept_seconds
        guess = 4000.0
        for connections in CONNECTIONS:
            # Enough distinct payments for the run at the last rate seen, plus a margin.
            n = int(seconds * guess * 1.3) + 2000
            started = time.monotonic()
            headers_file = WORK / "accept-headers.txt"
            headers_file.write_text("\n".join(bench.signer.sign(n)) + "\n")
            say(f"  signed {n} payments in {time.monotonic() - started:.1f} s")
            out = wrk(port, bench.path, headers_file, connections, seconds)
            result = summarise_wrk(out, connections)
            runs[str(connections)] = result
            guess = max(result["payments_per_s"], 500.0)
            say(
                f"  {connections:>5} connections: {result['payments_per_s']:,.0f} payments/s, "
                f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms "
                f"({result['accepted']} accepted in {result['seconds']:.1f} s; "
                f"errors {result['errors'] or 'none'})"
            )
        db = await asyncpg.connect(DSN)
        try:
            queued = await db.fetchval("SELECT count(*) FROM payment_queue")
        finally:
            await db.close()
        say(f"  payments in the queue after both runs: {queued}")
        runs["queued_in_db"] = int(queued)
        runs["api_memory_mb"] = api.memory_mb()
        if bench.options.profile:
            runs["profile"] = await profile(bench, api, port)
    finally:
        api.stop()
    bench.results["accept"] = runs


def summarise_wrk(out: dict[str, Any], connections: int) -> dict[str, Any]:
    duration = out["duration_us"] / 1e6
    ok = out["requests"] - out["errors_status"]
    return {
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


async def profile(bench: Bench, api: Proc, port: int) -> dict[str, Any]:
    """py-spy on the API process during one more 1,000-connection run."""
    if not PY_SPY.exists():
        say("  (py-spy not installed: no profile)")
        return {}
    seconds = bench.options.accept_seconds
    headers_file = WORK / "accept-headers.txt"
    headers_file.write_text("\n".join(bench.signer.sign(int(seconds * 3000))) + "\n")
    raw = WORK / "accept-profile.txt"
    raw.unlink(missing_ok=True)
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
    out = wrk(port, bench.path, headers_file, 1000, seconds)
    try:
        spy.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        spy.kill()
    if not raw.exists():
        say(f"  py-spy produced no profile: {spy.stderr.read().decode() if spy.stderr else ''}")
        return {}
    summary = summarise_profile(raw)
    bench.out.mkdir(parents=True, exist_ok=True)
    (bench.out / "accept-profile.txt").write_text(format_profile(summary))
    rate = (out["requests"] - out["errors_status"]) / (out["duration_us"] / 1e6)
    summary["payments_per_s_while_profiled"] = round(rate, 1)
    say(f"  profiled 1000-connection run ({rate:,.0f} payments/s under py-spy); top self:")
    for name, share in summary["self"][:8]:
        say(f"    {share:5.1f} %  {name}")
    return summary
