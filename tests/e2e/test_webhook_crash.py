"""kill -9 of a `payfirst worker` in the middle of webhook deliveries loses no event.

The worker runs as a real process on the test's own schema (loopback allowed by
PAYFIRST_WEBHOOK_ALLOWED_CIDRS); the receiver holds every request, so the worker's
deliveries are in flight when it is SIGKILLed. Its claims' leases are then run out (driven
through `locked_until`, as the crash tests run out relayer leases) and a second worker
delivers every message: the receiver, deduping by `webhook-id`, has them all."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.accounts import Role
from payfirst.domain.webhooks import EventType
from payfirst.usecases.accounts import Accounts
from payfirst.usecases.webhooks import Webhooks
from tests.e2e.test_crash_safety import PAYFIRST_BIN, clear_leases, log_tail, worker_dsn
from tests.e2e.webhook_receiver import running_receiver
from tests.fixtures.chain import SharedChain, TrackedRpc
from tests.fixtures.store import execute_raw, fetch_raw

MESSAGES = 20


async def start_worker(dsn: str, rpc_url: str, log_path: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYFIRST_")}
    env.update(
        PAYFIRST_DATABASE_URL=dsn,
        PAYFIRST_RPC_URL=rpc_url,
        PAYFIRST_LOG_LEVEL="INFO",
        PAYFIRST_WEBHOOK_ALLOWED_CIDRS="127.0.0.0/8",
        PYTHONUNBUFFERED="1",
    )
    with log_path.open("wb") as log_file:
        return await asyncio.create_subprocess_exec(
            str(PAYFIRST_BIN),
            "worker",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )


async def wait(check: Any, what: str, log_path: Path, timeout_s: float = 45) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached; worker log:\n{log_tail(log_path)}")
        await asyncio.sleep(0.05)


async def test_kill_9_mid_delivery_loses_no_event(
    pg_store: PostgresStore, pg_dsn: str, tmp_path: Path, shared_chain: SharedChain
) -> None:
    assert pg_store.schema is not None
    _, deployment = await shared_chain.checkout()
    rpc_url = deployment.rpc_url
    rpc = TrackedRpc(rpc_url)
    await clear_leases(pg_store)
    processes: list[asyncio.subprocess.Process] = []
    try:
        async with running_receiver() as receiver:

            async def allow_loopback(url: str) -> object:
                return url

            account, _ = await Accounts(pg_store).create_account(Role.PROVIDER, "p")
            endpoint = await Webhooks(pg_store, allow_loopback).create(account, receiver.url("k"))
            receiver.expect("k", endpoint.secret, mode="hold")
            for i in range(MESSAGES):
                await pg_store.emit_webhook_event(
                    [account.id], EventType.PAYMENT_COMPLETED, {"n": i}
                )
            messages = {
                r["id"] for r in await fetch_raw(pg_store, "SELECT id FROM webhook_messages")
            }
            assert len(messages) == MESSAGES

            dsn = worker_dsn(pg_dsn, pg_store.schema)
            first_log = tmp_path / "worker-killed.log"
            first = await start_worker(dsn, rpc_url, first_log)
            processes.append(first)

            async def in_flight() -> bool:
                return sum(receiver.in_flight.values()) >= MESSAGES

            await wait(in_flight, "every delivery in flight", first_log)
            claimed = await fetch_raw(
                pg_store,
                "SELECT count(*) AS n FROM webhook_deliveries WHERE locked_until > now()",
            )
            assert claimed[0]["n"] == MESSAGES
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
            # Nothing was recorded delivered; the dead worker's leases run out.
            undelivered = await fetch_raw(
                pg_store,
                "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'",
            )
            assert undelivered[0]["n"] == MESSAGES
            await execute_raw(pg_store, "UPDATE webhook_deliveries SET locked_until = now()")
            receiver.modes["k"] = "ok"
            receiver.release()

            second_log = tmp_path / "worker-second.log"
            second = await start_worker(dsn, rpc_url, second_log)
            processes.append(second)

            async def all_delivered() -> bool:
                found = await fetch_raw(
                    pg_store,
                    "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'delivered'",
                )
                return bool(found[0]["n"] == MESSAGES)

            await wait(all_delivered, "every delivery recorded", second_log)
            assert set(receiver.ids("k")) == messages  # every event, deduped by webhook-id
            assert receiver.refused == []
            second.send_signal(signal.SIGINT)
            await asyncio.wait_for(second.wait(), timeout=15)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await clear_leases(pg_store)
        await shared_chain.checkin(rpc)
        await rpc.aclose()
