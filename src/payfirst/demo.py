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
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
            semaphore = asyncio.Semaphore(max(payers, 1))
            with _Progress(mints) as progress:

                async def buy(i: int) -> Outcome:
                    async with semaphore:
                        outcome = await _buy_one(
                            http, token["address"], buyers[i % payers], version, progress.sent
                        )
                    progress.step(outcome.ok)
                    return outcome

                started = time.monotonic()
                outcomes = await asyncio.gather(*(buy(i) for i in range(mints)))
                elapsed = time.monotonic() - started
            balance = await _token_balance(rpc, token["address"], buyers)
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


async def _buy_one(
    http: httpx.AsyncClient, token: str, payer: Payer, version: int, sent: Callable[[], None]
) -> Outcome:
    """One mint bought and waited for; `sent` is called once the payment is accepted."""
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
    sent()
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
    """Two bars on a terminal: payments sent (accepted with 202) and payments settled and
    minted. Not on a terminal (a log file), nothing: the summary says it all."""

    def __init__(self, total: int) -> None:
        console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.failed = 0
        self.sent_task = self.bars.add_task("payments sent", total=total, failed=0)
        self.settled_task = self.bars.add_task("settled and minted", total=total, failed=0)

    def __enter__(self) -> _Progress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def sent(self) -> None:
        self.bars.advance(self.sent_task)

    def step(self, ok: bool) -> None:
        self.failed += not ok
        self.bars.update(self.settled_task, advance=1, failed=self.failed)
