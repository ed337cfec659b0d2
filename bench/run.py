"""The payfirst benchmark suite (`make bench`; docs/PERFORMANCE.md): runs the selected
phases (bench/__init__.py lists them) on one anvil with 1 s blocks, printing each figure
as it goes, and writes latest.{json,md,png}.

Results go to bench/results/ only from a full run (every phase, not --quick) on a tree
with no uncommitted change: committed figures always name the commit that made them.
Any other run writes to var/bench/results/ (or --out).

    .venv/bin/python -m bench.run [--phases accept,open,...] [--quick] [--no-profile]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/run.py`

import argparse
import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any

import httpx

from bench import accept_closed, accept_open, latency, memory, peer_sdk, settlement
from bench.common import (
    BODY,
    RESULTS,
    ROOT,
    WORK,
    Bench,
    Options,
    payfirst_env,
    reset_database,
    say,
    start_api,
)
from bench.report import markdown, write_results
from bench.signing import Signer
from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import DevChain, free_port
from payfirst.x402 import PaymentRequiredV2, decode_header

PHASES: dict[str, Callable[[Bench], Awaitable[None]]] = {
    "accept": accept_closed.run,
    "open": accept_open.run,
    "memory": memory.run,
    "latency": latency.run,
    "settle": settlement.run,
    "sdk": peer_sdk.run,
}


def tree_state() -> tuple[str, list[str]]:
    """The short commit, and the paths with uncommitted changes (the results this run
    writes aside)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", ".", ":!bench/results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    return head, [line[3:] for line in status.splitlines() if line.strip()]


async def payment_required(bench_path: str, rpc_url: str) -> PaymentRequiredV2:
    """What the server asks for: its 402 to an unpaid mint request."""
    port = free_port()
    api = await start_api(payfirst_env(rpc_url, port), port, "requirements")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.post(bench_path, content=BODY)
            return PaymentRequiredV2.model_validate(
                decode_header(answer.headers["PAYMENT-REQUIRED"])
            )
    finally:
        api.stop()


async def run(options: Options, out: Path, meta: dict[str, Any]) -> int:
    started = time.monotonic()
    results: dict[str, Any] = {"meta": meta}
    chain = DevChain()
    say("starting anvil (--block-time 1) and deploying the demo contracts ...")
    deployment = await chain.start(block_time=1.0, max_mint_count=10**8)
    rpc = RpcClient(deployment.rpc_url)
    signer: Signer | None = None
    try:
        await reset_database(deployment, deployment.rpc_url)
        required = await payment_required(f"/api/mint/{deployment.token}", deployment.rpc_url)
        signer = Signer(required)
        bench = Bench(options, deployment, rpc, signer, out, results)
        for name in options.phases:
            try:
                await PHASES[name](bench)
            except Exception as exc:
                say(f"  !! {name} failed: {type(exc).__name__}: {exc}")
                results.setdefault("errors", []).append(f"{name}: {type(exc).__name__}: {exc}")
            meta["run_s"] = round(time.monotonic() - started, 1)
            write_results(results, out)
    finally:
        if signer is not None:
            signer.close()
        await rpc.aclose()
        await chain.stop()
    say(f"\n{markdown(results)}")
    say(f"wrote {out / 'latest.json'}, latest.md, latest.png in {meta['run_s']} s")
    return 1 if results.get("errors") else 0


def numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse(argv: list[str] | None = None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated, run in this order (default: all: {','.join(PHASES)})",
    )
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--accept-seconds", type=int, default=8)
    parser.add_argument("--api-processes", type=int, default=2, help="PAYFIRST_API_PROCESSES")
    parser.add_argument("--open-rates", type=numbers, default=(1000, 2000), help="e.g. 1000,2000")
    parser.add_argument("--open-seconds", type=float, default=10.0)
    parser.add_argument("--open-clients", type=int, default=2, help="client processes")
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--rss-n", type=int, default=10_000)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--latency-rate", type=float, default=20.0)
    parser.add_argument("--compare-n", type=int, default=200)
    parser.add_argument("--settle-timeout", type=float, default=180.0)
    parser.add_argument("--sdk-concurrency", type=numbers, default=(1, 32, 64, 128, 256))
    parser.add_argument("--sdk-rounds", type=int, default=4, help="payments = rounds x concurrency")
    parser.add_argument("--sdk-min-payments", type=int, default=20)
    parser.add_argument("--sdk-timeout", type=float, default=240.0, help="per concurrency")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--no-sdk", dest="sdk", action="store_false", help="drop the sdk phase")
    parser.add_argument("--out", type=Path, default=None, help="where to write the results")
    args = parser.parse_args(argv)
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown phases {unknown}; known: {', '.join(PHASES)}")
    if not args.sdk:
        phases = tuple(p for p in phases if p != "sdk")
    options = Options(
        phases=phases,
        quick=args.quick,
        accept_seconds=args.accept_seconds,
        api_processes=args.api_processes,
        open_rates=args.open_rates,
        open_seconds=args.open_seconds,
        open_clients=args.open_clients,
        burst=args.burst,
        rss_n=args.rss_n,
        latency_n=args.latency_n,
        latency_rate=args.latency_rate,
        compare_n=args.compare_n,
        settle_timeout=args.settle_timeout,
        sdk_concurrency=args.sdk_concurrency,
        sdk_rounds=args.sdk_rounds,
        sdk_min_payments=args.sdk_min_payments,
        sdk_timeout=args.sdk_timeout,
        profile=args.profile,
    )
    if args.quick:
        options = quick(options)
    return options, args.out


def quick(options: Options) -> Options:
    """A smoke run of every selected phase in a minute or two: the figures mean nothing."""
    return replace(
        options,
        accept_seconds=3,
        open_rates=(200, 400),
        open_seconds=3.0,
        burst=500,
        rss_n=1000,
        latency_n=40,
        compare_n=30,
        settle_timeout=90.0,
        sdk_concurrency=(1, 8),
        sdk_rounds=2,
        sdk_min_payments=5,
        sdk_timeout=60.0,
    )


def main() -> int:
    options, out = parse()
    if "accept" in options.phases and shutil.which("wrk") is None:
        say("wrk is not installed (apt-get install -y wrk; `make bench` does it)")
        return 2
    commit, dirty = tree_state()
    full = set(options.phases) == set(PHASES) and not options.quick
    if out is None:
        out = RESULTS if full and not dirty else WORK / "results"
    if out.resolve() == RESULTS.resolve() and (dirty or not full):
        say("bench/results/ holds the figures of a full run from a clean commit only")
        return 2
    if dirty:
        say(f"uncommitted changes ({', '.join(dirty[:5])}...): results go to {out}")
    WORK.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "commit": commit + ("+dirty" if dirty else ""),
        "clean": not dirty,
        "cpus": os.cpu_count(),
        "phases": list(options.phases),
        "options": asdict(options),
    }
    return asyncio.run(run(options, out, meta))


if __name__ == "__main__":
    sys.exit(main())
