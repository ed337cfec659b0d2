"""Store conformance (both adapters): a fee-bumped replacement is persisted before its
broadcast, and every tx signed for a nonce stays on record (`replace_tx`, `tx_hashes`)."""

from __future__ import annotations

from payfirst.domain.models import Payment, SignedTx
from payfirst.ports.store import Store
from tests.fixtures.store import queue_payments, register_token

#: The chain of the tokens `make_token` builds, so of their payments.
CHAIN = 31337

RELAYER = "0x" + "12" * 20


async def test_replace_tx_moves_the_rows_and_keeps_both_hashes(store: Store) -> None:
    token = await register_token(store)
    await queue_payments(store, token, 2)
    first = SignedTx(raw="0x02aa", hash="0x" + "01" * 32)

    def sign(payments: list[Payment], nonce: int) -> SignedTx:
        return first

    claimed = await store.claim_payments_one_tx(RELAYER, 10, sign, chain_id=CHAIN)
    assert len(claimed) == 2
    nonce = claimed[0].tx_nonce
    assert nonce is not None
    await store.mark_sent([first.hash])
    assert await store.tx_hashes(RELAYER, [nonce], chain_id=CHAIN) == {}

    bump = SignedTx(raw="0x02bb", hash="0x" + "02" * 32)
    assert await store.replace_tx(RELAYER, nonce, first.hash, bump, chain_id=CHAIN)
    for payment in claimed:
        stored = await store.get_payment(payment.id)
        assert stored is not None
        assert (stored.tx_hash, stored.raw_tx, stored.tx_nonce) == (bump.hash, bump.raw, nonce)
    assert await store.tx_hashes(RELAYER, [nonce, nonce + 1], chain_id=CHAIN) == {
        nonce: [first.hash, bump.hash]
    }
    (broadcaster,) = await store.unconfirmed_txs(RELAYER, nonce, chain_id=CHAIN)
    assert (broadcaster.tx_hash, broadcaster.raw_tx) == (bump.hash, bump.raw)

    # The old hash no longer names the rows: a stale bump changes nothing.
    stale = SignedTx(raw="0x02cc", hash="0x" + "03" * 32)
    assert not await store.replace_tx(RELAYER, nonce, first.hash, stale, chain_id=CHAIN)
    assert await store.tx_hashes(RELAYER, [nonce], chain_id=CHAIN) == {
        nonce: [first.hash, bump.hash]
    }
