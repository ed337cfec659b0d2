"""A payout survives a worker killed at any instant, and is paid exactly once.

The worker is a real `payfirst worker` process whose relayer key is the treasury
(PAYFIRST_TREASURY_ADDRESS), so it runs the payout loop; `PAYFIRST_CRASH_AT` makes it
SIGKILL itself after the payout's signed tx is persisted (nothing broadcast), after the
broadcast (`sent` never written), or inside the transaction that completes it and writes
its ledger entries. Restarted without the crash point, it re-sends the very bytes it
persisted and completes the payout: one transfer on chain, one ledger transaction."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio

from payfirst.adapters.evm_chain import EvmChain
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.domain.accounts import Role
from payfirst.pipeline import faults
from payfirst.usecases.accounts import Accounts
from tests.e2e.harness import SETTLE_PRICE, Harness, request_v2, requirements_v2
from tests.e2e.payout_harness import (
    CREDIT,
    UNCOLLECT,
    check_payout_invariants,
    collect_sql,
    topic,
    wait_for,
)
from tests.e2e.test_crash_safety import (
    PAYFIRST_BIN,
    WorkerProcesses,
    crash_env,
    log_tail,
    wait_for_exit,
)
from tests.fixtures.store import execute_raw, fetch_raw, random_address

__all__ = ["crash_env"]

PAYOUT = 20_000
WAIT_S = 45.0


class TreasuryWorkers(WorkerProcesses):
    """`payfirst worker` processes whose relayer key is the treasury."""

    treasury: str = ""

    async def start(
        self, crash_at: str | None, *, settler: str | None = None
    ) -> tuple[asyncio.subprocess.Process, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYFIRST_")}
        env.update(
            PAYFIRST_DATABASE_URL=self.database_url,
            PAYFIRST_RPC_URL=self.rpc_url,
            PAYFIRST_TREASURY_ADDRESS=self.treasury,
            PAYFIRST_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        if crash_at is not None:
            env["PAYFIRST_CRASH_AT"] = crash_at
        log_path = self.log_dir / f"worker-{len(self.started)}-{crash_at or 'normal'}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                str(PAYFIRST_BIN),
                "worker",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append((process, log_path))
        return process, log_path


@pytest_asyncio.fixture
async def treasury_env(
    crash_env: tuple[Harness, WorkerProcesses],
) -> AsyncIterator[tuple[Harness, TreasuryWorkers, httpx.AsyncClient]]:
    h, plain = crash_env
    workers = TreasuryWorkers(plain.database_url, plain.rpc_url, plain.log_dir)
    workers.treasury = h.deployment.relayer_address
    await h.store.set_setting("payout_interval_ms", 200)
    services = Services(
        store=h.store,
        chain=EvmChain(h.rpc),
        chain_id=h.deployment.chain_id,
        settle_timeout_s=30,
        settle_pay_to=frozenset({workers.treasury}),
    )
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(services)), base_url="http://127.0.0.1"
    )
    try:
        yield h, workers, http
    finally:
        await workers.kill_all()
        await http.aclose()


async def _payout(h: Harness) -> dict[str, Any]:
    (row,) = await fetch_raw(
        h.store, "SELECT id, status, nonce, tx_hash, raw_tx, relayer FROM payouts"
    )
    return row


async def _after_persist(h: Harness, nonce_before: int) -> None:
    row = await _payout(h)
    assert row["status"] == "processing" and row["raw_tx"] and row["nonce"] == nonce_before
    assert await h.rpc.get_transaction(row["tx_hash"]) is None, "broadcast before the crash"
    assert await h.rpc.get_transaction_count(row["relayer"], "pending") == nonce_before


async def _after_broadcast(h: Harness, nonce_before: int) -> None:
    row = await _payout(h)
    assert row["status"] == "processing"
    known = await h.rpc.get_transaction_receipt(row["tx_hash"]) or await h.rpc.get_transaction(
        row["tx_hash"]
    )
    assert known is not None, "the node never got the payout's tx"


async def _in_callback(h: Harness, nonce_before: int) -> None:
    row = await _payout(h)
    assert row["status"] == "sent"
    receipt = await h.rpc.get_transaction_receipt(row["tx_hash"])
    assert receipt is not None and int(receipt["status"], 16) == 1
    ledgered = await fetch_raw(h.store, "SELECT id FROM ledger_transactions WHERE kind = 'payout'")
    assert ledgered == [], "the completing transaction committed"


INTERMEDIATE = {
    faults.AFTER_PERSIST: _after_persist,
    faults.AFTER_BROADCAST: _after_broadcast,
    faults.IN_CALLBACK: _in_callback,
}


@pytest.mark.parametrize("crash_at", list(INTERMEDIATE))
async def test_a_payout_survives_a_crash_and_is_paid_once(
    treasury_env: tuple[Harness, TreasuryWorkers, httpx.AsyncClient], crash_at: str
) -> None:
    h, workers, http = treasury_env
    treasury = workers.treasury
    payee = random_address()
    provider, key = await Accounts(h.store).create_account(
        Role.PROVIDER, "provider", fee_bps=250, payout_address=payee
    )

    # Money collected for the provider by a worker that does not crash.
    process, log_path = await workers.start(None)
    await execute_raw(h.store, collect_sql(treasury, provider.id))
    try:
        body = request_v2(h.payer(2), requirements_v2(h, pay_to=treasury))
        settled = (await http.post("/settle", json=body)).json()
        assert settled["success"] is True, f"{settled}\n{log_tail(log_path)}"
        await h.settled(max_wait=WAIT_S)
    finally:
        await execute_raw(h.store, UNCOLLECT)
    await workers.stop(process)
    assert await h.usdc_balance(treasury) == SETTLE_PRICE

    headers = {"Authorization": f"Bearer {key.text}"}
    answer = await http.post("/v1/payouts", json={"amount": str(PAYOUT)}, headers=headers)
    assert answer.status_code == 201, answer.text
    payout_id = UUID(answer.json()["id"])
    nonce_before = await h.rpc.get_transaction_count(treasury, "pending")

    # 1. Killed at its crash point.
    process, log_path = await workers.start(crash_at)
    returncode = await wait_for_exit(process, log_path)
    assert returncode == -signal.SIGKILL, f"exit {returncode}:\n{log_tail(log_path)}"
    await INTERMEDIATE[crash_at](h, nonce_before)

    # 2. Restarted (the dead worker's lease expired), it finishes the payout.
    await execute_raw(h.store, "UPDATE relayer_leases SET expires_at = now() - interval '1s'")
    process, log_path = await workers.start(None)

    async def completed() -> bool:
        rows = await fetch_raw(h.store, "SELECT status FROM payouts WHERE id = $1", payout_id)
        return bool(rows[0]["status"] == "completed")

    try:
        await wait_for(completed, WAIT_S, "the payout to complete")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{log_tail(log_path)}") from None
    await workers.stop(process)

    # 3. Paid once: one transfer, the nonce used once, one ledger transaction.
    assert await h.usdc_balance(payee) == PAYOUT
    assert await h.usdc_balance(treasury) == SETTLE_PRICE - PAYOUT
    logs = await h.rpc.call(
        "eth_getLogs",
        {
            "address": h.deployment.usdc,
            "fromBlock": "0x0",
            "toBlock": "latest",
            "topics": [None, topic(treasury), topic(payee)],
        },
    )
    assert len(logs) == 1
    assert await h.rpc.get_transaction_count(treasury, "latest") == nonce_before + 1
    row = await _payout(h)
    assert row["tx_hash"] == logs[0]["transactionHash"]
    balance = (await http.get("/v1/balance", headers=headers)).json()["balances"][0]
    assert (balance["available"], balance["paid_out"]) == (str(CREDIT - PAYOUT), str(PAYOUT))
    await check_payout_invariants(h.store, h.rpc, h.deployment.usdc)
