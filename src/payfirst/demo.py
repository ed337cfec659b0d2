"""`payfirst demo`: buyers pay a running payfirst server for mints, as real clients would,
and the latency from request to mint confirmed is reported.

Fresh payer keys are funded with demo USDC by anvil's dev accounts 1-9 (never account 0,
the relayer: its nonces belong to the server)."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass

import httpx

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.devchain import ANVIL_KEYS, Deployment, send_transaction
from payfirst.app import DEVCHAIN_FILE
from payfirst.client.signing import Payer
from payfirst.evm import abi, calls
from payfirst.x402 import PaymentRequiredV2, PaymentRequirementsV1, decode_header

POLL_WAIT_S = 30
GIVE_UP_S = 300


@dataclass
class Outcome:
    ok: bool
    latency_s: float
    detail: str


async def run_demo(url: str, rpc_url: str | None, payers: int, mints: int, version: int) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=POLL_WAIT_S + 10) as http:
        tokens = (await http.get("/api/tokens")).json()["tokens"]
        if not tokens:
            print("the server sells no token", file=sys.stderr)
            return 1
        token = tokens[0]
        rpc_url = rpc_url or Deployment.load(DEVCHAIN_FILE).rpc_url
        keys = ["0x" + os.urandom(32).hex() for _ in range(payers)]
        buyers = [Payer(k) for k in keys]
        per_payer = -(-mints // payers)
        async with RpcClient(rpc_url) as rpc:
            await _fund(
                rpc,
                token["paymentAsset"]["address"],
                buyers,
                per_payer * int(token["pricePerMint"]),
            )
            print(f"funded {payers} payers; buying {mints} mints of {token['symbol']} at {url}")
            progress = _Progress(mints)
            semaphore = asyncio.Semaphore(max(payers, 1))

            async def buy(i: int) -> Outcome:
                async with semaphore:
                    outcome = await _buy_one(http, token["address"], buyers[i % payers], version)
                progress.step(outcome.ok)
                return outcome

            started = time.monotonic()
            outcomes = await asyncio.gather(*(buy(i) for i in range(mints)))
            elapsed = time.monotonic() - started
            balance = await _token_balance(rpc, token["address"], buyers)
    progress.done()
    ok = [o.latency_s for o in outcomes if o.ok]
    failures = [o.detail for o in outcomes if not o.ok]
    print(f"{len(ok)}/{mints} payments completed and minted in {elapsed:.1f} s")
    if ok:
        q = statistics.quantiles(ok, n=100) if len(ok) > 1 else [ok[0]] * 99
        print(
            f"request -> mint confirmed: p50 {q[49]:.2f} s, p95 {q[94]:.2f} s, max {max(ok):.2f} s"
        )
    expected = len(ok) * int(token["mintAmount"])
    print(f"tokens received on chain: {balance} (expected {expected})")
    for detail in failures[:10]:
        print(f"  failed: {detail}")
    return 0 if not failures and balance == expected else 1


async def _fund(rpc: RpcClient, usdc: str, buyers: list[Payer], amount: int) -> None:
    """Each dev account 1-9 funds its share of buyers, its txs in nonce order."""
    funders = ANVIL_KEYS[1:]
    chain_id = await rpc.chain_id()
    hashes: list[str] = []
    for f, key in enumerate(funders):
        mine = buyers[f :: len(funders)]
        if not mine:
            continue
        sender = Payer(key).address
        nonce = await rpc.get_transaction_count(sender, "pending")
        for offset, buyer in enumerate(mine):
            data = abi.encode_call("transfer(address,uint256)", [buyer.address, amount])
            hashes.append(
                await send_transaction(
                    rpc, key, usdc, data, nonce=nonce + offset, gas=100_000, chain_id=chain_id
                )
            )
    for tx_hash in hashes:
        receipt = await rpc.wait_for_receipt(tx_hash)
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"funding tx {tx_hash} reverted")


async def _buy_one(http: httpx.AsyncClient, token: str, payer: Payer, version: int) -> Outcome:
    started = time.monotonic()
    answer = await http.post(f"/api/mint/{token}", json={"quantity": 1})
    if answer.status_code != 402:
        return Outcome(False, 0, f"expected 402, got {answer.status_code}")
    if version == 1:
        header = (
            "X-PAYMENT",
            payer.pay_v1(PaymentRequirementsV1.model_validate(answer.json()["accepts"][0])),
        )
    else:
        required = PaymentRequiredV2.model_validate(
            decode_header(answer.headers["PAYMENT-REQUIRED"])
        )
        header = ("PAYMENT-SIGNATURE", payer.pay_v2(required.accepts[0], required.resource))
    started = time.monotonic()
    answer = await http.post(f"/api/mint/{token}", json={"quantity": 1}, headers=[header])
    if answer.status_code != 202:
        return Outcome(False, 0, f"{answer.status_code} {answer.text}")
    payment_id = answer.json()["paymentQueueId"]
    while time.monotonic() - started < GIVE_UP_S:
        view = (await http.get(f"/api/payment/{payment_id}", params={"wait": POLL_WAIT_S})).json()
        if view["status"] in ("failed", "confirmation_failed"):
            return Outcome(False, 0, f"payment {payment_id} {view['status']}: {view['error']}")
        mints = view["mints"]
        if (
            view["status"] == "completed"
            and mints
            and all(m["status"] == "completed" for m in mints)
        ):
            return Outcome(True, time.monotonic() - started, payment_id)
        if any(m["status"] == "failed" for m in mints):
            return Outcome(False, 0, f"payment {payment_id}: a mint failed")
    return Outcome(False, 0, f"payment {payment_id} not done after {GIVE_UP_S}s")


async def _token_balance(rpc: RpcClient, token: str, buyers: list[Payer]) -> int:
    total = 0
    for buyer in buyers:
        raw = await rpc.eth_call(token, calls.balance_of(buyer.address))
        total += int(abi.decode_result(["uint256"], raw)[0])
    return total


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.ok, self.failed = total, 0, 0
        self.live = sys.stdout.isatty()

    def step(self, ok: bool) -> None:
        self.ok += ok
        self.failed += not ok
        done = self.ok + self.failed
        if not self.live and done != self.total:
            return  # a log file gets the last line only
        width = 40
        filled = width * done // max(self.total, 1)
        sys.stdout.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} ({self.failed} failed)"
        )
        sys.stdout.flush()

    def done(self) -> None:
        sys.stdout.write("\n")
