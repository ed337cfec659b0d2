"""Spending policies in the store: proof of control, the policy check of
payfirst_queue_payment_v4 (exact under concurrency, reservations released by a failure),
held payments and their approval, and every process's policy cache told of a change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.accounts import Account, Role
from payfirst.domain.endpoints import Endpoint, Pricing
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import NewPayment, Token
from payfirst.domain.policies import PaymentFacts, SpendingPolicy, limit_for
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.usecases.accounts import Accounts
from payfirst.usecases.policies import Policies, PolicyCache, PolicyGate
from tests.fixtures.store import (
    execute_raw,
    fetch_raw,
    make_payment,
    random_address,
    register_token,
    stored_payment,
)

PRICE = 1_000_000


def sign(key: LocalAccount, message: str) -> str:
    return "0x" + bytes(key.sign_message(encode_defunct(text=message)).signature).hex()


async def agent(store: PostgresStore, name: str = "agent") -> Account:
    account, _ = await Accounts(store).create_account(Role.AGENT, name)
    return account


async def attach(store: PostgresStore, owner: Account) -> LocalAccount:
    """A new payer key, proved and attached to `owner`."""
    key: LocalAccount = EthAccount.create()
    policies = Policies(store)
    challenge = await policies.challenge(owner, key.address)
    payer, created = await policies.register(owner, key.address, sign(key, challenge.message))
    assert created and payer.address == key.address and payer.account_id == owner.id
    return key


async def with_policy(store: PostgresStore, **limits: object) -> tuple[Account, str, Token]:
    """An agent, its payer with a policy of `limits`, and a token of 1000 mints."""
    owner = await agent(store)
    key = await attach(store, owner)
    token = await register_token(store, max_mint_count=1000, price_per_mint=PRICE)
    await Policies(store).set_policy(owner, key.address, limits)
    return owner, key.address, token


def paying(token: Token, payer: str, amount: int = PRICE) -> NewPayment:
    return make_payment(token, payer=payer, amount=amount)


@contextlib.asynccontextmanager
async def other_process(store: PostgresStore) -> AsyncIterator[PostgresStore]:
    """Another store (its own pool and LISTEN connection) on the same schema: another API
    process."""
    other = await PostgresStore.connect(store._dsn, schema=store.schema, migrate=False)
    try:
        yield other
    finally:
        await other.close()


# --- proof of control -------------------------------------------------------------------


async def test_a_payer_is_attached_only_by_its_keys_signature_of_an_open_challenge(
    pg_store: PostgresStore,
) -> None:
    owner = await agent(pg_store)
    policies = Policies(pg_store)
    key: LocalAccount = EthAccount.create()
    stranger: LocalAccount = EthAccount.create()
    challenge = await policies.challenge(owner, key.address)
    assert str(owner.id) in challenge.message and key.address in challenge.message
    # Signed by another key, or another text: refused, nothing attached.
    for signature in (sign(stranger, challenge.message), sign(key, "payfirst")):
        with pytest.raises(PaymentRejected) as refused:
            await policies.register(owner, key.address, signature)
        assert refused.value.reason is Reason.INVALID_PAYER_PROOF
    assert await pg_store.get_agent_payer(key.address) is None
    good = sign(key, challenge.message)
    payer, created = await policies.register(owner, key.address, good)
    assert created and payer.account_id == owner.id
    # Used once: the same signature again proves nothing new.
    with pytest.raises(PaymentRejected) as again:
        await policies.register(owner, key.address, good)
    assert again.value.reason is Reason.INVALID_PAYER_PROOF
    # Another agent cannot take it, even with a proof of its own.
    other = await agent(pg_store, "other")
    theirs = await policies.challenge(other, key.address)
    with pytest.raises(PaymentRejected) as taken:
        await policies.register(other, key.address, sign(key, theirs.message))
    assert taken.value.reason is Reason.PAYER_TAKEN
    assert (await pg_store.get_agent_payer(key.address)).account_id == owner.id  # type: ignore[union-attr]


async def test_an_expired_challenge_proves_nothing(pg_store: PostgresStore) -> None:
    owner = await agent(pg_store)
    key: LocalAccount = EthAccount.create()
    past = Policies(pg_store, now=lambda: datetime.now(UTC) - timedelta(minutes=11))
    challenge = await past.challenge(owner, key.address)
    with pytest.raises(PaymentRejected) as refused:
        await Policies(pg_store).register(owner, key.address, sign(key, challenge.message))
    assert refused.value.reason is Reason.INVALID_PAYER_PROOF


# --- limits, exact under concurrency -------------------------------------------------------


async def test_100_concurrent_payments_against_a_daily_limit_that_fits_10_accept_exactly_10(
    pg_store: PostgresStore,
) -> None:
    _, payer, token = await with_policy(pg_store, max_per_day=str(10 * PRICE))
    payments = [paying(token, payer) for _ in range(100)]

    async def queue(store: PostgresStore, new: NewPayment) -> str:
        try:
            await store.queue_payment(new)
        except PaymentRejected as exc:
            return exc.reason.value
        return "created"

    # Four API processes, each coalescing its share into transactions of its own that race.
    async with (
        other_process(pg_store) as b,
        other_process(pg_store) as c,
        other_process(pg_store) as d,
    ):
        stores = [pg_store, b, c, d]
        outcomes = await asyncio.gather(*(queue(stores[i % 4], p) for i, p in enumerate(payments)))
    assert outcomes.count("created") == 10, outcomes
    assert outcomes.count(Reason.POLICY_DAILY_LIMIT.value) == 90
    rows = await fetch_raw(
        pg_store, "SELECT count(*) AS n FROM payment_queue WHERE payer = $1", payer
    )
    assert rows[0]["n"] == 10
    # The refused ones reserved no supply either.
    assert (await pg_store.get_token(token.address)).reserved_count == 10  # type: ignore[union-attr]


async def test_a_failed_payment_releases_its_reservation(pg_store: PostgresStore) -> None:
    _, payer, token = await with_policy(pg_store, max_per_day=str(2 * PRICE))
    first = paying(token, payer)
    assert (await pg_store.queue_payment(first)).created
    assert (await pg_store.queue_payment(paying(token, payer))).created
    with pytest.raises(PaymentRejected) as full:
        await pg_store.queue_payment(paying(token, payer))
    assert full.value.reason is Reason.POLICY_DAILY_LIMIT
    assert await pg_store.fail_payment(first.id, PaymentStatus.FAILED, "insufficient_funds: x")
    assert (await pg_store.queue_payment(paying(token, payer))).created
    # The same payment sent again is its duplicate, never a second reservation.
    again = await pg_store.queue_payment(replace(first, id=UUID(int=1)))
    assert again.payment_id == first.id and not again.created


async def test_the_day_is_a_rolling_24_hours(pg_store: PostgresStore) -> None:
    _, payer, token = await with_policy(pg_store, max_per_day=str(2 * PRICE))
    old = paying(token, payer)
    assert (await pg_store.queue_payment(old)).created
    await execute_raw(
        pg_store,
        "UPDATE payment_queue SET created_at = now() - interval '24 hours 1 second' WHERE id = $1",
        old.id,
    )
    assert (await pg_store.queue_payment(paying(token, payer))).created
    assert (await pg_store.queue_payment(paying(token, payer))).created
    with pytest.raises(PaymentRejected) as refused:
        await pg_store.queue_payment(paying(token, payer))
    assert refused.value.reason is Reason.POLICY_DAILY_LIMIT


async def test_the_month_is_the_calendar_month_utc(pg_store: PostgresStore) -> None:
    _, payer, token = await with_policy(
        pg_store, max_per_day=str(10 * PRICE), max_per_month=str(3 * PRICE)
    )
    last_month = paying(token, payer)
    assert (await pg_store.queue_payment(last_month)).created
    month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    await execute_raw(
        pg_store,
        "UPDATE payment_queue SET created_at = $2 WHERE id = $1",
        last_month.id,
        month_start - timedelta(seconds=1),
    )
    for _ in range(3):
        assert (await pg_store.queue_payment(paying(token, payer))).created
    with pytest.raises(PaymentRejected) as refused:
        await pg_store.queue_payment(paying(token, payer))
    assert refused.value.reason is Reason.POLICY_MONTHLY_LIMIT


async def test_per_payment_limits_assets_and_allow_lists(pg_store: PostgresStore) -> None:
    owner, payer, token = await with_policy(pg_store)
    other_token = await register_token(pg_store, max_mint_count=10)
    policies = Policies(pg_store)
    cases: list[tuple[dict[str, object], NewPayment, Reason | None]] = [
        (
            {"max_per_payment": str(PRICE)},
            paying(token, payer, 2 * PRICE),
            Reason.POLICY_MAX_PER_PAYMENT,
        ),
        ({"max_per_payment": str(PRICE)}, paying(token, payer), None),
        # An asset the limit does not name may not be spent; "*" names every other one.
        (
            {"max_per_payment": {token.payment_asset: str(PRICE)}},
            paying(other_token, payer),
            Reason.POLICY_MAX_PER_PAYMENT,
        ),
        (
            {"max_per_payment": {token.payment_asset: "0", "*": str(PRICE)}},
            paying(other_token, payer),
            None,
        ),
        (
            {"allowed_pay_to": [token.address.lower()]},
            paying(other_token, payer),
            Reason.POLICY_NOT_ALLOWED,
        ),
        ({"allowed_pay_to": [token.address.lower()]}, paying(token, payer), None),
        ({"allowed_networks": ["eip155:8453"]}, paying(token, payer), Reason.POLICY_NOT_ALLOWED),
        ({"allowed_networks": ["eip155:31337"]}, paying(token, payer), None),
        ({"allowed_providers": [str(owner.id)]}, paying(token, payer), Reason.POLICY_NOT_ALLOWED),
        ({"allowed_endpoints": []}, paying(token, payer), Reason.POLICY_NOT_ALLOWED),
    ]
    for limits, payment, reason in cases:
        await policies.set_policy(owner, payer, limits)
        if reason is None:
            assert (await pg_store.queue_payment(payment)).created, limits
            continue
        with pytest.raises(PaymentRejected) as refused:
            await pg_store.queue_payment(payment)
        assert refused.value.reason is reason, limits
        assert await pg_store.get_payment(payment.id) is None


async def test_providers_and_endpoints_are_those_of_the_payment(pg_store: PostgresStore) -> None:
    owner, payer, token = await with_policy(pg_store)
    provider = await Accounts(pg_store).create_account(Role.PROVIDER, "provider")
    now = datetime.now(UTC)
    endpoint = Endpoint(
        id=uuid4(),
        provider_id=provider[0].id,
        method="GET",
        resource="/weather",
        pricing=Pricing.FIXED,
        amount=PRICE,
        unit_param=None,
        max_units=None,
        asset=token.payment_asset,
        chain_id=31337,
        pay_to=random_address(),
        description="",
        mime_type="application/json",
        input_schema=None,
        output_schema=None,
        discoverable=False,
        max_timeout_seconds=60,
        created_at=now,
        updated_at=now,
    )
    await pg_store.create_endpoint(endpoint)

    def sale(*, collected: bool) -> NewPayment:
        """A settlement for the endpoint: the provider recorded when the platform collects."""
        mint = paying(token, payer)
        return replace(
            mint,
            payment_type=PaymentType.SETTLE,
            pay_to=endpoint.pay_to,
            authorization=replace(mint.authorization, to=endpoint.pay_to),
            chain_id=31337,
            endpoint_id=endpoint.id,
            provider_id=provider[0].id if collected else None,
            fee_bps=0 if collected else None,
        )

    policies = Policies(pg_store)
    for limits, allowed in (
        ({"allowed_providers": [str(provider[0].id)]}, True),
        ({"allowed_providers": [str(owner.id)]}, False),
        ({"allowed_endpoints": [str(endpoint.id)]}, True),
        ({"allowed_endpoints": [str(uuid4())]}, False),
    ):
        await policies.set_policy(owner, payer, limits)
        for collected in (True, False):  # the provider: recorded, or the endpoint's
            payment = sale(collected=collected)
            if allowed:
                assert (await pg_store.queue_payment(payment)).created, limits
            else:
                with pytest.raises(PaymentRejected) as refused:
                    await pg_store.queue_payment(payment)
                assert refused.value.reason is Reason.POLICY_NOT_ALLOWED


async def test_a_payer_without_a_policy_is_not_limited(pg_store: PostgresStore) -> None:
    owner = await agent(pg_store)
    key = await attach(pg_store, owner)
    token = await register_token(pg_store, max_mint_count=1000)
    for _ in range(3):
        assert (await pg_store.queue_payment(paying(token, key.address, 10**12))).created
    await Policies(pg_store).set_policy(owner, key.address, {"max_per_day": "1"})
    await Policies(pg_store).remove_policy(owner, key.address)
    assert (await pg_store.queue_payment(paying(token, key.address, 10**12))).created


# --- approval -----------------------------------------------------------------------------


async def test_a_payment_above_the_threshold_waits_for_its_owner(pg_store: PostgresStore) -> None:
    owner, payer, token = await with_policy(
        pg_store, approval_threshold=str(PRICE), max_per_day=str(4 * PRICE)
    )
    small = paying(token, payer)
    big = paying(token, payer, 2 * PRICE)
    assert not (await pg_store.queue_payment(small)).held
    held = await pg_store.queue_payment(big)
    assert held.created and held.held
    assert (await stored_payment(pg_store, big.id)).status is PaymentStatus.AWAITING_APPROVAL
    # Held, it is never claimed, and still reserves against the limit.
    pending = await pg_store.list_payments(PaymentStatus.PENDING, 100, chain_id=token.chain_id)
    assert [p.id for p in pending] == [small.id]
    with pytest.raises(PaymentRejected) as full:
        await pg_store.queue_payment(paying(token, payer, 2 * PRICE))
    assert full.value.reason is Reason.POLICY_DAILY_LIMIT
    policies = Policies(pg_store)
    # Another agent sees nothing and decides nothing.
    stranger = await agent(pg_store, "stranger")
    assert await policies.awaiting_approval(stranger, 10) == []
    with pytest.raises(PaymentRejected) as unknown:
        await policies.decide(stranger, big.id, approve=True)
    assert unknown.value.reason is Reason.UNKNOWN_PAYMENT
    assert [p.id for p in await policies.awaiting_approval(owner, 10)] == [big.id]
    approved = await policies.decide(owner, big.id, approve=True)
    assert approved.status is PaymentStatus.PENDING
    with pytest.raises(PaymentRejected):
        await policies.decide(owner, big.id, approve=False)  # decided once


async def test_a_rejected_payment_fails_and_releases_what_it_held(pg_store: PostgresStore) -> None:
    owner, payer, token = await with_policy(
        pg_store, approval_threshold=str(PRICE), max_per_day=str(2 * PRICE)
    )
    big = paying(token, payer, 2 * PRICE)
    assert (await pg_store.queue_payment(big)).held
    assert (await pg_store.get_token(token.address)).reserved_count == 1  # type: ignore[union-attr]
    rejected = await Policies(pg_store).decide(owner, big.id, approve=False)
    assert rejected.status is PaymentStatus.FAILED
    assert rejected.error is not None and rejected.error.startswith("payment_rejected")
    assert (await pg_store.get_token(token.address)).reserved_count == 0  # type: ignore[union-attr]
    assert (await pg_store.queue_payment(paying(token, payer, 2 * PRICE))).held


async def test_a_held_payment_whose_authorization_expires_can_be_failed_by_the_sender(
    pg_store: PostgresStore,
) -> None:
    _, payer, token = await with_policy(pg_store, approval_threshold="0")
    held = paying(token, payer)
    held = replace(held, authorization=replace(held.authorization, valid_before=1_000))
    assert (await pg_store.queue_payment(held)).held
    # What Sender._fail_expired does for held payments.
    expiring = await pg_store.list_payments(
        PaymentStatus.AWAITING_APPROVAL, 10, expiring_before=2_000, chain_id=token.chain_id
    )
    assert [p.id for p in expiring] == [held.id]
    assert await pg_store.fail_payment(
        held.id, PaymentStatus.FAILED, "expired", only_from=PaymentStatus.AWAITING_APPROVAL
    )
    assert (await pg_store.get_token(token.address)).reserved_count == 0  # type: ignore[union-attr]


# --- the accept paths' cache ------------------------------------------------------------------


async def test_a_change_made_by_one_process_reaches_every_other_process_cache_at_once(
    pg_store: PostgresStore,
) -> None:
    owner, payer, token = await with_policy(pg_store, max_per_payment=str(PRICE))
    facts = PaymentFacts(
        amount=2 * PRICE, asset=token.payment_asset, pay_to=token.address, chain_id=31337
    )
    async with other_process(pg_store) as api:
        gate = PolicyGate(PolicyCache(api))
        with pytest.raises(PaymentRejected) as refused:
            await gate.check(payer, facts)
        assert refused.value.reason is Reason.POLICY_MAX_PER_PAYMENT
        assert payer in gate.cache._entries  # read once, then cached
        # Told after the cache (watchers run in the order they were added).
        notices: asyncio.Queue[str | None] = asyncio.Queue()
        await api.watch_policy_changes(notices.put_nowait)
        await Policies(pg_store).set_policy(owner, payer, {"max_per_payment": str(3 * PRICE)})
        assert await asyncio.wait_for(notices.get(), 10) == payer
        assert payer not in gate.cache._entries
        await gate.check(payer, facts)  # the new policy, no TTL waited for
        await Policies(pg_store).remove_payer(owner, payer)
        while await asyncio.wait_for(notices.get(), 10) != payer:
            pass
        assert await gate.cache.get(payer) is None


def test_policy_limits_fall_back_as_the_client_library_does() -> None:
    policy = SpendingPolicy(payer="0x0", max_per_payment={"0xA": 5, "*": 7})
    assert limit_for(policy.max_per_payment, "0xA") == 5
    assert limit_for(policy.max_per_payment, "0xB") == 7
    assert limit_for({"0xA": 5}, "0xB") == 0
    assert limit_for(None, "0xB") is None
    assert limit_for({"0xA": 5}, "0xB", None) is None
