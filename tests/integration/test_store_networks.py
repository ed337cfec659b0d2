"""Several networks in one store: payments, mint items and relayer state (nonces, leases,
recorded txs) of two chains are kept apart; the default network's rows (no chain) are
matched by no chain until adopted once its chain id is known; and migration 0009 backfills
the chain of existing payments."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from uuid import uuid4

import asyncpg
import pytest

from payfirst.adapters import migrate as migrate_module
from payfirst.adapters.migrate import load_migrations, migrate
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.models import MintItem, NewPayment, Payment, SignedTx, Token
from payfirst.domain.statuses import PaymentStatus, PaymentType
from tests.fixtures.store import execute_raw, make_payment, random_address, register_token

RELAYER = "0x" + "12" * 20
CHAIN_A = 1001
CHAIN_B = 1002


def _sign_each(payment: Payment, nonce: int) -> SignedTx:
    return SignedTx(raw=f"0x02{nonce:04x}", hash="0x" + secrets.token_hex(32))


def _sign_all(payments: list[Payment], nonce: int) -> SignedTx:
    return SignedTx(raw=f"0x02{nonce:04x}", hash="0x" + secrets.token_hex(32))


def _sign_items(items: list[MintItem], nonce: int) -> SignedTx:
    return SignedTx(raw=f"0x02{nonce:04x}", hash="0x" + secrets.token_hex(32))


def _settle(token: Token, chain_id: int | None) -> NewPayment:
    """A facilitator payment (to some payee) recorded on `chain_id`."""
    return replace(
        make_payment(token),
        payment_type=PaymentType.SETTLE,
        pay_to=random_address(),
        chain_id=chain_id,
    )


async def _queue(pg_store: PostgresStore, *payments: NewPayment) -> None:
    for payment in payments:
        assert (await pg_store.queue_payment(payment)).created


async def test_a_mint_records_its_tokens_chain_and_a_settle_its_own(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store, chain_id=CHAIN_A)
    mint, settle, unknown = make_payment(token), _settle(token, CHAIN_B), _settle(token, None)
    await _queue(pg_store, mint, settle, unknown)
    chains = {}
    for new in (mint, settle, unknown):
        stored = await pg_store.get_payment(new.id)
        assert stored is not None
        chains[new.id] = stored.chain_id
    assert chains == {mint.id: CHAIN_A, settle.id: CHAIN_B, unknown.id: None}


async def test_claims_of_one_chain_never_take_another_chains_payments(
    pg_store: PostgresStore,
) -> None:
    token_a = await register_token(pg_store, chain_id=CHAIN_A)
    token_b = await register_token(pg_store, chain_id=CHAIN_B, payment_asset=token_a.payment_asset)
    # Interleaved, so "oldest first" alone would mix them.
    a1, b1, a2, b2 = (
        make_payment(token_a),
        make_payment(token_b),
        make_payment(token_a),
        make_payment(token_b),
    )
    await _queue(pg_store, a1, b1, a2, b2)

    claimed_a = await pg_store.claim_payments(RELAYER, 10, _sign_each, chain_id=CHAIN_A)
    assert [p.id for p in claimed_a] == [a1.id, a2.id]
    assert {p.chain_id for p in claimed_a} == {CHAIN_A}
    assert await pg_store.claim_payments(RELAYER, 10, _sign_each, chain_id=CHAIN_A) == []

    claimed_b = await pg_store.claim_payments_one_tx(RELAYER, 10, _sign_all, chain_id=CHAIN_B)
    assert [p.id for p in claimed_b] == [b1.id, b2.id]
    # Same relayer address, independent nonces: 0 and 1 on A, 0 on B.
    assert [p.tx_nonce for p in claimed_a] == [0, 1]
    assert {p.tx_nonce for p in claimed_b} == {0}
    assert await pg_store.get_relayer_nonce(RELAYER, chain_id=CHAIN_A) == 2
    assert await pg_store.get_relayer_nonce(RELAYER, chain_id=CHAIN_B) == 1
    assert not await pg_store.default_network_rows()


async def test_listing_and_sent_txs_are_per_chain(pg_store: PostgresStore) -> None:
    token_a = await register_token(pg_store, chain_id=CHAIN_A)
    token_b = await register_token(pg_store, chain_id=CHAIN_B)
    a, b = make_payment(token_a), make_payment(token_b)
    await _queue(pg_store, a, b)
    pending_a = await pg_store.list_payments(PaymentStatus.PENDING, 10, chain_id=CHAIN_A)
    assert [p.id for p in pending_a] == [a.id]
    pending_b = await pg_store.list_payments(PaymentStatus.PENDING, 10, chain_id=CHAIN_B)
    assert [p.id for p in pending_b] == [b.id]

    (claimed_a,) = await pg_store.claim_payments(RELAYER, 10, _sign_each, chain_id=CHAIN_A)
    (claimed_b,) = await pg_store.claim_payments(RELAYER, 10, _sign_each, chain_id=CHAIN_B)
    assert claimed_a.tx_nonce == claimed_b.tx_nonce == 0
    outbox_a = await pg_store.unconfirmed_txs(RELAYER, 0, chain_id=CHAIN_A)
    assert [t.tx_hash for t in outbox_a] == [claimed_a.tx_hash]
    assert claimed_a.tx_hash is not None and claimed_b.tx_hash is not None
    await pg_store.mark_sent([claimed_a.tx_hash, claimed_b.tx_hash])
    sent_b = await pg_store.sent_payments(RELAYER, 10, chain_id=CHAIN_B)
    assert [p.id for p in sent_b] == [b.id]
    in_flight = await pg_store.amounts_in_flight([a.payer, b.payer], chain_id=CHAIN_A)
    assert in_flight == {(token_a.payment_asset, a.payer): a.amount}


async def test_mint_items_follow_their_tokens_chain(pg_store: PostgresStore) -> None:
    token_a = await register_token(pg_store, chain_id=CHAIN_A)
    token_b = await register_token(pg_store, chain_id=CHAIN_B)
    a, b = make_payment(token_a), make_payment(token_b)
    await _queue(pg_store, b, a)  # B's items are the oldest
    for new, chain, mint_id in ((b, CHAIN_B, "0x" + "0b" * 32), (a, CHAIN_A, "0x" + "0a" * 32)):
        await pg_store.claim_payments(RELAYER, 10, _sign_each, only=[new.id], chain_id=chain)
        assert await pg_store.complete_payment(new.id, "0x" + "ee" * 32, [mint_id])

    (item_a,) = await pg_store.pending_mint_items(10, chain_id=CHAIN_A)
    assert item_a.token_address == token_a.address
    (item_b,) = await pg_store.pending_mint_items(10, chain_id=CHAIN_B)
    assert item_b.token_address == token_b.address

    (claimed,) = await pg_store.claim_mint_items(
        RELAYER, [item_a.id], _sign_items, chain_id=CHAIN_A
    )
    assert claimed.tx_nonce == 1  # after its payment's, nonce 0 on CHAIN_A
    assert await pg_store.get_relayer_nonce(RELAYER, chain_id=CHAIN_A) == 2
    assert await pg_store.get_relayer_nonce(RELAYER, chain_id=CHAIN_B) == 1
    assert claimed.tx_hash is not None
    await pg_store.mark_sent([claimed.tx_hash])
    assert await pg_store.sent_mint_items(RELAYER, 10, chain_id=CHAIN_B) == []
    assert [m.id for m in await pg_store.sent_mint_items(RELAYER, 10, chain_id=CHAIN_A)] == [
        item_a.id
    ]
    processing = await pg_store.list_mint_items(claimed.status, 10, chain_id=CHAIN_B)
    assert processing == []


async def test_nonces_leases_and_recorded_txs_are_per_chain(pg_store: PostgresStore) -> None:
    assert await pg_store.sync_relayer_nonce(RELAYER, 7, chain_id=CHAIN_A) == 7
    assert await pg_store.sync_relayer_nonce(RELAYER, 3, chain_id=CHAIN_B) == 3
    assert await pg_store.sync_relayer_nonce(RELAYER, 5, chain_id=CHAIN_A) == 7  # never lower
    await pg_store.set_relayer_nonce(RELAYER, 9, chain_id=CHAIN_B)
    assert await pg_store.get_relayer_nonce(RELAYER, chain_id=CHAIN_A) == 7
    assert await pg_store.get_relayer_nonce(RELAYER, chain_id=CHAIN_B) == 9

    # One key, two networks: two workers may each hold it on one of them.
    assert await pg_store.acquire_relayer_lease(RELAYER, "worker-a", 60, chain_id=CHAIN_A)
    assert await pg_store.acquire_relayer_lease(RELAYER, "worker-b", 60, chain_id=CHAIN_B)
    assert not await pg_store.acquire_relayer_lease(RELAYER, "worker-b", 60, chain_id=CHAIN_A)
    await pg_store.release_relayer_lease(RELAYER, "worker-a", chain_id=CHAIN_B)  # not its own
    assert not await pg_store.acquire_relayer_lease(RELAYER, "worker-a", 60, chain_id=CHAIN_B)
    await pg_store.release_relayer_lease(RELAYER, "worker-a", chain_id=CHAIN_A)
    assert await pg_store.acquire_relayer_lease(RELAYER, "worker-b", 60, chain_id=CHAIN_A)

    token = await register_token(pg_store, chain_id=CHAIN_A)
    await _queue(pg_store, make_payment(token))
    (claimed,) = await pg_store.claim_payments(RELAYER, 1, _sign_each, chain_id=CHAIN_A)
    assert claimed.tx_nonce == 7 and claimed.tx_hash is not None
    bump = SignedTx(raw="0x02bb", hash="0x" + "02" * 32)
    assert await pg_store.replace_tx(RELAYER, 7, claimed.tx_hash, bump, chain_id=CHAIN_A)
    recorded = await pg_store.tx_hashes(RELAYER, [7], chain_id=CHAIN_A)
    assert sorted(recorded[7]) == sorted([claimed.tx_hash, bump.hash])
    assert await pg_store.tx_hashes(RELAYER, [7], chain_id=CHAIN_B) == {}


async def test_the_default_network_is_adopted_once_its_chain_id_is_known(
    own_store: PostgresStore,
) -> None:
    token = await register_token(own_store, chain_id=CHAIN_A)
    legacy = _settle(token, None)  # queued with no chain: the default network's
    other = _settle(token, CHAIN_B)
    await _queue(own_store, legacy, other)
    # The single-chain release's relayer state: keyed by chain 0 (0009's default).
    await execute_raw(
        own_store, "INSERT INTO relayers (address, next_nonce) VALUES ($1, 4)", RELAYER
    )
    await execute_raw(
        own_store,
        "INSERT INTO relayer_leases (address, holder, expires_at)"
        " VALUES ($1, 'legacy', now() + interval '60 seconds')",
        RELAYER,
    )
    await own_store.set_relayer_nonce(RELAYER, 2, chain_id=CHAIN_A)
    assert await own_store.get_relayer_nonce(RELAYER, chain_id=CHAIN_A) == 2
    assert await own_store.default_network_rows()
    # Until adopted, no chain's worker sees them: none may claim them with its own nonce.
    assert await own_store.list_payments(PaymentStatus.PENDING, 10, chain_id=CHAIN_A) == []
    assert await own_store.claim_payments(RELAYER, 10, _sign_each, chain_id=CHAIN_A) == []

    await own_store.adopt_default_chain(CHAIN_A)
    assert await own_store.get_relayer_nonce(RELAYER, chain_id=CHAIN_A) == 4  # the higher
    assert not await own_store.default_network_rows()
    assert not await own_store.acquire_relayer_lease(RELAYER, "other", 60, chain_id=CHAIN_A)
    stored = await own_store.get_payment(legacy.id)
    assert stored is not None and stored.chain_id == CHAIN_A

    # A payment queued with no chain now records CHAIN_A; one the previous release's API
    # queues meanwhile (no chain) is adopted before CHAIN_A's worker lists or claims.
    late, older_api = _settle(token, None), _settle(token, None)
    await _queue(own_store, late, older_api)
    stored_late = await own_store.get_payment(late.id)
    assert stored_late is not None and stored_late.chain_id == CHAIN_A
    await execute_raw(
        own_store, "UPDATE payment_queue SET chain_id = NULL WHERE id = $1", older_api.id
    )
    claimed = await own_store.claim_payments(RELAYER, 10, _sign_each, chain_id=CHAIN_A)
    assert [p.id for p in claimed] == [legacy.id, late.id, older_api.id]
    assert [p.tx_nonce for p in claimed] == [4, 5, 6]
    assert {p.chain_id for p in claimed} == {CHAIN_A}
    with pytest.raises(ValueError, match="positive"):
        await own_store.adopt_default_chain(0)


# migration 0009


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    schema = f"payfirst_networks_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
    try:
        yield connection
    finally:
        await connection.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def _insert_payment(
    conn: asyncpg.Connection, payment_type: str, token_address: str, metadata: str
) -> str:
    payment_id = uuid4()
    await conn.execute(
        """INSERT INTO payment_queue (id, payment_type, payer, amount, payment_asset,
               token_address, quantity, "authorization", auth_nonce, valid_before, metadata)
           VALUES ($1, $2, $3, 1, $4, $5, 1, '{}', $6, 0, $7::jsonb)""",
        payment_id,
        payment_type,
        random_address(),
        random_address(),
        token_address,
        "0x" + secrets.token_hex(32),
        metadata,
    )
    return str(payment_id)


async def _insert_token(conn: asyncpg.Connection, chain_id: int) -> str:
    address = random_address()
    await conn.execute(
        """INSERT INTO tokens (address, chain_id, name, symbol, payment_asset, asset_name,
               asset_version, asset_decimals, price_per_mint, mint_amount, max_mint_count)
           VALUES ($1, $2, 'T', 'T', $3, 'USDC', '2', 6, 1, 1, 10)""",
        address,
        chain_id,
        random_address(),
    )
    return address


async def _migrate_to_0009(conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply 0009 (and any later migration) on the rows already there (0001-0008 applied)."""
    monkeypatch.undo()
    assert (await migrate(conn))[0] == 9


async def _before_0009(conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    earlier = [m for m in load_migrations() if m.version < 9]
    monkeypatch.setattr(migrate_module, "load_migrations", lambda: earlier)
    assert await migrate(conn) == list(range(1, 9))


async def test_0009_backfills_each_payments_chain(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _before_0009(conn, monkeypatch)
    token_a = await _insert_token(conn, CHAIN_A)
    token_b = await _insert_token(conn, CHAIN_B)
    mint_b = await _insert_payment(conn, "mint", token_b, "{}")
    by_caip2 = await _insert_payment(conn, "settle", random_address(), '{"network": "eip155:42"}')
    by_v1 = await _insert_payment(conn, "settle", random_address(), '{"network": "base-sepolia"}')
    unknown = await _insert_payment(conn, "settle", random_address(), '{"network": "solana"}')
    bare = await _insert_payment(conn, "settle", token_a, "{}")
    await conn.execute("INSERT INTO relayers (address, next_nonce) VALUES ($1, 5)", RELAYER)

    await _migrate_to_0009(conn, monkeypatch)
    rows = await conn.fetch("SELECT id::text, chain_id FROM payment_queue")
    chains = {r["id"]: r["chain_id"] for r in rows}
    # Two chains in tokens: a payment with no recorded network stays the default's (NULL).
    assert chains == {mint_b: CHAIN_B, by_caip2: 42, by_v1: 84532, unknown: None, bare: None}
    relayer = await conn.fetchrow("SELECT chain_id, next_nonce FROM relayers")
    assert relayer is not None and (relayer["chain_id"], relayer["next_nonce"]) == (0, 5)


async def test_0009_gives_the_only_token_chain_to_payments_of_no_network(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _before_0009(conn, monkeypatch)
    token = await _insert_token(conn, CHAIN_A)
    bare = await _insert_payment(conn, "settle", random_address(), "{}")
    mint = await _insert_payment(conn, "mint", token, "{}")
    await _migrate_to_0009(conn, monkeypatch)
    rows = await conn.fetch("SELECT id::text, chain_id FROM payment_queue")
    assert {r["id"]: r["chain_id"] for r in rows} == {bare: CHAIN_A, mint: CHAIN_A}
