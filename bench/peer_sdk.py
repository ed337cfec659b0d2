"""Phase `sdk`: the official x402 SDK facilitator (`x402` on PyPI) as its docs set it up,
settling the same kind of payments on the same chain, at several concurrencies (verify +
settle per payment, N at a time in threads, each waiting for its receipt as the SDK does),
side by side with payfirst's pipeline on as many payments, batched and one tx each."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eth_account import Account

from bench.common import BATCHING, Bench, say, set_setting
from bench.pipeline import burst, gas_of, pipeline
from payfirst.adapters.devchain import ANVIL_KEYS, send_transaction
from payfirst.x402 import decode_header


async def run(bench: Bench) -> None:
    options = bench.options
    sizes = {c: run_size(bench, c) for c in options.sdk_concurrency}
    n = max(sizes.values())
    say(f"\n== side by side: payfirst on {n} payments, then the x402 SDK facilitator")
    await payfirst_side(bench, n)
    key = "0x" + os.urandom(32).hex()
    address = Account.from_key(key).address
    tx = await send_transaction(
        bench.rpc, ANVIL_KEYS[9], address, "0x", gas=21_000, value=100 * 10**18
    )
    await bench.rpc.wait_for_receipt(tx)
    runs: dict[str, Any] = {}
    for concurrency, size in sizes.items():
        say(f"  x402 SDK: verify + settle {size} payments, {concurrency} at a time")
        headers = bench.signer.sign(size)
        result = await asyncio.to_thread(
            sdk_settle, key, bench.rpc_url, headers, concurrency, options.sdk_timeout
        )
        total, txs = await gas_of(bench.rpc, result.pop("tx_hashes"))
        settled = result["settled"]
        result["gas"] = {
            "txs": txs,
            "gas_total": total,
            "gas_per_payment": total / settled if settled else None,
        }
        runs[str(concurrency)] = result
        say(
            f"    {settled}/{result['attempted']} settled in {result['seconds']:.1f} s = "
            f"{result['payments_per_s']} payments/s"
            + (f", {total / settled:,.0f} gas/payment" if settled else "")
            + (f"; failures: {result['failures'][:3]}" if result["failures"] else "")
        )
    best = max(runs, key=lambda c: runs[c]["payments_per_s"] or 0)
    # The best run's figures at the top level, as the one-by-one run had them before.
    bench.results["sdk"] = runs[best] | {"best_concurrency": int(best), "runs": runs}
    say(f"  x402 SDK best: {runs[best]['payments_per_s']} payments/s at {best} concurrent settles")


def run_size(bench: Bench, concurrency: int) -> int:
    """Enough payments for `sdk_rounds` rounds of `concurrency` settles in flight."""
    return max(bench.options.sdk_min_payments, bench.options.sdk_rounds * concurrency)


async def payfirst_side(bench: Bench, n: int) -> None:
    runs: dict[str, Any] = {}
    async with pipeline(bench, "peer") as running:
        modes = ((1, "batched"), (0, "unbatched")) if running.batching else ((None, "as is"),)
        for value, label in modes:
            if value is not None:
                await set_setting(bench.rpc_url, BATCHING, value)
                await asyncio.sleep(0.5)  # the worker reads the settings at every tick
            result = await burst(bench, running, n, 100, f"peer {label}")
            result.pop("started_epoch")
            runs[label] = result
            say(
                f"  payfirst ({label}): {result['completed']}/{n} completed in "
                f"{result['seconds']:.1f} s = {result['payments_per_s']} payments/s"
            )
    bench.results["peer_payfirst"] = runs


def sdk_settle(
    key: str, rpc_url: str, headers: list[str], concurrency: int, max_wait: float
) -> dict[str, Any]:
    """`verify` + `settle` of each payment with x402FacilitatorSync and its web3 signer on
    eip155:31337, `concurrency` payments at a time."""
    from x402 import x402FacilitatorSync
    from x402.mechanisms.evm import FacilitatorWeb3Signer
    from x402.mechanisms.evm.exact import register_exact_evm_facilitator
    from x402.schemas import PaymentPayload

    # web3's HTTP pool keeps 10 connections: with more threads urllib3 warns on every
    # request it cannot pool. That is the SDK's cost, not worth a line each.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    signer = FacilitatorWeb3Signer(private_key=key, rpc_url=rpc_url)
    facilitator = x402FacilitatorSync()
    register_exact_evm_facilitator(facilitator, signer, networks="eip155:31337")
    payloads = [PaymentPayload.model_validate(decode_header(h)) for h in headers]
    deadline = time.monotonic() + max_wait

    def one(payload: Any) -> tuple[str, str] | None:
        if time.monotonic() > deadline:
            return None
        try:
            verified = facilitator.verify(payload, payload.accepted)
            if not verified.is_valid:
                return ("failed", f"verify: {verified.invalid_reason}")
            settled = facilitator.settle(payload, payload.accepted)
        except Exception as exc:
            return ("failed", f"{type(exc).__name__}: {exc}"[:200])
        if not settled.success:
            return ("failed", f"settle: {settled.error_reason}")
        return ("settled", str(settled.transaction))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(one, payloads))
    seconds = time.monotonic() - started
    done = [o for o in outcomes if o is not None]
    tx_hashes = [detail for kind, detail in done if kind == "settled"]
    failures = [detail for kind, detail in done if kind == "failed"]
    return {
        "concurrency": concurrency,
        "attempted": len(done),
        "settled": len(tx_hashes),
        "seconds": round(seconds, 2),
        "payments_per_s": round(len(tx_hashes) / seconds, 2) if seconds else None,
        "failures": failures[:10],
        "tx_hashes": tx_hashes,
        "relayer": signer.address,
    }
