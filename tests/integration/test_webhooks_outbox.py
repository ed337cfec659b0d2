"""The outbox triggers (migration 0016) on real PostgreSQL, without a chain: which account
hears about which status change, and that nothing is written for an account without an
enabled endpoint that wants the event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.accounts import Account, Role
from payfirst.domain.webhooks import WebhookEndpoint
from payfirst.usecases.accounts import Accounts
from payfirst.usecases.webhooks import new_secret
from tests.fixtures.store import (
    execute_raw,
    fetch_raw,
    queue_payments,
    random_address,
    register_token,
)


async def account(store: PostgresStore, role: Role) -> Account:
    created, _ = await Accounts(store).create_account(role, role.value)
    return created


async def endpoint(
    store: PostgresStore, owner: Account, *types: str, disabled: bool = False
) -> WebhookEndpoint:
    now = datetime.now(UTC)
    hook = WebhookEndpoint(
        uuid4(), owner.id, "https://hooks.example.com/x", types, new_secret(), "", now, now
    )
    await store.create_webhook_endpoint(hook)
    if disabled:
        await execute_raw(
            store,
            "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = 'test' "
            "WHERE id = $1",
            hook.id,
        )
    return hook


async def messages(store: PostgresStore) -> list[dict[str, Any]]:
    return await fetch_raw(
        store,
        "SELECT m.account_id, m.event_type, m.payload, count(d.id) AS deliveries "
        "FROM webhook_messages m LEFT JOIN webhook_deliveries d ON d.message_id = m.id "
        "GROUP BY m.id ORDER BY m.created_at, m.event_type",
    )


async def set_status(store: PostgresStore, payment: UUID, status: str) -> None:
    await execute_raw(store, "UPDATE payment_queue SET status = $2 WHERE id = $1", payment, status)


async def test_each_interested_account_gets_one_message_per_event(pg_store: PostgresStore) -> None:
    store = pg_store
    token = await register_token(store)
    provider = await account(store, Role.PROVIDER)
    seller = await account(store, Role.PROVIDER)
    agent = await account(store, Role.AGENT)
    await endpoint(store, provider)  # every type
    await endpoint(store, seller, "payment.completed")
    await endpoint(store, seller, "payment.completed", "payment.failed")  # two: two deliveries
    await endpoint(store, agent, "payment.failed", disabled=True)  # kept, not delivered
    (first, second) = await queue_payments(store, token, 2)
    assert await messages(store) == []  # nobody's payments yet
    # `first` is for the provider; `second` for the seller's paid endpoint (no provider_id).
    await execute_raw(
        store,
        "UPDATE payment_queue SET provider_id = $2, fee_bps = 0 WHERE id = $1",
        first.id,
        provider.id,
    )
    paid = uuid4()
    await execute_raw(
        store,
        "INSERT INTO endpoints (id, provider_id, method, resource, amount, asset, chain_id, "
        "pay_to) VALUES ($1, $2, 'GET', '/weather', 1000, $3, 31337, $3)",
        paid,
        seller.id,
        random_address(),
    )
    await execute_raw(
        store, "UPDATE payment_queue SET endpoint_id = $2 WHERE id = $1", second.id, paid
    )
    await execute_raw(
        store,
        "INSERT INTO agent_payers (address, account_id, verified_at) VALUES ($1, $2, now())",
        second.payer,
        agent.id,
    )
    for payment in (first, second):
        await set_status(store, payment.id, "processing")  # no event
        await set_status(store, payment.id, "sent")
    await set_status(store, first.id, "completed")
    await set_status(store, second.id, "confirmation_failed")
    found = await messages(store)
    assert sorted((str(m["account_id"]), m["event_type"], m["deliveries"]) for m in found) == (
        sorted(
            [
                (str(provider.id), "payment.completed", 1),
                (str(seller.id), "payment.failed", 1),
                (str(agent.id), "payment.failed", 0),  # its endpoint is disabled: replay later
            ]
        )
    )
    found = [m for m in found if m["account_id"] != agent.id]
    data = found[0]["payload"]["data"]
    assert found[0]["payload"]["type"] == "payment.completed"
    assert data["id"] == str(first.id) and data["amount"] == str(first.amount)
    assert data["payer"] == first.payer and data["pay_to"] == first.pay_to
    assert found[1]["payload"]["data"]["endpoint_id"] == str(paid)


async def test_queued_insert_rolled_back_or_removed_writes_nothing(
    pg_store: PostgresStore,
) -> None:
    store = pg_store
    token = await register_token(store)
    agent = await account(store, Role.AGENT)
    await endpoint(store, agent, "payment.queued")
    payer = random_address()
    await execute_raw(
        store,
        "INSERT INTO agent_payers (address, account_id, verified_at) VALUES ($1, $2, now())",
        payer,
        agent.id,
    )
    (queued,) = await queue_payments(store, token, 1)
    assert await messages(store) == []  # another payer's
    await execute_raw(store, "UPDATE payment_queue SET payer = $2 WHERE id = $1", queued.id, payer)
    # Inserted and removed in one transaction (sold out, refused by a policy): no event.
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO payment_queue (id, payment_type, payer, amount, payment_asset, "
            'token_address, quantity, "authorization", auth_nonce, valid_before) '
            "SELECT $1::uuid, payment_type, payer, amount, payment_asset, token_address, quantity, "
            "\"authorization\", 'n-' || $1::text, valid_before FROM payment_queue WHERE id = $2",
            uuid4(),
            queued.id,
        )
        await conn.execute("DELETE FROM payment_queue WHERE auth_nonce LIKE 'n-%'")
    assert await messages(store) == []
    # Inserted and kept: payment.queued at commit.
    kept = uuid4()
    await execute_raw(
        store,
        "INSERT INTO payment_queue (id, payment_type, payer, amount, payment_asset, "
        'token_address, quantity, "authorization", auth_nonce, valid_before) '
        "SELECT $1::uuid, payment_type, payer, amount, payment_asset, token_address, quantity, "
        "\"authorization\", 'k-' || $1::text, valid_before FROM payment_queue WHERE id = $2",
        kept,
        queued.id,
    )
    found = await messages(store)
    assert [(m["event_type"], m["payload"]["data"]["id"]) for m in found] == [
        ("payment.queued", str(kept))
    ]


async def test_mint_and_payout_completions(pg_store: PostgresStore) -> None:
    store = pg_store
    token = await register_token(store)
    provider = await account(store, Role.PROVIDER)
    await endpoint(store, provider, "mint.completed", "payout.completed")
    (payment,) = await queue_payments(store, token, 1)
    await execute_raw(
        store,
        "UPDATE payment_queue SET provider_id = $2, fee_bps = 0 WHERE id = $1",
        payment.id,
        provider.id,
    )
    mint = uuid4()
    await execute_raw(
        store,
        "INSERT INTO mint_queue (id, payment_id, payer, token_address, mint_id, "
        "payment_tx_hash) VALUES ($1, $2, $3, $4, $5, '0xabc')",
        mint,
        payment.id,
        payment.payer,
        token.address,
        "0x" + "12" * 32,
    )
    await execute_raw(store, "UPDATE mint_queue SET status = 'sent' WHERE id = $1", mint)
    await execute_raw(store, "UPDATE mint_queue SET status = 'completed' WHERE id = $1", mint)
    await execute_raw(
        store,
        "INSERT INTO payouts (id, provider_id, asset, chain_id, to_address, amount, status, "
        "trigger, relayer, nonce, tx_hash, raw_tx) VALUES ($1, $2, $3, 31337, $3, 5, 'sent', "
        "'threshold', $3, 1, '0xdef', '0x00')",
        uuid4(),
        provider.id,
        token.payment_asset,
    )
    await execute_raw(store, "UPDATE payouts SET status = 'failed'")  # not an event
    await execute_raw(store, "UPDATE payouts SET status = 'completed'")
    found = await messages(store)
    assert [m["event_type"] for m in found] == ["mint.completed", "payout.completed"]
    assert found[0]["payload"]["data"]["mint_id"] == "0x" + "12" * 32
    assert found[1]["payload"]["data"]["amount"] == "5"
