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
from payfirst.adapters.sql import QUERIES
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

#: The chain of the tokens `make_token` builds, so of their payments.
CHAIN = 31337

RELAYER = Relayer.from_key(ANVIL_KEYS[0], 31337)
PROVIDER = UUID("7b5a3e8c-0000-4000-8000-000000000001")
SETTLER = "0x" + "5e" * 20


def _sign_each(payment: Payment, nonce: int) -> SignedTx:
    digest = hashlib.sha256(f"{payment.id} {nonce}".encode()).hexdigest()
    return SignedTx(raw="0x02f8" + digest, hash="0x" + digest)


async def _sent(store: PostgresStore, token: Token, count: int) -> list[Payment]:
    """`count` payments queued, each claimed in a tx of its own and marked sent."""
    await queue_payments(store, token, count)
    claimed = await store.claim_payments(RELAYER.address, count, _sign_each, chain_id=CHAIN)
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
    # a transaction's entries are written at once: nothing is added later, balanced or not
    for positions, amounts in (([2], [5]), ([2, 3], [-7, 7])):
        with pytest.raises(asyncpg.RestrictViolationError, match="already has entries"):
            await execute_raw(pg_store, _ENTRIES, tx, positions, accounts[: len(amounts)], amounts)
    # entries of a transaction or an account that does not exist
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await execute_raw(pg_store, _ENTRIES, uuid4(), [0, 1], accounts, [1, -1])
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await execute_raw(pg_store, _ENTRIES, tx, [4, 5], [accounts[0], 10**12], [1, -1])
    assert await pg_store.ledger_unbalanced(10) == []
    rows = await fetch_raw(
        pg_store, "SELECT sum(amount) AS total, count(*) AS n FROM ledger_entries"
    )
    assert rows == [{"total": 0, "n": 2}]


async def _account(store: PostgresStore, owner: str, asset: str, chain_id: int) -> int:
    account_id: int = await store.pool.fetchval(
        "INSERT INTO ledger_accounts (kind, owner, asset, chain_id)"
        " VALUES ('external', $1, $2, $3) RETURNING id",
        owner,
        asset,
        chain_id,
    )
    return account_id


async def _payout(store: PostgresStore) -> UUID:
    tx = uuid4()
    await execute_raw(store, "INSERT INTO ledger_transactions (id, kind) VALUES ($1, 'payout')", tx)
    return tx


async def test_a_transaction_balances_per_asset_and_chain(pg_store: PostgresStore) -> None:
    """-100 of an asset on a chain is not balanced by +100 of another asset or chain."""
    usdc_a = await _account(pg_store, "0xpayer", "0xusdc", 1)
    other_b = await _account(pg_store, "0xpayee", "0xother", 1)  # another asset
    usdc_chain_2 = await _account(pg_store, "0xpayee", "0xusdc", 2)  # another chain
    for other in (other_b, usdc_chain_2):
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            await execute_raw(
                pg_store, _ENTRIES, await _payout(pg_store), [0, 1], [usdc_a, other], [-100, 100]
            )
    # each asset and chain balanced on its own: accepted
    usdc_b = await _account(pg_store, "0xpayee", "0xusdc", 1)
    other_a = await _account(pg_store, "0xpayer", "0xother", 1)
    await execute_raw(
        pg_store,
        _ENTRIES,
        await _payout(pg_store),
        [0, 1, 2, 3],
        [usdc_a, usdc_b, other_a, other_b],
        [-100, 100, -3, 3],
    )
    rows = await fetch_raw(pg_store, "SELECT count(*) AS n FROM ledger_entries")
    assert rows == [{"n": 4}]


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_transactions", "ledger_accounts"])
async def test_the_ledger_is_not_truncated_unless_a_wipe_is_meant(
    pg_store: PostgresStore, table: str
) -> None:
    token = await register_token(pg_store)
    await _complete(pg_store, await _sent(pg_store, token, 1))
    before = await _ledger(pg_store)
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await execute_raw(pg_store, f"TRUNCATE {table} CASCADE")
    assert await _ledger(pg_store) == before
    async with pg_store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL payfirst.allow_ledger_truncate = 'on'")
        await conn.execute(f"TRUNCATE {table} CASCADE")
    assert await _ledger(pg_store) == []


async def test_an_entry_of_a_missing_account_fails_the_recording(
    pg_store: PostgresStore,
) -> None:
    """The recording statement never drops an entry it cannot place: it fails whole."""
    token = await register_token(pg_store)
    (payment,) = await _sent(pg_store, token, 1)
    known = await _account(pg_store, "0xpayer", "0xusdc", 1)
    assert known
    tx = uuid4()
    with pytest.raises(asyncpg.NotNullViolationError):
        await execute_raw(
            pg_store,
            QUERIES["ledger_record_payments"],
            [tx],
            [payment.id],
            [tx, tx],
            [0, 1],
            ["external", "external"],
            ["0xpayer", "0xnobody"],  # the second account was never created
            ["0xusdc", "0xusdc"],
            [1, 1],
            [-5, 5],
        )
    assert await fetch_raw(pg_store, "SELECT id FROM ledger_transactions") == []
    assert await fetch_raw(pg_store, "SELECT 1 FROM ledger_entries") == []


async def test_a_payment_whose_completion_is_refused_does_not_hold_back_the_others(
    pg_store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    token = await register_token(pg_store)
    payments = await _sent(pg_store, token, 3)
    poisoned = payments[1]
    # Test-only: the ledger refuses this one payment's transaction.
    await execute_raw(
        pg_store,
        "CREATE FUNCTION poison_v1() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'poisoned' USING ERRCODE = 'check_violation'; END; $$",
    )
    await execute_raw(
        pg_store,
        "CREATE TRIGGER poison BEFORE INSERT ON ledger_transactions FOR EACH ROW"
        f" WHEN (NEW.payment_id = '{poisoned.id}') EXECUTE FUNCTION poison_v1()",
    )
    try:
        others = [p for p in payments if p is not poisoned]
        assert sorted(await _complete(pg_store, payments)) == sorted(p.id for p in others)
        assert await _complete(pg_store, payments) == []  # the next tick: still refused
        statuses = {
            r["id"]: r["status"]
            for r in await fetch_raw(pg_store, "SELECT id, status FROM payment_queue")
        }
        assert statuses[poisoned.id] == PaymentStatus.SENT.value
        assert [statuses[p.id] for p in others] == ["completed"] * 2
        recorded = await fetch_raw(pg_store, "SELECT payment_id FROM ledger_transactions")
        assert {r["payment_id"] for r in recorded} == {p.id for p in others}
        assert f"payment {poisoned.id} settled but its completion was refused" in caplog.text
    finally:
        await execute_raw(pg_store, "DROP TRIGGER poison ON ledger_transactions")
        await execute_raw(pg_store, "DROP FUNCTION poison_v1()")
    # once the cause is fixed, the next tick completes it with its entries
    assert await _complete(pg_store, payments) == [poisoned.id]
    assert len(await _ledger(pg_store)) == 2 * len(payments)


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

    batch = await pg_store.claim_payments_one_tx(RELAYER.address, 5, sign, chain_id=CHAIN)
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
