"""Payouts in PostgreSQL: created only within the available balance (the provider's row
locked: concurrent requests never both pass), claimed and signed in one transaction with
the treasury's nonce (write-ahead), broadcast from the outbox like every relayer tx,
completed with a balanced `payout` ledger transaction in the same transaction, failed with
none; automatic payouts when the provider's terms call for them."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any
from uuid import UUID, uuid4

import pytest

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.accounts import Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Payment, SignedTx, Token
from payfirst.domain.payouts import (
    Payout,
    PayoutRequest,
    PayoutStatus,
    PayoutTrigger,
    TermsChange,
)
from payfirst.domain.reasons import Reason
from payfirst.pipeline.relayer import Relayer
from payfirst.usecases.accounts import Accounts
from payfirst.usecases.payouts import Payouts
from tests.fixtures.store import (
    execute_raw,
    fetch_raw,
    queue_payments,
    random_address,
    register_token,
)

CHAIN = 31337
TREASURY = Relayer.from_key(ANVIL_KEYS[0], CHAIN).address


def _sign(what: Any, nonce: int) -> SignedTx:
    digest = hashlib.sha256(f"{what.id} {nonce}".encode()).hexdigest()
    return SignedTx(raw="0x02f8" + digest, hash="0x" + digest)


async def _provider(store: PostgresStore, payout_address: str | None = None) -> UUID:
    account, _ = await Accounts(store).create_account(
        Role.PROVIDER,
        "provider",
        fee_bps=0,
        payout_address=payout_address or random_address(),
    )
    return account.id


async def _credit(store: PostgresStore, token: Token, provider: UUID, count: int) -> int:
    """`count` payments collected for the provider, completed (fee 0): its balance."""
    await queue_payments(store, token, count)
    claimed: list[Payment] = await store.claim_payments(TREASURY, count, _sign, chain_id=CHAIN)
    for payment in claimed:
        await execute_raw(
            store,
            "UPDATE payment_queue SET provider_id = $2, fee_bps = 0 WHERE id = $1",
            payment.id,
            provider,
        )
    await store.mark_sent([p.tx_hash for p in claimed if p.tx_hash])
    done = await store.complete_payments([(p.id, p.tx_hash or "", []) for p in claimed])
    assert len(done) == count
    return sum(p.amount for p in claimed)


def _request(token: Token, provider: UUID, amount: int | None) -> PayoutRequest:
    return PayoutRequest(provider, token.payment_asset, CHAIN, amount, PayoutTrigger.ON_DEMAND)


async def test_a_payout_is_created_only_within_the_available_balance(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store)
    provider = await _provider(pg_store)
    balance = await _credit(pg_store, token, provider, 2)
    with pytest.raises(PaymentRejected) as refused:
        await pg_store.create_payout(_request(token, provider, balance + 1))
    assert refused.value.reason is Reason.INSUFFICIENT_BALANCE
    first = await pg_store.create_payout(_request(token, provider, balance - 10))
    assert (first.status, first.amount, first.trigger) == (
        PayoutStatus.PENDING,
        balance - 10,
        PayoutTrigger.ON_DEMAND,
    )
    # The pending one counts against what is available.
    with pytest.raises(PaymentRejected):
        await pg_store.create_payout(_request(token, provider, 11))
    rest = await pg_store.create_payout(_request(token, provider, None))
    assert rest.amount == 10
    with pytest.raises(PaymentRejected) as nothing:
        await pg_store.create_payout(_request(token, provider, None))
    assert nothing.value.reason is Reason.INSUFFICIENT_BALANCE
    (balances,) = await pg_store.provider_balances(provider)
    assert (balances.balance, balances.in_payout, balances.available) == (balance, balance, 0)


async def test_concurrent_payouts_never_exceed_the_balance(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store)
    provider = await _provider(pg_store)
    balance = await _credit(pg_store, token, provider, 3)
    share = balance // 3 + 1  # three of them would be more than the balance
    results = await asyncio.gather(
        *(pg_store.create_payout(_request(token, provider, share)) for _ in range(8)),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, Payout)]
    refused = [r for r in results if isinstance(r, PaymentRejected)]
    assert len(created) == 2 and len(refused) == 6, results
    assert {r.reason for r in refused} == {Reason.INSUFFICIENT_BALANCE}


async def test_who_may_be_paid_out(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store)
    provider = await _provider(pg_store)
    await _credit(pg_store, token, provider, 1)
    await pg_store.update_account_terms(
        provider, TermsChange(payout_address=None, given=frozenset({"payout_address"}))
    )
    with pytest.raises(PaymentRejected) as no_address:
        await pg_store.create_payout(_request(token, provider, 1))
    assert no_address.value.reason is Reason.NO_PAYOUT_ADDRESS
    agent, _ = await Accounts(pg_store).create_account(Role.AGENT, "agent")
    for who in (agent.id, uuid4()):
        with pytest.raises(PaymentRejected) as unknown:
            await pg_store.create_payout(_request(token, who, 1))
        assert unknown.value.reason is Reason.UNKNOWN_ACCOUNT
    assert await fetch_raw(pg_store, "SELECT id FROM payouts") == []


async def test_claim_signs_with_the_next_nonce_and_the_outbox_sends_it(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store)
    provider = await _provider(pg_store)
    await _credit(pg_store, token, provider, 2)  # nonces 0 and 1
    a = await pg_store.create_payout(_request(token, provider, 5))
    b = await pg_store.create_payout(_request(token, provider, 7))

    def refuse(payout: Payout, nonce: int) -> SignedTx:
        raise RuntimeError("the signer failed")

    with pytest.raises(RuntimeError):
        await pg_store.claim_payouts(TREASURY, 10, refuse, chain_id=CHAIN)
    assert {p["status"] for p in await fetch_raw(pg_store, "SELECT status FROM payouts")} == {
        "pending"
    }
    claimed = await pg_store.claim_payouts(TREASURY, 10, _sign, chain_id=CHAIN)
    assert [(p.id, p.tx_nonce, p.status) for p in claimed] == [
        (a.id, 2, PayoutStatus.PROCESSING),
        (b.id, 3, PayoutStatus.PROCESSING),
    ]
    assert await pg_store.get_relayer_nonce(TREASURY, chain_id=CHAIN) == 4
    stored = await pg_store.get_payout(a.id)
    assert stored is not None and stored.raw_tx == claimed[0].raw_tx
    outbox = await pg_store.unconfirmed_txs(TREASURY, 2, chain_id=CHAIN)
    assert [(t.nonce, t.tx_hash, t.sent) for t in outbox] == [
        (2, claimed[0].tx_hash, False),
        (3, claimed[1].tx_hash, False),
    ]
    await pg_store.mark_sent([p.tx_hash for p in claimed if p.tx_hash])
    sent = await pg_store.sent_payouts(TREASURY, 10, chain_id=CHAIN)
    assert [p.id for p in sent] == [a.id, b.id]
    assert {p.status for p in sent} == {PayoutStatus.SENT}
    # A fee bump moves the payout to the replacement; both stay on record.
    replacement = SignedTx(raw="0x02f8" + "cd" * 32, hash="0x" + "cd" * 32)
    assert await pg_store.replace_tx(
        TREASURY, 2, claimed[0].tx_hash or "", replacement, chain_id=CHAIN
    )
    bumped = await pg_store.get_payout(a.id)
    assert bumped is not None and bumped.tx_hash == replacement.hash
    history = await pg_store.tx_hashes(TREASURY, [2], chain_id=CHAIN)
    assert set(history[2]) == {claimed[0].tx_hash, replacement.hash}


async def test_completion_writes_its_ledger_transaction_and_failure_none(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store)
    payee = random_address()
    provider = await _provider(pg_store, payee)
    balance = await _credit(pg_store, token, provider, 2)
    paid = await pg_store.create_payout(_request(token, provider, 100))
    reverted = await pg_store.create_payout(_request(token, provider, 50))
    claimed = await pg_store.claim_payouts(TREASURY, 10, _sign, chain_id=CHAIN)
    # Not yet sent: a failure is decided only for a sent payout.
    assert not await pg_store.fail_payout(reverted.id, "reverted")
    await pg_store.mark_sent([p.tx_hash for p in claimed if p.tx_hash])

    def crash() -> None:
        raise RuntimeError("crash inside the completing transaction")

    with pytest.raises(RuntimeError):
        await pg_store.complete_payout(paid.id, claimed[0].tx_hash or "", before_commit=crash)
    assert (
        await fetch_raw(pg_store, "SELECT id FROM ledger_transactions WHERE kind = 'payout'") == []
    )
    assert await pg_store.complete_payout(paid.id, claimed[0].tx_hash or "")
    assert not await pg_store.complete_payout(paid.id, claimed[0].tx_hash or "")  # once
    assert await pg_store.fail_payout(reverted.id, "payout tx reverted")
    assert not await pg_store.complete_payout(reverted.id, claimed[1].tx_hash or "")
    rows = await fetch_raw(
        pg_store,
        "SELECT t.payout_id, a.kind, a.owner, a.asset, e.amount FROM ledger_transactions t"
        " JOIN ledger_entries e ON e.transaction_id = t.id"
        " JOIN ledger_accounts a ON a.id = e.account_id"
        " WHERE t.kind = 'payout' ORDER BY e.position",
    )
    assert rows == [
        {
            "payout_id": paid.id,
            "kind": "provider",
            "owner": str(provider),
            "asset": token.payment_asset,
            "amount": -100,
        },
        {
            "payout_id": paid.id,
            "kind": "external",
            "owner": payee,
            "asset": token.payment_asset,
            "amount": 100,
        },
    ]
    (balances,) = await pg_store.provider_balances(provider)
    assert (balances.balance, balances.in_payout, balances.paid_out) == (balance - 100, 0, 100)
    assert balances.available == balance - 100  # the failed one's amount is available again
    done = await pg_store.get_payout(paid.id)
    assert done is not None and done.completed_at is not None
    # The ledger's holdings of the treasury's chain drop by what was paid out.
    books, open_payouts = await pg_store.treasury_books(TREASURY, CHAIN)
    assert [p.id for p in open_payouts] == [paid.id]  # completed just now
    assert books == {token.payment_asset: balance - 100}


async def test_automatic_payouts_are_due_by_threshold_or_schedule(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store)
    by_threshold = await _provider(pg_store)
    by_schedule = await _provider(pg_store)
    manual = await _provider(pg_store)
    balances = {
        p: await _credit(pg_store, token, p, 1) for p in (by_threshold, by_schedule, manual)
    }
    await pg_store.update_account_terms(
        by_threshold,
        TermsChange(payout_threshold=balances[by_threshold], given=frozenset({"payout_threshold"})),
    )
    await pg_store.update_account_terms(
        by_schedule, TermsChange(payout_interval_s=60, given=frozenset({"payout_interval_s"}))
    )
    candidates = {c.provider_id: c for c in await pg_store.payout_candidates(CHAIN)}
    assert set(candidates) == {by_threshold, by_schedule}  # no terms: never automatic
    assert candidates[by_threshold].due() is PayoutTrigger.THRESHOLD
    assert candidates[by_schedule].due() is None  # its account is younger than a minute
    await execute_raw(
        pg_store,
        "UPDATE accounts SET created_at = now() - interval '2 minutes' WHERE id = $1",
        by_schedule,
    )
    candidates = {c.provider_id: c for c in await pg_store.payout_candidates(CHAIN)}
    assert candidates[by_schedule].due() is PayoutTrigger.SCHEDULE
    assert candidates[by_schedule].available == balances[by_schedule]
    # Once paid out (even while pending), nothing more is available: not a candidate.
    await pg_store.create_payout(
        PayoutRequest(by_schedule, token.payment_asset, CHAIN, None, PayoutTrigger.SCHEDULE)
    )
    assert by_schedule not in {c.provider_id for c in await pg_store.payout_candidates(CHAIN)}
    assert await pg_store.payout_candidates(1) == []


async def test_payouts_are_listed_newest_first_a_page_at_a_time_and_pending_money_shown(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store)
    provider = await _provider(pg_store)
    other = await _provider(pg_store)
    await _credit(pg_store, token, provider, 1)
    await _credit(pg_store, token, other, 1)
    made = [await pg_store.create_payout(_request(token, provider, 1)) for _ in range(3)]
    theirs = await pg_store.create_payout(_request(token, other, 1))
    service = Payouts(pg_store)
    owner = await pg_store.get_account(provider)
    operator, _ = await Accounts(pg_store).create_account(Role.OPERATOR, "ops")
    assert owner is not None
    first = await service.payouts(owner, 2)
    assert [p.id for p in first.items] == [made[2].id, made[1].id] and first.has_more
    second = await service.payouts(owner, 2, before=first.items[-1].id)
    assert [p.id for p in second.items] == [made[0].id] and not second.has_more
    everyone = await service.payouts(operator, 10)
    assert {p.id for p in everyone.items} == {p.id for p in made} | {theirs.id}
    with pytest.raises(PaymentRejected) as hidden:
        await service.payout(owner, theirs.id)
    assert hidden.value.reason is Reason.UNKNOWN_PAYOUT
    # A payment accepted for the provider but not completed is pending, its share only.
    (queued,) = await queue_payments(pg_store, token, 1)
    await execute_raw(
        pg_store,
        "UPDATE payment_queue SET provider_id = $2, fee_bps = 250 WHERE id = $1",
        queued.id,
        provider,
    )
    (balance,) = await pg_store.provider_balances(provider)
    assert balance.pending == queued.amount - queued.amount * 250 // 10_000
    assert balance.in_payout == 3
