"""The ledger in PostgreSQL: every completion writes its balanced entries in the same
transaction; the ledger is append-only and each transaction balanced (checked by the
statement writing its entries); a reversal is new entries."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.ledger import PLATFORM, AccountKind, LedgerPayment, entries_for_payment
from payfirst.domain.models import Payment, SignedTx, Token
from payfirst.domain.settings import RuntimeSettings
from payfirst.domain.statuses import PaymentStatus
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.confirmer import Confirmer, authorization_of
from payfirst.pipeline.relayer import Relayer
from tests.fakes.chain import FakeChain
from tests.fixtures.store import execute_raw, fetch_raw, queue_payments, register_token

RELAYER = Relayer.from_key(ANVIL_KEYS[0], 31337)
PROVIDER = UUID("7b5a3e8c-0000-4000-8000-000000000001")
SETTLER = "0x" + "5e" * 20


def _sign_each(payment: Payment, nonce: int) -> SignedTx:
    digest = hashlib.sha256(f"{payment.id} {nonce}".encode()).hexdigest()
    return SignedTx(raw="0x02f8" + digest, hash="0x" + digest)


async def _sent(store: PostgresStore, token: Token, count: int) -> list[Payment]:
    """`count` payments queued, each claimed in a tx of its own and marked sent."""
    await queue_payments(store, token, count)
    claimed = await store.claim_payments(RELAYER.address, count, _sign_each)
    await store.mark_sent([p.tx_hash for p in claimed if p.tx_hash])
    return claimed


async def _complete(store: PostgresStore, payments: list[Payment]) -> list[UUID]:
    return await store.complete_payments([(p.id, p.tx_hash or "", []) for p in payments])


async def _ledger(store: PostgresStore) -> list[dict[str, Any]]:
    return await fetch_raw(
        store,
        "SELECT t.payment_id, t.kind AS tx_kind, a.kind, a.owner, a.asset, a.chain_id, e.amount"
        " FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id"
        " JOIN ledger_accounts a ON a.id = e.account_id ORDER BY t.payment_id, t.kind, e.position",
    )


def _as_ledger(
    payment: Payment, provider: UUID | None = None, fee: int | None = None
) -> LedgerPayment:
    return LedgerPayment(
        payment.payer,
        payment.pay_to,
        payment.payment_asset,
        payment.chain_id or 31337,
        payment.amount,
        provider,
        fee,
    )


async def test_completing_payments_writes_one_balanced_transaction_each(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store)
    payments = await _sent(pg_store, token, 3)
    assert len(await _complete(pg_store, payments)) == 3
    rows = await _ledger(pg_store)
    for payment in payments:
        mine = [r for r in rows if r["payment_id"] == payment.id]
        expected = entries_for_payment(_as_ledger(payment))
        assert [(r["kind"], r["owner"], r["amount"]) for r in mine] == [
            (e.account.kind.value, e.account.owner, e.amount) for e in expected
        ]
        assert {r["tx_kind"] for r in mine} == {"payment"}
        assert sum(r["amount"] for r in mine) == 0
    # completing again changes nothing: no second transaction
    assert await _complete(pg_store, payments) == []
    assert len(await _ledger(pg_store)) == len(rows)


async def test_a_payment_completed_again_is_recorded_once(pg_store: PostgresStore) -> None:
    """Completed, put back to `sent` by hand (as a test of reset-stuck does), completed again."""
    token = await register_token(pg_store)
    (payment,) = await _sent(pg_store, token, 1)
    await _complete(pg_store, [payment])
    before = await _ledger(pg_store)
    await execute_raw(
        pg_store, "UPDATE payment_queue SET status = 'sent' WHERE id = $1", payment.id
    )
    assert await _complete(pg_store, [payment]) == [payment.id]
    assert await _ledger(pg_store) == before


async def test_a_rolled_back_completion_leaves_no_entries(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store)
    payments = await _sent(pg_store, token, 2)

    def crash() -> None:
        raise RuntimeError("crash inside the completing transaction")

    with pytest.raises(RuntimeError):
        await pg_store.complete_payments(
            [(p.id, p.tx_hash or "", []) for p in payments], before_commit=crash
        )
    assert await _ledger(pg_store) == []
    assert await fetch_raw(pg_store, "SELECT id FROM ledger_transactions") == []
    statuses = await fetch_raw(pg_store, "SELECT DISTINCT status FROM payment_queue")
    assert statuses == [{"status": "sent"}]


async def test_a_payment_collected_for_a_provider_is_split_with_the_platform(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store)
    (payment,) = await _sent(pg_store, token, 1)
    await execute_raw(
        pg_store,
        "UPDATE payment_queue SET provider_id = $2, fee_bps = 250 WHERE id = $1",
        payment.id,
        PROVIDER,
    )
    await _complete(pg_store, [payment])
    rows = await _ledger(pg_store)
    fee = payment.amount * 250 // 10_000
    assert [(r["kind"], r["owner"], r["amount"]) for r in rows] == [
        ("external", payment.payer, -payment.amount),
        ("provider", str(PROVIDER), payment.amount - fee),
        ("fees", PLATFORM, fee),
    ]


async def test_a_provider_payment_needs_its_fee_fixed(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store)
    (payment,) = await _sent(pg_store, token, 1)
    with pytest.raises(asyncpg.CheckViolationError):
        await execute_raw(
            pg_store,
            "UPDATE payment_queue SET provider_id = $2 WHERE id = $1",
            payment.id,
            PROVIDER,
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await execute_raw(
            pg_store, "UPDATE payment_queue SET fee_bps = 10001 WHERE id = $1", payment.id
        )


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE ledger_entries SET amount = amount * 2",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET kind = 'payout'",
        "DELETE FROM ledger_transactions",
        "UPDATE ledger_accounts SET owner = 'someone else'",
        "DELETE FROM ledger_accounts",
    ],
)
async def test_the_ledger_is_append_only(pg_store: PostgresStore, change: str) -> None:
    token = await register_token(pg_store)
    await _complete(pg_store, await _sent(pg_store, token, 1))
    before = await _ledger(pg_store)
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await execute_raw(pg_store, change)
    assert await _ledger(pg_store) == before


_ENTRIES = (
    "INSERT INTO ledger_entries (transaction_id, position, account_id, amount)"
    " SELECT $1, v.position, v.account_id, v.amount"
    " FROM unnest($2::integer[], $3::bigint[], $4::numeric[]) AS v (position, account_id, amount)"
)


async def test_an_unbalanced_transaction_is_refused(pg_store: PostgresStore) -> None:
    accounts = [
        await pg_store.pool.fetchval(
            "INSERT INTO ledger_accounts (kind, owner, asset, chain_id)"
            " VALUES ($1, $2, '0xasset', 1) RETURNING id",
            kind,
            owner,
        )
        for kind, owner in (("fees", PLATFORM), ("external", "0xsomeone"))
    ]
    tx = uuid4()
    await execute_raw(
        pg_store, "INSERT INTO ledger_transactions (id, kind) VALUES ($1, 'payout')", tx
    )
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await execute_raw(pg_store, _ENTRIES, tx, [0], accounts[:1], [100])
    await execute_raw(pg_store, _ENTRIES, tx, [0, 1], accounts, [100, -100])
    # a balanced transaction stays balanced: one entry more is refused, a balanced pair not
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await execute_raw(pg_store, _ENTRIES, tx, [2], accounts[1:], [5])
    await execute_raw(pg_store, _ENTRIES, tx, [2, 3], accounts, [-7, 7])
    # entries of a transaction or an account that does not exist
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await execute_raw(pg_store, _ENTRIES, uuid4(), [0, 1], accounts, [1, -1])
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await execute_raw(pg_store, _ENTRIES, tx, [4, 5], [accounts[0], 10**12], [1, -1])
    assert await pg_store.ledger_unbalanced(10) == []
    rows = await fetch_raw(
        pg_store, "SELECT sum(amount) AS total, count(*) AS n FROM ledger_entries"
    )
    assert rows == [{"total": 0, "n": 4}]


async def test_a_reversal_is_new_entries_written_once(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store)
    (payment,) = await _sent(pg_store, token, 1)
    await _complete(pg_store, [payment])
    assert await pg_store.reverse_payment(payment.id, "not on chain after a reorg")
    assert not await pg_store.reverse_payment(payment.id, "again")
    assert not await pg_store.reverse_payment(uuid4(), "unknown payment")
    rows = await _ledger(pg_store)
    assert [(r["tx_kind"], r["amount"]) for r in rows] == [
        ("payment", -payment.amount),
        ("payment", payment.amount),
        ("reversal", payment.amount),
        ("reversal", -payment.amount),
    ]
    reason = await fetch_raw(
        pg_store,
        "SELECT reason, reverses IS NOT NULL AS linked FROM ledger_transactions"
        " WHERE kind = 'reversal'",
    )
    assert reason == [{"reason": "not on chain after a reorg", "linked": True}]
    (record,) = await pg_store.ledger_records(None, 10)
    assert record.reversal is not None and record.has_payment_transaction
    assert [e.amount for e in record.reversal] == [-e.amount for e in record.recorded]


async def test_a_payment_not_completed_has_nothing_to_reverse(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store)
    (payment,) = await _sent(pg_store, token, 1)
    assert not await pg_store.reverse_payment(payment.id, "never completed")
    assert await _ledger(pg_store) == []


async def test_holdings_and_amounts_in_flight_to_a_treasury(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store)
    done, waiting = await _sent(pg_store, token, 2)
    await execute_raw(
        pg_store,
        "UPDATE payment_queue SET provider_id = $2, fee_bps = 100 WHERE id = $1",
        done.id,
        PROVIDER,
    )
    await _complete(pg_store, [done])
    # the provider's share and the fee: all of the payment, held by the treasury
    assert await pg_store.ledger_holdings(token.address, 31337) == {
        token.payment_asset: done.amount
    }
    assert await pg_store.ledger_holdings(token.address, 1) == {}
    assert await pg_store.amounts_in_flight_to(token.address, 31337) == {
        token.payment_asset: waiting.amount
    }


async def test_the_confirmer_completing_a_batch_writes_one_transaction_per_payment(
    pg_store: PostgresStore,
) -> None:
    chain = FakeChain()
    token = await register_token(pg_store)
    await queue_payments(pg_store, token, 5)

    def sign(payments: list[Payment], nonce: int) -> SignedTx:
        return _sign_each(payments[0], nonce)

    batch = await pg_store.claim_payments_one_tx(RELAYER.address, 5, sign)
    tx_hash = batch[0].tx_hash
    assert tx_hash is not None and len(batch) == 5
    await pg_store.mark_sent([tx_hash])
    chain.mine(tx_hash, to=SETTLER, uses=[authorization_of(p) for p in batch])
    chain.set_nonce(RELAYER.address, 1)
    chain.mine_blocks(2)
    confirmer = Confirmer(Broadcaster(pg_store, chain, RELAYER))
    assert await confirmer.run_once(RuntimeSettings(confirmation_depth=2)) == 5
    counts = await fetch_raw(
        pg_store,
        "SELECT t.payment_id, count(DISTINCT t.id) AS txs, sum(e.amount) AS total,"
        " min(e.amount) AS debit FROM ledger_transactions t"
        " JOIN ledger_entries e ON e.transaction_id = t.id GROUP BY t.payment_id",
    )
    assert {r["payment_id"] for r in counts} == {p.id for p in batch}
    amounts = {p.id: p.amount for p in batch}
    for row in counts:
        assert (row["txs"], row["total"], row["debit"]) == (1, 0, -amounts[row["payment_id"]])
    statuses = await fetch_raw(pg_store, "SELECT DISTINCT status FROM payment_queue")
    assert statuses == [{"status": PaymentStatus.COMPLETED.value}]
    kinds = await fetch_raw(pg_store, "SELECT DISTINCT kind FROM ledger_accounts ORDER BY kind")
    assert [r["kind"] for r in kinds] == [AccountKind.EXTERNAL.value]
