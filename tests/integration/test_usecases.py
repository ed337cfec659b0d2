"""The purchase and facilitation use cases without HTTP: on the real PostgreSQL store, a
FakeChain, and a change signal the tests fire themselves."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

import pytest

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import StoreChanges
from payfirst.api.waiters import PaymentWaiters
from payfirst.client.signing import Payer
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Token
from payfirst.domain.networks import Network
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus
from payfirst.ports.chain import AuthorizationRef
from payfirst.ports.store import Store
from payfirst.usecases.deps import CannotWait, ServedNetwork, ServedNetworks
from payfirst.usecases.facilitation import (
    Facilitator,
    Invalid,
    Settled,
    SettleFailed,
    SettlePending,
    Valid,
)
from payfirst.usecases.purchase import MintOrder, MintSales, PaymentNeeded, Queued
from payfirst.x402 import (
    PaymentPayloadV2,
    PaymentRequirementsV2,
    VerifyRequest,
    mint_requirements_v2,
)
from tests.fakes.chain import FakeChain
from tests.fixtures.store import execute_raw, random_address, register_token, stored_payment

RESOURCE = "http://127.0.0.1/api/mint"
PAYER = Payer(ANVIL_KEYS[1])
PAY_TO = random_address()
MIN_SETTLE = 1000
AMOUNT = 10_000
TX_HASH = "0x" + "ab" * 32
PROMPT_S = 5.0


class StoreTokens:
    """The Tokens dependency straight from the store (no cache)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, address: str) -> Token | None:
        return await self._store.get_token(address)

    async def all(self) -> list[Token]:
        return await self._store.list_tokens()


@dataclass
class CountingLimit:
    taken: list[str] = field(default_factory=list)

    def take(self, key: str) -> None:
        self.taken.append(key)


@dataclass
class Wakes:
    count: int = 0

    def __call__(self) -> None:
        self.count += 1


@dataclass(frozen=True)
class _Signal:
    event: asyncio.Event

    def clear(self) -> None:
        self.event.clear()

    async def wait(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout_s)
        return self.event.is_set()


class FiredChanges:
    """PaymentChanges the test fires by hand; `watching` is set once someone waits."""

    def __init__(self) -> None:
        self.full = False
        self.watching = asyncio.Event()
        self._events: dict[UUID, asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def watch(self, payment_id: UUID) -> AsyncIterator[_Signal]:
        if self.full:
            raise CannotWait
        event = self._events[payment_id] = asyncio.Event()
        self.watching.set()
        try:
            yield _Signal(event)
        finally:
            del self._events[payment_id]

    def fire(self, payment_id: UUID) -> None:
        self._events[payment_id].set()


def mint_order(token: Token, quantity: int = 1, **headers: str) -> MintOrder:
    return MintOrder(token.address, quantity, RESOURCE, headers)


def signed_mint_order(token: Token, quantity: int = 1, signed_for: int | None = None) -> MintOrder:
    requirements = mint_requirements_v2(token, signed_for or quantity, RESOURCE)
    return mint_order(token, quantity, **{"PAYMENT-SIGNATURE": PAYER.pay_v2(requirements)})


def sales(store: Store, wakes: Wakes | None = None) -> MintSales:
    return MintSales(
        store=store,
        tokens=store.get_token,
        clock=time.time,
        per_payer=CountingLimit(),
        on_payment_queued=wakes or Wakes(),
    )


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(PROMPT_S):
        while not condition():  # noqa: ASYNC110 (a condition of the code under test)
            await asyncio.sleep(0.01)


async def queued_count(store: Store) -> int:
    return sum((await store.count_payments_by_status()).values())


# --- mint acceptance ----------------------------------------------------------------------


async def test_mint_payment_is_verified_and_queued(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store, chain_id=31337)
    wakes = Wakes()
    result = await sales(pg_store, wakes).accept(signed_mint_order(token, quantity=2))
    assert isinstance(result, Queued)
    assert result.created and result.quantity == 2
    payment = await stored_payment(pg_store, result.payment_id)
    assert payment.status is PaymentStatus.PENDING
    assert payment.payer == PAYER.address
    assert payment.amount == 2 * token.price_per_mint
    assert payment.metadata == {"x402Version": 2, "resource": RESOURCE}
    assert wakes.count == 1


async def test_without_a_payment_the_requirements_are_needed(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store, chain_id=31337)
    result = await sales(pg_store).accept(mint_order(token, 3))
    assert result == PaymentNeeded(token, 3, RESOURCE)
    assert result.reason == "payment required" and result.message == ""


async def test_a_payment_for_another_quantity_is_refused_with_requirements(
    pg_store: PostgresStore,
) -> None:
    token = await register_token(pg_store, chain_id=31337)
    result = await sales(pg_store).accept(signed_mint_order(token, quantity=1, signed_for=2))
    assert isinstance(result, PaymentNeeded)
    assert result.refusal is not None
    assert result.reason == Reason.INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH
    assert await queued_count(pg_store) == 0


async def test_zero_value_payment_is_refused(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store, chain_id=31337, price_per_mint=0)
    with pytest.raises(PaymentRejected) as refused:
        await sales(pg_store).accept(signed_mint_order(token))
    assert refused.value.reason is Reason.INVALID_PAYMENT_REQUIREMENTS
    assert await queued_count(pg_store) == 0


async def test_unknown_token_and_non_address(pg_store: PostgresStore) -> None:
    with pytest.raises(PaymentRejected) as unknown:
        await sales(pg_store).accept(MintOrder(random_address(), 1, RESOURCE, {}))
    assert unknown.value.reason is Reason.UNKNOWN_TOKEN
    with pytest.raises(PaymentRejected) as malformed:
        await sales(pg_store).accept(MintOrder("0x1234", 1, RESOURCE, {}))
    assert malformed.value.reason is Reason.INVALID_TOKEN_ADDRESS


async def test_a_replayed_header_is_the_same_payment(pg_store: PostgresStore) -> None:
    token = await register_token(pg_store, chain_id=31337)
    wakes = Wakes()
    use_case = sales(pg_store, wakes)
    order = signed_mint_order(token)
    first = await use_case.accept(order)
    again = await use_case.accept(order)
    assert isinstance(first, Queued) and isinstance(again, Queued)
    assert first.created and not again.created
    assert again.payment_id == first.payment_id
    assert wakes.count == 1


# --- facilitation ---------------------------------------------------------------------------


@dataclass
class Setup:
    store: PostgresStore
    chain: FakeChain
    changes: FiredChanges
    wakes: Wakes
    asset: str

    def facilitator(self, settle_timeout_s: float = 30.0) -> Facilitator:
        return Facilitator(
            store=self.store,
            networks=ServedNetworks([ServedNetwork(Network("eip155:31337", 31337), self.chain)]),
            tokens=StoreTokens(self.store),
            clock=time.time,
            per_payer=CountingLimit(),
            changes=self.changes,
            on_payment_queued=self.wakes,
            settle_pay_to=frozenset({PAY_TO}),
            min_settle_amount=MIN_SETTLE,
            settle_timeout_s=settle_timeout_s,
        )


@pytest.fixture
async def setup(pg_store: PostgresStore) -> Setup:
    token = await register_token(pg_store, chain_id=31337)
    chain = FakeChain()
    chain.balances_of[(token.payment_asset.lower(), PAYER.address.lower())] = 10**12
    return Setup(pg_store, chain, FiredChanges(), Wakes(), token.payment_asset)


def settle_request(asset: str, pay_to: str = PAY_TO, amount: int = AMOUNT) -> VerifyRequest:
    requirements = PaymentRequirementsV2(
        scheme="exact",
        network="eip155:31337",
        amount=str(amount),
        asset=asset,
        pay_to=pay_to,
        max_timeout_seconds=60,
        extra={"name": "USDC", "version": "2"},
    )
    payload = PaymentPayloadV2(accepted=requirements, payload=PAYER.authorize(requirements))
    return VerifyRequest(x402_version=2, payment_payload=payload, payment_requirements=requirements)


def nonce_of(request: VerifyRequest) -> str:
    nonce: Any = request.payment_payload.payload["authorization"]["nonce"]
    return str(nonce)


async def test_verify_accepts_a_payable_authorization(setup: Setup) -> None:
    verdict = await setup.facilitator().verify(settle_request(setup.asset))
    assert verdict == Valid(PAYER.address)


@pytest.mark.parametrize(
    ("pay_to", "amount"),
    [(random_address(), AMOUNT), (PAY_TO, MIN_SETTLE - 1)],
    ids=["unlisted-pay-to", "dust"],
)
async def test_verify_refuses_what_it_would_not_spend_gas_on(
    setup: Setup, pay_to: str, amount: int
) -> None:
    verdict = await setup.facilitator().verify(settle_request(setup.asset, pay_to, amount))
    assert isinstance(verdict, Invalid)
    assert verdict.reason is Reason.INVALID_PAYMENT_REQUIREMENTS
    assert verdict.payer == PAYER.address


async def test_verify_refuses_an_insufficient_balance(setup: Setup) -> None:
    setup.chain.balances_of[(setup.asset.lower(), PAYER.address.lower())] = AMOUNT - 1
    verdict = await setup.facilitator().verify(settle_request(setup.asset))
    assert isinstance(verdict, Invalid)
    assert verdict.reason is Reason.INSUFFICIENT_FUNDS


async def test_verify_refuses_an_authorization_used_on_chain(setup: Setup) -> None:
    request = settle_request(setup.asset)
    ref = AuthorizationRef(setup.asset, PAYER.address, nonce_of(request))
    setup.chain.use_authorization(ref, TX_HASH, setup.chain.head)
    verdict = await setup.facilitator().verify(request)
    assert isinstance(verdict, Invalid)
    assert verdict.reason is Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED


async def test_verify_refuses_an_authorization_already_submitted(setup: Setup) -> None:
    request = settle_request(setup.asset)
    facilitator = setup.facilitator(settle_timeout_s=0.0)
    assert isinstance(await facilitator.settle(request, {}), SettlePending)
    verdict = await facilitator.verify(request)
    assert isinstance(verdict, Invalid)
    assert verdict.reason is Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED


async def test_settle_refuses_an_unlisted_pay_to_before_queueing(setup: Setup) -> None:
    with pytest.raises(PaymentRejected) as refused:
        await setup.facilitator().settle(settle_request(setup.asset, random_address()), {})
    assert refused.value.reason is Reason.INVALID_PAYMENT_REQUIREMENTS
    assert await queued_count(setup.store) == 0
    assert setup.wakes.count == 0


async def test_settle_answers_success_once_the_payment_completes(setup: Setup) -> None:
    request = settle_request(setup.asset)
    # A long timeout: only the fired change can end the wait in time.
    settling = asyncio.create_task(setup.facilitator(settle_timeout_s=60.0).settle(request, {}))
    await asyncio.wait_for(setup.changes.watching.wait(), PROMPT_S)
    assert not settling.done()
    payment = await setup.store.find_payment(PAYER.address, nonce_of(request))
    assert payment is not None and payment.status is PaymentStatus.PENDING
    assert setup.wakes.count == 1
    await execute_raw(
        setup.store,
        "UPDATE payment_queue SET status = 'completed', tx_hash = $2 WHERE id = $1",
        payment.id,
        TX_HASH,
    )
    setup.changes.fire(payment.id)
    outcome = await asyncio.wait_for(settling, PROMPT_S)
    assert isinstance(outcome, Settled)
    assert outcome.payment.id == payment.id
    assert outcome.payment.tx_hash == TX_HASH


async def test_settle_is_woken_by_the_stores_change_notice(setup: Setup) -> None:
    """The HTTP layer's PaymentChanges: woken by PostgreSQL NOTIFY, never by polling."""
    waiters = PaymentWaiters(max_waiters=10)
    facilitator = replace(
        setup.facilitator(settle_timeout_s=60.0), changes=StoreChanges(waiters, setup.store)
    )
    request = settle_request(setup.asset)
    settling = asyncio.create_task(facilitator.settle(request, {}))
    await until(lambda: waiters.count == 1)
    payment = await setup.store.find_payment(PAYER.address, nonce_of(request))
    assert payment is not None
    await execute_raw(
        setup.store,
        "UPDATE payment_queue SET status = 'completed', tx_hash = $2 WHERE id = $1",
        payment.id,
        TX_HASH,
    )
    outcome = await asyncio.wait_for(settling, PROMPT_S)
    assert isinstance(outcome, Settled)
    assert outcome.payment.tx_hash == TX_HASH
    assert waiters.count == 0


async def test_settle_past_the_timeout_is_pending_with_the_tx_hash(setup: Setup) -> None:
    request = settle_request(setup.asset)
    facilitator = setup.facilitator(settle_timeout_s=0.01)
    first = await facilitator.settle(request, {})
    assert isinstance(first, SettlePending)
    assert first.payment.tx_hash is None
    await execute_raw(
        setup.store,
        "UPDATE payment_queue SET status = 'sent', tx_hash = $2 WHERE id = $1",
        first.payment.id,
        TX_HASH,
    )
    again = await facilitator.settle(request, {})
    assert isinstance(again, SettlePending)
    assert again.payment.id == first.payment.id
    assert again.payment.status is PaymentStatus.SENT
    assert again.payment.tx_hash == TX_HASH
    assert setup.wakes.count == 1  # queued once, never twice


async def test_settle_of_a_failed_payment_reports_its_reason(setup: Setup) -> None:
    request = settle_request(setup.asset)
    facilitator = setup.facilitator(settle_timeout_s=0.0)
    first = await facilitator.settle(request, {})
    await execute_raw(
        setup.store,
        "UPDATE payment_queue SET status = 'failed', error = $2 WHERE id = $1",
        first.payment.id,
        "insufficient_funds: balance 0",
    )
    outcome = await facilitator.settle(request, {})
    assert isinstance(outcome, SettleFailed)
    assert outcome.reason is Reason.INSUFFICIENT_FUNDS


async def test_settle_with_too_many_waiters_answers_at_once(setup: Setup) -> None:
    setup.changes.full = True
    outcome = await setup.facilitator(settle_timeout_s=60.0).settle(settle_request(setup.asset), {})
    assert isinstance(outcome, SettlePending)
    assert outcome.payment.status is PaymentStatus.PENDING
