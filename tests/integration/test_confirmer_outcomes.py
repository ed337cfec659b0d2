"""Every outcome of the confirmer, on a fake chain: the real `Confirmer` reads the chain
through the Chain port (tests.fakes.chain.FakeChain) and decides sent payments and mint
items in the real store. Each case states the chain's facts at the decision block (head
minus DEPTH) and what the payment or mint item must become; what is absent or unknown
must never move anything forward (or fail it)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.domain.models import MintItem, Payment, SignedTx, Token
from payfirst.domain.settings import RuntimeSettings
from payfirst.domain.statuses import MintStatus, PaymentStatus
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.confirmer import MAX_MINT_ATTEMPTS, Confirmer, authorization_of
from payfirst.pipeline.relayer import Relayer, fees_for
from payfirst.ports.chain import AuthorizationRef, Receipt
from tests.fakes.chain import BLOCK_TIME_S, GENESIS_TIME, FakeChain
from tests.fixtures.store import make_payment, queue_payments, register_token, stored_payment

#: The chain of the tokens `make_token` builds, so of their payments.
CHAIN = 31337

DEPTH = 2
SETTINGS = RuntimeSettings(confirmation_depth=DEPTH)
RELAYER = Relayer.from_key(ANVIL_KEYS[0], 31337)
SETTLER = "0x" + "5e" * 20
FEES = fees_for(10**9)


@dataclass
class Env:
    store: PostgresStore
    chain: FakeChain
    token: Token
    confirmer: Confirmer

    async def send(self, *, valid_before: int | None = None) -> Payment:
        """One payment claimed in its own direct tx and marked sent."""
        new = make_payment(self.token)
        if valid_before is not None:
            new = replace(new, authorization=replace(new.authorization, valid_before=valid_before))
        assert (await self.store.queue_payment(new)).created

        def sign(payment: Payment, nonce: int) -> SignedTx:
            return RELAYER.sign_call(payment.payment_asset, "0x", nonce, 120_000, FEES)

        (claimed,) = await self.store.claim_payments(RELAYER.address, 1, sign, chain_id=CHAIN)
        return await self._sent(claimed)

    async def send_batch(self, count: int) -> list[Payment]:
        """`count` payments in ONE settle tx to the BatchSettler, marked sent."""
        await queue_payments(self.store, self.token, count)

        def sign(payments: list[Payment], nonce: int) -> SignedTx:
            return RELAYER.sign_call(SETTLER, "0x", nonce, 500_000, FEES)

        claimed = await self.store.claim_payments_one_tx(
            RELAYER.address, count, sign, chain_id=CHAIN
        )
        assert len(claimed) == count
        return [await self._sent(p) for p in claimed]

    async def send_mints(self, payment: Payment) -> list[MintItem]:
        """The completed payment's pending mint items in one batchMint tx, marked sent."""
        items = await self.store.get_mint_items(payment.id)

        def sign(batch: list[MintItem], nonce: int) -> SignedTx:
            return RELAYER.sign_call(self.token.address, "0x", nonce, 200_000, FEES)

        claimed = await self.store.claim_mint_items(
            RELAYER.address, [m.id for m in items], sign, chain_id=CHAIN
        )
        assert claimed and claimed[0].tx_hash is not None
        await self.store.mark_sent([claimed[0].tx_hash])
        return await self.store.get_mint_items(payment.id)

    async def _sent(self, payment: Payment) -> Payment:
        assert payment.tx_hash is not None
        await self.store.mark_sent([payment.tx_hash])
        return await stored_payment(self.store, payment.id)

    def mine(self, payment: Payment, *, to: str | None = None, success: bool = True) -> Receipt:
        """The payment's tx mined in a new head block, consuming its relayer nonce; if it
        succeeds, it uses the payment's authorization."""
        assert payment.tx_hash is not None
        receipt = self.chain.mine(
            payment.tx_hash,
            to=to or payment.payment_asset,
            success=success,
            uses=[authorization_of(payment)],
        )
        self.nonce_past(payment)
        return receipt

    def mine_mints(self, items: list[MintItem], *, success: bool = True) -> Receipt:
        """The items' batchMint tx mined in a new head block, consuming its nonce."""
        assert items[0].tx_hash is not None
        mints = [(m.token_address, m.mint_id) for m in items]
        receipt = self.chain.mine(
            items[0].tx_hash, to=self.token.address, success=success, mints=mints
        )
        self.nonce_past(items[0])
        return receipt

    def nonce_past(self, tx: Payment | MintItem) -> None:
        """The relayer's transaction count past `tx`'s nonce, from the head block on."""
        assert tx.tx_nonce is not None
        self.chain.set_nonce(RELAYER.address, tx.tx_nonce + 1)

    async def confirm(self) -> int:
        return await self.confirmer.run_once(SETTINGS)

    async def now(self, payment: Payment) -> Payment:
        return await stored_payment(self.store, payment.id)


@pytest.fixture
async def env(pg_store: PostgresStore) -> Env:
    chain = FakeChain()
    token = await register_token(pg_store)
    return Env(pg_store, chain, token, Confirmer(Broadcaster(pg_store, chain, RELAYER)))


# -- settled ------------------------------------------------------------------------------


async def test_a_receipt_waits_for_depth_then_completes_with_its_mint_items(env: Env) -> None:
    payment = await env.send()
    env.mine(payment)
    env.chain.mine_blocks(DEPTH - 1)  # one block short of the depth
    assert await env.confirm() == 0
    assert (await env.now(payment)).status is PaymentStatus.SENT
    env.chain.mine_blocks(1)
    assert await env.confirm() == 1
    done = await env.now(payment)
    assert done.status is PaymentStatus.COMPLETED
    assert done.tx_hash == payment.tx_hash
    items = await env.store.get_mint_items(payment.id)
    assert [m.status for m in items] == [MintStatus.PENDING] * payment.quantity


async def test_an_authorization_used_by_another_tx_completes_with_that_tx(env: Env) -> None:
    payment = await env.send()
    front_runner = "0x" + "f1" * 32
    env.chain.use_authorization(authorization_of(payment), front_runner, env.chain.mine_blocks())
    env.nonce_past(payment)  # payfirst's own tx then failed or was replaced: no receipt
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == 1
    done = await env.now(payment)
    assert done.status is PaymentStatus.COMPLETED
    assert done.tx_hash == front_runner


async def test_an_authorization_used_by_a_tx_not_found_waits(env: Env) -> None:
    payment = await env.send()
    env.chain.use_authorization(
        authorization_of(payment), "0x" + "f1" * 32, env.chain.mine_blocks()
    )
    env.nonce_past(payment)
    env.chain.mine_blocks(DEPTH)
    env.chain.reject_log_lookups = True  # the node will not search the logs
    assert await env.confirm() == 0
    assert (await env.now(payment)).status is PaymentStatus.SENT


# -- absent and unknown facts -----------------------------------------------------------


async def test_a_mined_tx_whose_receipt_the_node_lost_is_no_evidence(env: Env) -> None:
    payment = await env.send()
    env.mine(payment)
    env.chain.mine_blocks(DEPTH)
    env.chain.forget_receipt(payment.tx_hash or "")
    env.chain.unknown_states.add(authorization_of(payment).normalized())
    assert await env.confirm() == 0  # nonce consumed, no receipt, state unknown: wait
    assert (await env.now(payment)).status is PaymentStatus.SENT
    env.chain.unknown_states.clear()  # now the state (used) and its log are readable
    assert await env.confirm() == 1
    done = await env.now(payment)
    assert done.status is PaymentStatus.COMPLETED
    assert done.tx_hash == payment.tx_hash


async def test_not_mined_and_not_expired_waits(env: Env) -> None:
    payment = await env.send()
    env.chain.mine_blocks(10 * DEPTH)
    assert await env.confirm() == 0
    assert (await env.now(payment)).status is PaymentStatus.SENT


# -- requeued -------------------------------------------------------------------------------


async def test_a_dropped_tx_with_the_authorization_unused_is_requeued(env: Env) -> None:
    payment = await env.send()
    env.chain.mine_blocks()
    env.nonce_past(payment)  # another tx of the relayer key took the nonce
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == 0
    requeued = await env.now(payment)
    assert requeued.status is PaymentStatus.PENDING
    assert requeued.tx_hash is None and requeued.tx_nonce is None
    assert requeued.error is not None and "dropped" in requeued.error


async def test_a_dropped_tx_is_not_requeued_before_the_nonce_is_consumed_at_depth(
    env: Env,
) -> None:
    payment = await env.send()
    env.chain.mine_blocks()
    env.nonce_past(payment)
    env.chain.mine_blocks(DEPTH - 1)  # consumed above the decision block only
    assert await env.confirm() == 0
    assert (await env.now(payment)).status is PaymentStatus.SENT


async def test_a_whole_settle_batch_reverted_requeues_every_payment(env: Env) -> None:
    batch = await env.send_batch(3)
    env.mine(batch[0], to=SETTLER, success=False)
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == 0
    for payment in batch:
        now = await env.now(payment)
        assert now.status is PaymentStatus.PENDING
        assert now.error is not None and "reverted" in now.error


# -- failed ---------------------------------------------------------------------------------


async def test_an_item_failed_inside_a_settled_batch_fails_alone(env: Env) -> None:
    paid, refused = await env.send_batch(2)
    env.mine(paid, to=SETTLER)
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == 2
    assert (await env.now(paid)).status is PaymentStatus.COMPLETED
    failed = await env.now(refused)
    assert failed.status is PaymentStatus.CONFIRMATION_FAILED
    assert failed.error is not None and "inside the batch" in failed.error


async def test_a_reverted_direct_call_fails(env: Env) -> None:
    payment = await env.send()
    env.mine(payment, success=False)
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == 1
    failed = await env.now(payment)
    assert failed.status is PaymentStatus.CONFIRMATION_FAILED
    assert failed.error is not None and "reverted" in failed.error


async def test_unmined_past_valid_before_at_the_decision_block_fails(env: Env) -> None:
    decision_block = env.chain.head - DEPTH
    expired_at = GENESIS_TIME + BLOCK_TIME_S * decision_block
    payment = await env.send(valid_before=expired_at)
    still_valid = await env.send(valid_before=expired_at + BLOCK_TIME_S)
    assert await env.confirm() == 1
    failed = await env.now(payment)
    assert failed.status is PaymentStatus.CONFIRMATION_FAILED
    assert failed.error is not None and "expired" in failed.error
    # Valid at the decision block, even if not at the head: it can still be mined.
    assert (await env.now(still_valid)).status is PaymentStatus.SENT


async def test_an_expired_authorization_in_unknown_state_never_fails(env: Env) -> None:
    payment = await env.send(valid_before=GENESIS_TIME)
    env.chain.unknown_states.add(authorization_of(payment).normalized())
    assert await env.confirm() == 0
    assert (await env.now(payment)).status is PaymentStatus.SENT


# -- reorgs: back, never forward ------------------------------------------------------------


async def test_a_receipt_removed_by_a_reorg_before_depth_is_not_counted(env: Env) -> None:
    payment = await env.send()
    mined = env.mine(payment)
    env.chain.mine_blocks(DEPTH - 1)
    assert await env.confirm() == 0
    env.chain.reorg(
        mined.block_number
    )  # the block that held it is replaced: no receipt, nonce back
    env.chain.mine_blocks(DEPTH + 1)
    assert await env.confirm() == 0
    assert (await env.now(payment)).status is PaymentStatus.SENT  # waits to be re-mined
    env.mine(payment)
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == 1
    assert (await env.now(payment)).status is PaymentStatus.COMPLETED


async def test_a_receipt_of_a_block_no_longer_canonical_is_not_counted(env: Env) -> None:
    payment = await env.send()
    stale = env.mine(payment)
    env.chain.mine_blocks(DEPTH)
    env.chain.reorg(stale.block_number)
    env.chain.keep_receipt(stale)  # a lagging node still answers the old receipt
    assert await env.confirm() == 0
    assert (await env.now(payment)).status is PaymentStatus.SENT


# -- mint items -----------------------------------------------------------------------------


async def _completed(env: Env) -> Payment:
    payment = await env.send()
    env.mine(payment)
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == 1
    return payment


async def test_a_mint_tx_at_depth_completes_its_items(env: Env) -> None:
    payment = await _completed(env)
    items = await env.send_mints(payment)
    env.mine_mints(items)
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == len(items)
    done = await env.store.get_mint_items(payment.id)
    assert {(m.status, m.tx_hash) for m in done} == {(MintStatus.COMPLETED, items[0].tx_hash)}


async def test_a_reverted_mint_is_retried_then_failed(env: Env) -> None:
    payment = await _completed(env)
    for attempt in range(1, MAX_MINT_ATTEMPTS + 1):
        items = await env.send_mints(payment)
        assert {m.status for m in items} == {MintStatus.SENT}
        env.mine_mints(items, success=False)
        env.chain.mine_blocks(DEPTH)
        assert await env.confirm() == 0
        after = await env.store.get_mint_items(payment.id)
        assert {m.attempts for m in after} == {attempt}
        expected = MintStatus.FAILED if attempt == MAX_MINT_ATTEMPTS else MintStatus.PENDING
        assert {m.status for m in after} == {expected}


async def test_a_dropped_mint_already_minted_at_depth_completes_without_its_tx(
    env: Env,
) -> None:
    payment = await _completed(env)
    items = await env.send_mints(payment)
    # Another tx (an earlier attempt) minted them; the relayer's nonce moved past this one.
    other = "0x" + "0d" * 32
    env.chain.mine(other, to=env.token.address, mints=[(m.token_address, m.mint_id) for m in items])
    env.nonce_past(items[0])
    env.chain.mine_blocks(DEPTH)
    assert await env.confirm() == len(items)
    assert {m.status for m in await env.store.get_mint_items(payment.id)} == {MintStatus.COMPLETED}


def test_authorization_refs_compare_normalized() -> None:
    ref = AuthorizationRef("0xAbC", "0xDeF", "0x0A")
    assert ref.normalized() == AuthorizationRef("0xabc", "0xdef", "0x0a")
