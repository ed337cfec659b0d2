"""What the ledger write costs the confirmer: `PostgresStore.complete_payments` of N sent
payments (one mint item each, as the mint flow) in ONE call, with the ledger write and
without it (the write replaced by a no-op), rounds alternating; ms per 1,000 completions.

    .venv/bin/python -m bench.ledger_write [--n 1000] [--rounds 9] [--dsn postgresql://...]

Without --dsn (or BENCH_LEDGER_DSN) it starts an embedded PostgreSQL (durable: fsync on)
under a temporary directory. Each round works in a schema of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import payfirst.adapters.store_postgres as store_module
from payfirst.adapters.embedded_postgres import EmbeddedPostgres
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.ledger import LedgerPayment
from payfirst.domain.models import Authorization, NewPayment, Payment, SignedTx, Token
from payfirst.domain.statuses import PaymentType

RELAYER = "0x" + "11" * 20


@contextlib.asynccontextmanager
async def database(dsn: str | None, durable: bool = True) -> AsyncIterator[str]:
    if dsn:
        yield dsn
        return
    root = Path(tempfile.mkdtemp(prefix="payfirst-bench-ledger-"))
    os.chmod(root, 0o755)  # as root the server runs as another user
    server = EmbeddedPostgres(root, durable=durable)
    try:
        yield await server.start()
    finally:
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _address() -> str:
    return "0x" + secrets.token_hex(20)


def _token() -> Token:
    return Token(
        address=_address(),
        chain_id=31337,
        name="Bench",
        symbol="B",
        payment_asset=_address(),
        asset_name="USDC",
        asset_version="2",
        asset_decimals=6,
        price_per_mint=1_000_000,
        mint_amount=1,
        max_mint_count=10**9,
    )


def _payment(token: Token, payer: str) -> NewPayment:
    authorization = Authorization(
        from_=payer,
        to=token.address,
        value=token.price_per_mint,
        valid_after=0,
        valid_before=2**40,
        nonce="0x" + secrets.token_hex(32),
        signature="0x" + "ab" * 65,
    )
    return NewPayment(
        id=uuid4(),
        payment_type=PaymentType.MINT,
        payer=payer,
        amount=token.price_per_mint,
        payment_asset=token.payment_asset,
        pay_to=token.address,
        quantity=1,
        authorization=authorization,
    )


def _sign(payments: list[Payment], nonce: int) -> SignedTx:
    return SignedTx(raw="0x02", hash="0x" + secrets.token_hex(32))


async def _no_ledger(conn: object, payments: Sequence[tuple[UUID, LedgerPayment]]) -> None:
    return None


#: How long each ledger write itself took (inside the completing transaction), seconds.
WRITES: list[float] = []
_REAL_WRITE = store_module._record_payments


async def _timed_ledger(conn: Any, payments: Sequence[tuple[UUID, LedgerPayment]]) -> None:
    started = time.perf_counter()
    await _REAL_WRITE(conn, payments)
    WRITES.append(time.perf_counter() - started)


async def one_round(dsn: str, n: int, ledger: bool) -> float:
    """Seconds of one complete_payments call completing `n` sent payments."""
    schema = f"bench_ledger_{secrets.token_hex(4)}"
    store = await PostgresStore.connect(dsn, schema=schema, min_size=2, max_size=20)
    try:
        token = _token()
        await store.upsert_token(token)
        payers = [_address() for _ in range(50)]  # repeat payers, as real traffic has
        new = [_payment(token, payers[i % len(payers)]) for i in range(n)]
        await asyncio.gather(*(store.queue_payment(p) for p in new))
        claimed = await store.claim_payments_one_tx(RELAYER, n, _sign, chain_id=token.chain_id)
        await store.mark_sent([claimed[0].tx_hash or ""])
        completions = [(p.id, p.tx_hash or "", ["0x" + secrets.token_hex(32)]) for p in claimed]
        store_module._record_payments = _timed_ledger if ledger else _no_ledger
        try:
            started = time.perf_counter()
            done = await store.complete_payments(completions)
            elapsed = time.perf_counter() - started
        finally:
            store_module._record_payments = _REAL_WRITE
        assert len(done) == n, len(done)
        return elapsed
    finally:
        async with store.pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await store.close()


async def main(n: int, rounds: int, dsn: str | None, durable: bool) -> None:
    async with database(dsn, durable) as url:
        await one_round(url, n, True)  # warm-up (server caches, prepared statements)
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(rounds):
            for ledger in (i % 2 == 0, i % 2 != 0):  # alternate which goes first
                times[ledger].append(await one_round(url, n, ledger))
    scale = 1000 * 1000 / n  # seconds per n -> ms per 1000
    per_1000 = {k: statistics.median(v) * scale for k, v in times.items()}
    # Each round's pair ran back to back: their difference is the least disturbed by a
    # machine whose load drifts.
    paired = statistics.median(
        (w - wo) * scale for w, wo in zip(times[True], times[False], strict=True)
    )
    print(f"complete_payments of {n} payments in one call, {rounds} rounds (fsync {durable}):")
    print(f"  without the ledger write: {per_1000[False]:8.1f} ms per 1000 completions (median)")
    print(f"  with the ledger write:    {per_1000[True]:8.1f} ms per 1000 completions (median)")
    print(
        f"  difference: {paired:+.1f} ms per 1000 (median of the rounds' back-to-back pairs), "
        f"{paired / per_1000[False]:+.1%}"
    )
    write = statistics.median(WRITES[1:]) * scale  # the warm-up's left out
    print(
        f"  the ledger write itself (timed inside the transaction): {write:.1f} ms per 1000, "
        f"{write / per_1000[False]:.1%} of the completion without it"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--dsn", default=os.environ.get("BENCH_LEDGER_DSN"))
    parser.add_argument(
        "--no-fsync", action="store_true", help="the embedded server without fsync (CPU only)"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.n, args.rounds, args.dsn, not args.no_fsync))
