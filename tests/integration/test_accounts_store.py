"""Accounts and API keys in PostgreSQL: what the store keeps (a key's prefix and hash,
never its text), pages, revocation, the once-a-minute use record, and the table checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.accounts import Account, ApiKey, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.usecases.accounts import Accounts
from payfirst.usecases.api_keys import KeyMode, generate_key
from tests.fixtures.store import IntegrityErrors, execute_raw, fetch_raw

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_an_account_and_its_first_key_are_kept_without_the_key(
    pg_store: PostgresStore,
) -> None:
    accounts = Accounts(pg_store)
    account, issued = await accounts.create_account(
        Role.PROVIDER, "shop", fee_bps=250, payout_address="0x" + "12" * 20
    )
    assert await pg_store.get_account(account.id) == account
    found = await pg_store.find_api_key_by_prefix(issued.key.prefix)
    assert found is not None
    assert found.account == account
    assert found.key == issued.key
    rows = await fetch_raw(pg_store, "SELECT * FROM api_keys")
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0].values())
    assert issued.text not in stored and issued.text[17:] not in stored
    assert bytes(rows[0]["secret_hash"]) == issued.key.secret_hash
    authenticated = await accounts.authenticate(issued.text)
    assert authenticated is not None and authenticated.account == account


async def test_a_first_key_that_cannot_be_stored_leaves_no_account(
    pg_store: PostgresStore,
) -> None:
    accounts = Accounts(pg_store)
    _, issued = await accounts.create_account(Role.AGENT, "agent")
    # The same prefix again (the unique key): the account of the failed call is not kept.
    other = Account(uuid4(), Role.AGENT, "twin", T0)
    duplicate = ApiKey(uuid4(), other.id, issued.key.prefix, issued.key.secret_hash, None, T0)
    with pytest.raises(asyncpg.UniqueViolationError):
        await pg_store.create_account(other, duplicate)
    assert await pg_store.get_account(other.id) is None


async def test_accounts_are_listed_a_page_at_a_time(pg_store: PostgresStore) -> None:
    created = []
    for i in range(5):
        account = Account(uuid4(), Role.PROVIDER, f"p{i}", T0 + timedelta(seconds=i))
        await pg_store.create_account(account)
        created.append(account)
    accounts = Accounts(pg_store)
    first = await accounts.accounts(2)
    assert first.items == created[:2] and first.has_more
    second = await accounts.accounts(2, first.items[-1].id)
    assert second.items == created[2:4] and second.has_more
    last = await accounts.accounts(2, second.items[-1].id)
    assert last.items == created[4:] and not last.has_more
    assert (await accounts.accounts(2, uuid4())).items == []  # an unknown cursor


async def test_revoking_an_account_stops_its_keys_and_keeps_the_first_time(
    pg_store: PostgresStore,
) -> None:
    accounts = Accounts(pg_store)
    account, issued = await accounts.create_account(Role.PROVIDER, "shop")
    revoked = await pg_store.revoke_account(account.id, T0)
    assert revoked is not None and revoked.revoked_at == T0
    again = await pg_store.revoke_account(account.id, T0 + timedelta(days=1))
    assert again is not None and again.revoked_at == T0
    assert await accounts.authenticate(issued.text) is None
    assert await pg_store.revoke_account(uuid4(), T0) is None
    # No new key for a revoked (or unknown) account.
    with pytest.raises(PaymentRejected) as refused:
        await accounts.issue_key(account.id)
    assert refused.value.reason is Reason.UNKNOWN_ACCOUNT
    with pytest.raises(PaymentRejected):
        await accounts.issue_key(uuid4())
    assert len(await pg_store.list_api_keys(account.id, 10)) == 1


async def test_keys_are_listed_per_account_and_revoked_only_by_their_owner(
    pg_store: PostgresStore,
) -> None:
    accounts = Accounts(pg_store)
    a, a_first = await accounts.create_account(Role.PROVIDER, "a")
    b, b_first = await accounts.create_account(Role.PROVIDER, "b")
    a_second = await accounts.issue_key(a.id, name="ci", expires_in=timedelta(days=30))
    page = await accounts.keys(a.id, 10)
    assert [k.id for k in page.items] == [a_first.key.id, a_second.key.id]
    assert not page.has_more
    assert page.items[1].name == "ci" and page.items[1].expires_at is not None
    first_page = await accounts.keys(a.id, 1)
    assert first_page.has_more
    assert (await accounts.keys(a.id, 1, first_page.items[0].id)).items[0].id == a_second.key.id
    assert [k.id for k in (await accounts.keys(b.id, 10)).items] == [b_first.key.id]
    # A's key is not B's to revoke: unknown, and it still works.
    with pytest.raises(PaymentRejected) as refused:
        await accounts.revoke_key(a_first.key.id, owner=b.id)
    assert refused.value.reason is Reason.UNKNOWN_API_KEY
    assert await accounts.authenticate(a_first.text) is not None
    revoked = await accounts.revoke_key(a_first.key.id, owner=a.id)
    assert revoked.revoked_at is not None
    assert await accounts.authenticate(a_first.text) is None
    assert await accounts.authenticate(a_second.text) is not None
    again = await accounts.revoke_key(a_first.key.id)  # the operator's way: any owner
    assert again.revoked_at == revoked.revoked_at


async def test_a_keys_use_is_recorded_at_most_once_a_minute(pg_store: PostgresStore) -> None:
    _, issued = await Accounts(pg_store).create_account(Role.AGENT, "agent")
    key_id = issued.key.id
    await pg_store.touch_api_key(key_id, T0)
    await pg_store.touch_api_key(key_id, T0 + timedelta(seconds=59))
    found = await pg_store.find_api_key_by_prefix(issued.key.prefix)
    assert found is not None and found.key.last_used_at == T0
    await pg_store.touch_api_key(key_id, T0 + timedelta(seconds=60))
    found = await pg_store.find_api_key_by_prefix(issued.key.prefix)
    assert found is not None and found.key.last_used_at == T0 + timedelta(seconds=60)


async def test_an_expired_key_is_refused(pg_store: PostgresStore) -> None:
    past = Accounts(pg_store, now=lambda: datetime.now(UTC) - timedelta(hours=1))
    account, _ = await past.create_account(Role.AGENT, "agent")
    issued = await past.issue_key(account.id, expires_in=timedelta(minutes=5))
    assert await Accounts(pg_store).authenticate(issued.text) is None
    assert await past.authenticate(issued.text) is not None  # within its time


async def test_a_dev_instance_gets_one_operator(pg_store: PostgresStore) -> None:
    accounts = Accounts(pg_store)
    assert not await pg_store.active_operator_exists()
    issued = await accounts.ensure_operator(KeyMode.TEST)
    assert issued is not None and issued.text.startswith("pf_test_")
    caller = await accounts.authenticate(issued.text)
    assert caller is not None and caller.account.role is Role.OPERATOR
    assert await accounts.ensure_operator(KeyMode.TEST) is None
    await pg_store.revoke_account(caller.account.id, T0)
    assert not await pg_store.active_operator_exists()


@pytest.mark.parametrize(
    "values",
    [
        "'admin', 'x', NULL",
        "'provider', '', NULL",
        "'provider', repeat('x', 101), NULL",
        "'provider', 'x', 10001",
        "'provider', 'x', -1",
    ],
)
async def test_the_tables_refuse_what_the_checks_refuse(
    pg_store: PostgresStore, values: str
) -> None:
    with pytest.raises(IntegrityErrors):
        await execute_raw(
            pg_store,
            f"INSERT INTO accounts (id, role, name, fee_bps) VALUES ($1, {values})",
            uuid4(),
        )


async def test_a_key_hash_is_32_bytes_and_a_prefix_unique(pg_store: PostgresStore) -> None:
    account, issued = await Accounts(pg_store).create_account(Role.AGENT, "agent")
    insert = "INSERT INTO api_keys (id, account_id, prefix, secret_hash) VALUES ($1, $2, $3, $4)"
    with pytest.raises(IntegrityErrors):
        await execute_raw(pg_store, insert, uuid4(), account.id, "pf_live_short", b"x" * 31)
    with pytest.raises(IntegrityErrors):
        await execute_raw(
            pg_store, insert, uuid4(), account.id, issued.key.prefix, generate_key().secret_hash
        )
