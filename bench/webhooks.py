"""Webhooks: what the outbox costs the confirmer, and how fast the dispatcher delivers.

1. `PostgresStore.complete_payments` of N sent payments in ONE call (as the confirmer's
   tick): with the webhook triggers disabled (before 0016), with no webhook endpoint, and
   with the payments' agent subscribed to `payment.completed` (the triggers then write N
   messages and N deliveries in the same transaction); rounds rotating; ms per 1,000.
2. N completions, then a `WebhookDispatcher` (as `payfirst worker` runs it) delivering
   them to a local receiver (uvicorn on 127.0.0.1, verifying every signature with the
   `standardwebhooks` package): seconds until the last is recorded delivered, and
   deliveries per second (the issue's bar: 1,000 within 30 s).

    .venv/bin/python -m bench.webhooks [--n 1000] [--rounds 5] [--dsn postgresql://...]

Without --dsn (or BENCH_WEBHOOKS_DSN) it starts an embedded PostgreSQL (durable) under a
temporary directory. Each round works in a schema of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/webhooks.py`

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import socket
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bench.ledger_write import RELAYER, _address, _payment, _sign, _token, database
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.adapters.webhook_http import WebhookSender
from payfirst.domain.webhooks import AddressPolicy, WebhookEndpoint, parse_networks
from payfirst.pipeline.webhooks import WebhookDispatcher
from payfirst.usecases.webhooks import new_secret

LOOPBACK = AddressPolicy(allowed=parse_networks("127.0.0.0/8"))


def _serve_receiver(sock: socket.socket, secret: str, verified: Any, refused: Any) -> None:
    """The receiver's process: verify every request, count the distinct ids."""
    ids: set[str] = set()

    async def hook(request: Request) -> Response:
        body = await request.body()
        try:
            Webhook(secret).verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError:
            with refused.get_lock():
                refused.value += 1
            return PlainTextResponse("bad signature", status_code=400)
        webhook_id = request.headers["webhook-id"]
        if webhook_id not in ids:
            ids.add(webhook_id)
            with verified.get_lock():
                verified.value += 1
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class Receiver:
    url: str
    verified: Any  # multiprocessing.Value: distinct ids verified
    refused: Any


@contextlib.asynccontextmanager
async def receiver(secret: str) -> AsyncIterator[Receiver]:
    """A receiver in a process of its own (its CPU is not the dispatcher's)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    context = multiprocessing.get_context("fork")
    verified, refused = context.Value("i", 0), context.Value("i", 0)
    child = context.Process(
        target=_serve_receiver, args=(sock, secret, verified, refused), daemon=True
    )
    child.start()
    try:
        yield Receiver(f"http://127.0.0.1:{port}/hook", verified, refused)
    finally:
        child.terminate()
        child.join(5)
        sock.close()


async def sent_payments(
    store: PostgresStore, n: int, agent: UUID | None
) -> list[tuple[UUID, str, list[str]]]:
    """N sent mint payments (50 payers, the agent's when given); their completions."""
    token = _token()
    await store.upsert_token(token)
    payers = [_address() for _ in range(50)]
    if agent is not None:
        async with store.pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO agent_payers (address, account_id, verified_at) "
                "VALUES ($1, $2, now())",
                [(p, agent) for p in payers],
            )
    new = [_payment(token, payers[i % len(payers)]) for i in range(n)]
    await asyncio.gather(*(store.queue_payment(p) for p in new))
    claimed = await store.claim_payments_one_tx(RELAYER, n, _sign, chain_id=token.chain_id)
    await store.mark_sent([claimed[0].tx_hash or ""])
    return [(p.id, p.tx_hash or "", ["0x" + secrets.token_hex(32)]) for p in claimed]


async def subscribe(store: PostgresStore, url: str, secret: str) -> UUID:
    """An agent account with an endpoint wanting payment.completed."""
    account = uuid4()
    await store.pool.execute(
        "INSERT INTO accounts (id, role, name) VALUES ($1, 'agent', 'bench')", account
    )
    now = datetime.now(UTC)
    await store.create_webhook_endpoint(
        WebhookEndpoint(uuid4(), account, url, ("payment.completed",), secret, "", now, now)
    )
    return account


@contextlib.asynccontextmanager
async def schema_store(dsn: str) -> AsyncIterator[PostgresStore]:
    schema = f"bench_webhooks_{secrets.token_hex(4)}"
    store = await PostgresStore.connect(dsn, schema=schema, min_size=2, max_size=20)
    try:
        yield store
    finally:
        async with store.pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await store.close()


#: The three ways a completion is measured: the webhook triggers disabled (as before
#: migration 0016), no endpoint anywhere, and the payments' agent subscribed.
MODES = ("no triggers", "no endpoint", "subscribed")
_TRIGGERS = ("payment_webhook_changed_v1", "payment_webhook_inserted_v1")


async def completion_round(dsn: str, n: int, mode: str, url: str) -> float:
    async with schema_store(dsn) as store:
        subscribed = mode == "subscribed"
        agent = await subscribe(store, url, new_secret()) if subscribed else None
        if mode == "no triggers":
            for name in _TRIGGERS:
                await store.pool.execute(f"ALTER TABLE payment_queue DISABLE TRIGGER {name}")
        completions = await sent_payments(store, n, agent)
        started = time.perf_counter()
        done = await store.complete_payments(completions)
        elapsed = time.perf_counter() - started
        assert len(done) == n, len(done)
        written = await store.pool.fetchval("SELECT count(*) FROM webhook_deliveries")
        assert written == (n if subscribed else 0), written
        return elapsed


async def delivery_run(dsn: str, n: int) -> tuple[float, float, int, int]:
    """Seconds of the completing call and until the last delivery was recorded; ids the
    receiver verified, requests it refused."""
    secret = new_secret()
    async with schema_store(dsn) as store, receiver(secret) as state:
        agent = await subscribe(store, state.url, secret)
        completions = await sent_payments(store, n, agent)
        dispatcher = WebhookDispatcher(store, WebhookSender(LOOPBACK))
        await dispatcher.start()
        try:
            started = time.perf_counter()
            await store.complete_payments(completions)
            completed = time.perf_counter() - started
            while True:
                done = await store.pool.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                )
                if done >= n:
                    break
                if time.perf_counter() - started > 120:
                    raise RuntimeError(f"only {done} of {n} delivered after 120 s")
                await asyncio.sleep(0.05)
            total = time.perf_counter() - started
            return completed, total, state.verified.value, state.refused.value
        finally:
            await dispatcher.stop()


async def main(n: int, rounds: int, dsn: str | None) -> None:
    hook = "http://127.0.0.1:9/never-called"
    async with database(dsn) as url:
        await completion_round(url, n, "subscribed", hook)  # warm-up
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for i in range(rounds):
            for mode in MODES[i % 3 :] + MODES[: i % 3]:  # rotate which goes first
                times[mode].append(await completion_round(url, n, mode, hook))
        scale = 1000 * 1000 / n
        base = statistics.median(times["no triggers"]) * scale
        print(f"complete_payments of {n} payments in one call, {rounds} rounds (median):")
        for mode in MODES:
            ms = statistics.median(times[mode]) * scale
            print(f"  {mode:12s} {ms:8.1f} ms per 1000 completions ({ms / base - 1:+.1%})")
        completed, total, verified, refused = await delivery_run(url, n)
        print(f"{n} completions -> {n} webhooks to a local receiver (a process of its own):")
        print(f"  completing call {completed * 1000:.0f} ms; last delivery after {total:.2f} s")
        print(f"  {n / total:.0f} deliveries/s; verified {verified}, refused {refused}")
        print(f"  within 30 s: {'yes' if total <= 30 else 'NO'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dsn", default=os.environ.get("BENCH_WEBHOOKS_DSN"))
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.n, args.rounds, args.dsn))
