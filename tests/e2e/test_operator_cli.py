"""The operator's commands against a live database and chain: `payfirst stats` and
`payfirst reset-stuck`, run as processes the way an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from uuid import UUID

from payfirst.domain.statuses import PaymentStatus
from tests.e2e.harness import Harness
from tests.fixtures.store import execute_raw

BIN = Path(sys.executable).parent


async def payfirst(h: Harness, pg_dsn: str, *args: str) -> str:
    env = {
        **os.environ,
        "PAYFIRST_DATABASE_URL": f"{pg_dsn}?search_path={h.store.schema}",
        "PAYFIRST_RPC_URL": h.deployment.rpc_url,
        "PAYFIRST_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        str(BIN / "payfirst"), *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out
    return out.decode()


async def test_stats_prints_the_queue(harness: Harness, pg_dsn: str) -> None:
    await harness.buy(harness.payer(1), 2)
    await harness.settled()
    stats = json.loads(await payfirst(harness, pg_dsn, "stats"))
    assert stats["payments"]["completed"] == 1
    assert stats["mints"]["completed"] == 2
    assert set(stats["payments"]) == {s.value for s in PaymentStatus}


async def test_reset_stuck_decides_by_the_chain(harness: Harness, pg_dsn: str) -> None:
    """A payment left `sent` (its worker died after broadcasting) whose tx was mined:
    reset-stuck completes it with its mint items, as the confirmer would have."""
    h = harness
    answer = await h.buy(h.payer(2), 1)
    payment_id = UUID(answer.json()["paymentQueueId"])
    await h.settled()
    payment = await h.store.get_payment(payment_id)
    assert payment is not None and payment.status is PaymentStatus.COMPLETED
    await h.worker.stop()
    # Roll the row back to what a worker killed before confirming leaves behind.
    await execute_raw(h.store, "DELETE FROM mint_queue WHERE payment_id = $1", payment_id)
    await execute_raw(
        h.store,
        "UPDATE payment_queue SET status = 'sent', result = NULL,"
        " processed_at = now() - interval '10 minutes' WHERE id = $1",
        payment_id,
    )
    young = await h.buy(h.payer(3), 1)  # queued and pending: not stuck, left alone
    out = await payfirst(h, pg_dsn, "reset-stuck", "--older-than", "5m")
    assert "1 payments sent more than 300s ago" in out
    assert f"{payment_id}: completed" in out
    decided = await h.store.get_payment(payment_id)
    assert decided is not None and decided.status is PaymentStatus.COMPLETED
    assert len(await h.store.get_mint_items(payment_id)) == 1
    untouched = await h.store.get_payment(UUID(young.json()["paymentQueueId"]))
    assert untouched is not None and untouched.status is PaymentStatus.PENDING
    await h.worker.start()
    await h.settled()
