"""The confirmer loop: receipts of sent transactions decide every payment's and mint
item's terminal state, always by what the chain says at the confirmation depth.

Each tick picks ONE decision block, the head minus `confirmation_depth`, and pins every
read to it: the relayer's nonce, the authorization's state and the chain's clock are
those of the decision block, `eth_getLogs` stops at it, and a receipt counts only if its
block is at or below it and is still the canonical block at that height. Receipts are
read for EVERY tx payfirst signed for a nonce (a fee-bumped replacement and the tx it
replaced: either may be the one mined). What is absent is never evidence.

The decision itself is `payfirst.pipeline.decide.decide_payment`, a pure function of
those facts:
- the asset's `AuthorizationUsed(payer, nonce)` log in a receipt at depth, or found by
  `eth_getLogs` up to the decision block (payfirst's own tx whose receipt the node did
  not give, or anyone else's): in ONE transaction the mint items are created (the
  callback) and the payment becomes `completed`;
- a receipt at depth without that log and the authorization unused at the decision block:
  a reverted direct call or an item failed inside a batch is `confirmation_failed`
  (supply released); a whole settle batch reverted goes back to `pending`;
- the relayer's nonce consumed at depth with no receipt of any of payfirst's txs for it:
  the authorization unused means the tx was dropped (back to `pending`, signed anew);
  used means its tx is not found yet: wait, never fail;
- not mined at depth: the chain's clock at the decision block past validBefore with the
  authorization unused means it can never move money: `confirmation_failed`; otherwise
  wait (a receipt that vanished in a reorg is this case: the same bytes are re-sent).
Before a terminal failure the receipts and the authorization's state are read again.
A tx with no receipt `confirmation_timeout_s` after it was sent is stuck: logged once, and
the head-of-line tx is replaced with higher fees (`Broadcaster.bump_stuck`); never failed for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from payfirst.domain.models import MintItem, Payment
from payfirst.domain.payouts import Payout
from payfirst.domain.settings import RuntimeSettings
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.metrics import metrics
from payfirst.pipeline import faults
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.decide import (
    Action,
    MintFacts,
    Outcome,
    PaymentFacts,
    PayoutFacts,
    SettleReceipt,
    confirmation_depth,
    decide_mint,
    decide_payment,
    decide_payout,
    decision_block,
    needs_authorization_state,
)
from payfirst.pipeline.mint_ids import mint_ids
from payfirst.pipeline.payouts import pays
from payfirst.ports.chain import (
    AuthorizationRef,
    BlockId,
    Chain,
    ChainRejected,
    ChainUnavailable,
    Receipt,
)

log = logging.getLogger("payfirst.confirmer")

# Unmined transactions older than this are re-sent (idempotent: same signed bytes): a
# node may lose a pooled tx (anvil does under bursts, a reorg drops them), which stalls
# every later nonce.
REBROADCAST_AFTER_S = 3.0
# How far back to look for another transaction that used an authorization.
LOG_LOOKBACK_BLOCKS = 50_000
MAX_MINT_ATTEMPTS = 3
GWEI = 10**9


@dataclass
class ChainView:
    """What one tick knows of the chain, all of it pinned to the decision block."""

    block: int  # the decision block
    time: int  # its timestamp
    nonces: dict[str, int]  # each relayer's transaction count at the decision block
    history: dict[tuple[str, int], list[str]]  # every tx payfirst signed per (relayer, nonce)
    counted: dict[str, Receipt] = field(default_factory=dict)  # canonical, at depth
    mined: set[str] = field(default_factory=set)  # hashes with a receipt at any height


class Confirmer:
    def __init__(self, broadcaster: Broadcaster, *, depth: int | None = None) -> None:
        self.broadcaster = broadcaster
        self.store = broadcaster.store
        self.chain = broadcaster.chain
        self.chain_id = broadcaster.chain_id
        # The network's own confirmation depth; None: the confirmation_depth setting.
        self._depth = depth
        self._noted: set[UUID] = set()  # payments (and payouts) whose wait was logged already

    async def run_once(self, settings: RuntimeSettings) -> int:
        """Checks the receipts of up to `confirmation_batch_size` sent transactions of
        each kind (payments, mints) — all the payments or mint items each carries; returns
        how many reached a terminal state."""
        # Each worker confirms its own relayer's txs; a dead worker's are confirmed by
        # whoever takes its relayer lease over.
        relayer = self.broadcaster.relayer.address
        limit = settings.confirmation_batch_size
        payments = await self.store.sent_payments(relayer, limit, chain_id=self.chain_id)
        mints = await self.store.sent_mint_items(relayer, limit, chain_id=self.chain_id)
        payouts = await self.store.sent_payouts(relayer, limit, chain_id=self.chain_id)
        return await self.check(payments, mints, settings, payouts)

    async def stuck_payments(self, older_than_s: int) -> list[Payment]:
        """Payments `sent` more than `older_than_s` seconds ago."""
        sent = await self.store.list_payments(PaymentStatus.SENT, 100_000, chain_id=self.chain_id)
        return [
            p for p in sent if _age((p.processed_at or p.created_at).timestamp()) > older_than_s
        ]

    def depth(self, settings: RuntimeSettings) -> int:
        if self._depth is not None:
            return self._depth
        return confirmation_depth(self.broadcaster.relayer.chain_id, settings.confirmation_depth)

    async def check(
        self,
        payments: list[Payment],
        mints: list[MintItem],
        settings: RuntimeSettings,
        payouts: Sequence[Payout] = (),
    ) -> int:
        """Decide these sent payments, mint items and payouts by the chain; returns how
        many reached a terminal state."""
        if not payments and not mints and not payouts:
            return 0
        view = await self._view(payments, mints, self.depth(settings), payouts)
        log.debug(
            "checking %d sent payments, %d sent mint items at block %d",
            len(payments),
            len(mints),
            view.block,
        )
        outcomes = await self._decide_payments(payments, view)
        done = 0
        confirmed: list[tuple[Payment, str]] = []
        for payment, outcome in outcomes:
            if outcome.action is Action.COMPLETE:
                assert outcome.tx_hash is not None
                confirmed.append((payment, outcome.tx_hash))
            elif outcome.action is Action.FAIL:
                done += await self._fail(payment, outcome.reason)
            elif outcome.action is Action.REQUEUE:
                if await self.store.requeue_payment(payment.id, outcome.reason):
                    log.warning(
                        "payment %s: %s (tx %s)", payment.id, outcome.reason, payment.tx_hash
                    )
            else:
                self._note_wait(payment, outcome, view, settings.confirmation_timeout_s)
        done += await self._complete_all(confirmed)
        done += await self._decide_mints(mints, view)
        done += await self._decide_payouts(payouts, view, settings.confirmation_timeout_s)
        waiting = [p for p, o in outcomes if o.action is Action.WAIT]
        unmined = (
            any(
                not self._any_mined(p.relayer, p.tx_nonce, p.tx_hash, view)
                and _age((p.processed_at or p.created_at).timestamp()) > REBROADCAST_AFTER_S
                for p in waiting
            )
            or any(
                not self._any_mined(m.relayer, m.tx_nonce, m.tx_hash, view)
                and _age(m.updated_at.timestamp()) > REBROADCAST_AFTER_S
                for m in mints
            )
            or any(
                not self._any_mined(p.relayer, p.tx_nonce, p.tx_hash, view)
                and _age(p.updated_at.timestamp()) > REBROADCAST_AFTER_S
                for p in payouts
            )
        )
        if unmined:
            async with self.broadcaster.lock:
                await self.broadcaster.broadcast_unconfirmed_quietly(resend_sent=True)
                await self.broadcaster.bump_stuck(
                    settings.fee_bump_after_s,
                    GWEI * settings.max_fee_per_gas_gwei,
                    stuck_after_s=settings.confirmation_timeout_s,
                )
        if done:
            log.debug("%d confirmed or settled", done)
        return done

    # -- reading the chain at the decision block ------------------------------------

    async def _view(
        self,
        payments: list[Payment],
        mints: list[MintItem],
        depth: int,
        payouts: Sequence[Payout] = (),
    ) -> ChainView:
        keys = (
            {(p.relayer, p.tx_nonce) for p in payments}
            | {(m.relayer, m.tx_nonce) for m in mints}
            | {(p.relayer, p.tx_nonce) for p in payouts}
        )
        relayers = sorted({r for r, _ in keys if r})
        head = await self.chain.block_number()
        block_number = decision_block(head, depth)
        block, counts = await asyncio.gather(
            self.chain.get_block(block_number),
            self.chain.get_transaction_counts(relayers, block_number),
        )
        if block is None:
            raise ChainUnavailable(f"the node has no block {block_number} yet")
        history: dict[tuple[str, int], list[str]] = {}
        for relayer in relayers:
            nonces = [n for r, n in keys if r == relayer and n is not None]
            for nonce, hashes in (
                await self.store.tx_hashes(relayer, nonces, chain_id=self.chain_id)
            ).items():
                history[(relayer, nonce)] = hashes
        view = ChainView(
            block=block_number,
            time=block.timestamp,
            nonces=dict(zip(relayers, counts, strict=True)),
            history=history,
        )
        hashes = sorted(
            {h for p in payments for h in self._candidates(p.relayer, p.tx_nonce, p.tx_hash, view)}
            | {h for m in mints for h in self._candidates(m.relayer, m.tx_nonce, m.tx_hash, view)}
            | {h for p in payouts for h in self._candidates(p.relayer, p.tx_nonce, p.tx_hash, view)}
        )
        await self._read_receipts(hashes, view)
        return view

    async def _read_receipts(self, hashes: Sequence[str], view: ChainView) -> None:
        """Reads the receipts of `hashes` into `view`: every mined one in `mined`, those at
        or below the decision block whose block is canonical in `counted`."""
        receipts = await self.chain.get_receipts(hashes)
        deep: dict[str, Receipt] = {}
        for tx_hash, receipt in zip(hashes, receipts, strict=True):
            view.counted.pop(tx_hash, None)
            if receipt is None:
                continue  # absent: not evidence of anything
            view.mined.add(tx_hash)
            if receipt.block_number <= view.block:
                deep[tx_hash] = receipt
        heights = sorted({r.block_number for r in deep.values()})
        blocks = await self.chain.get_blocks(heights)
        canonical = {n: b.hash for n, b in zip(heights, blocks, strict=True) if b is not None}
        for tx_hash, receipt in deep.items():
            if canonical.get(receipt.block_number) == receipt.block_hash.lower():
                view.counted[tx_hash] = receipt

    def _candidates(
        self, relayer: str | None, nonce: int | None, tx_hash: str | None, view: ChainView
    ) -> list[str]:
        """Every tx payfirst signed for this (relayer, nonce), the current one first."""
        found = [tx_hash] if tx_hash else []
        if relayer is not None and nonce is not None:
            found += [h for h in view.history.get((relayer, nonce), []) if h not in found]
        return found

    def _any_mined(
        self, relayer: str | None, nonce: int | None, tx_hash: str | None, view: ChainView
    ) -> bool:
        return any(h in view.mined for h in self._candidates(relayer, nonce, tx_hash, view))

    async def _authorization_states(
        self, payments: list[Payment], block: int
    ) -> dict[UUID, bool | None]:
        """authorizationState(payer, nonce) at the decision block (None: no answer)."""
        states = await self.chain.authorization_states(
            [authorization_of(p) for p in payments], block
        )
        return {p.id: state for p, state in zip(payments, states, strict=True)}

    async def _used_by(self, payment: Payment, block: int) -> str | None:
        """The tx whose AuthorizationUsed log for this payment is at or below `block`."""
        try:
            logs = await self.chain.authorization_logs(
                authorization_of(payment), max(0, block - LOG_LOOKBACK_BLOCKS), block
            )
        except ChainRejected as exc:
            log.warning("log lookup failed for payment %s: %s", payment.id, exc.message)
            return None
        for entry in logs:
            if entry.block_number <= block and not entry.removed:
                return entry.tx_hash
        return None

    # -- payments -------------------------------------------------------------------

    def _facts(self, payment: Payment, view: ChainView) -> PaymentFacts:
        assert payment.relayer is not None and payment.tx_nonce is not None
        authorization = authorization_of(payment)
        settled: SettleReceipt | None = None
        for tx_hash in self._candidates(payment.relayer, payment.tx_nonce, payment.tx_hash, view):
            receipt = view.counted.get(tx_hash)
            if receipt is None:
                continue
            candidate = SettleReceipt(
                tx_hash=receipt.tx_hash,
                success=receipt.success,
                used_here=receipt.used(authorization),
                whole_batch=(receipt.to or "").lower() != payment.payment_asset.lower(),
            )
            if settled is None or candidate.used_here:
                settled = candidate
        return PaymentFacts(
            tx_nonce=payment.tx_nonce,
            relayer_nonce=view.nonces.get(payment.relayer, 0),
            receipt=settled,
            chain_time=view.time,
            valid_before=payment.authorization.valid_before,
        )

    async def _complete_facts(
        self, payments: list[Payment], view: ChainView
    ) -> list[tuple[Payment, PaymentFacts]]:
        """Each payment's facts, with the authorization's state (and, when used, the tx
        that used it) read wherever the decision needs them."""
        facts = {p.id: self._facts(p, view) for p in payments}
        needing = [p for p in payments if needs_authorization_state(facts[p.id])]
        if needing:
            states = await self._authorization_states(needing, view.block)
            for payment in needing:
                used = states[payment.id]
                used_by = await self._used_by(payment, view.block) if used else None
                facts[payment.id] = _with(facts[payment.id], used, used_by)
        return [(p, facts[p.id]) for p in payments]

    async def _decide_payments(
        self, payments: list[Payment], view: ChainView
    ) -> list[tuple[Payment, Outcome]]:
        decided = [(p, decide_payment(f)) for p, f in await self._complete_facts(payments, view)]
        failing = [p for p, o in decided if o.action is Action.FAIL]
        if not failing:
            return decided
        # A terminal failure: read the receipts and the authorizations again first.
        await self._read_receipts(
            sorted(
                {
                    h
                    for p in failing
                    for h in self._candidates(p.relayer, p.tx_nonce, p.tx_hash, view)
                }
            ),
            view,
        )
        again = {p.id: decide_payment(f) for p, f in await self._complete_facts(failing, view)}
        return [(p, again.get(p.id, o) if o.action is Action.FAIL else o) for p, o in decided]

    async def _fail(self, payment: Payment, reason: str) -> int:
        if not await self.store.fail_payment(
            payment.id, PaymentStatus.CONFIRMATION_FAILED, reason, only_from=PaymentStatus.SENT
        ):
            return 0
        metrics().txs.labels("reverted", self.broadcaster.network).inc()
        log.warning(
            "payment %s confirmation failed: %s (tx %s)", payment.id, reason, payment.tx_hash
        )
        return 1

    def _observe_completed(self, completed: list[tuple[Payment, str]]) -> None:
        """The metrics of payments just completed: their txs, and how long each step took."""
        if not completed:
            return
        network = self.broadcaster.network
        m = metrics()
        m.txs.labels("confirmed", network).inc(len({tx for _, tx in completed}))
        now = time.time()
        stages = m.settlement_seconds
        for payment, _ in completed:
            accepted = payment.created_at.timestamp()
            sent = (payment.processed_at or payment.created_at).timestamp()
            stages.labels("accepted_to_sent", network).observe(max(0.0, sent - accepted))
            stages.labels("sent_to_confirmed", network).observe(max(0.0, now - sent))
            stages.labels("accepted_to_confirmed", network).observe(max(0.0, now - accepted))

    def _observe_minted(self, items: list[MintItem]) -> None:
        """Mint items are made when their payment is confirmed: their age is that step."""
        now = time.time()
        latency = metrics().settlement_seconds.labels(
            "confirmed_to_minted", self.broadcaster.network
        )
        for item in items:
            latency.observe(max(0.0, now - item.created_at.timestamp()))

    def _note_wait(
        self, payment: Payment, outcome: Outcome, view: ChainView, timeout_s: int
    ) -> None:
        """Logs, once per payment, a wait worth an operator's attention: the authorization
        used by a tx not found, or a tx STUCK: no receipt at any height `timeout_s`
        (confirmation_timeout_s) after it was sent. A stuck tx is never failed for it (it
        can still be mined): it keeps being re-sent, and `Broadcaster.bump_stuck` replaces it
        with higher fees; `payfirst reset-stuck` lists them. One mined but not yet at depth
        is not stuck."""
        sent_at = (payment.processed_at or payment.created_at).timestamp()
        if payment.id in self._noted:
            return
        if "not found" in outcome.reason:
            self._noted.add(payment.id)
            log.warning("payment %s: %s; checking again", payment.id, outcome.reason)
        elif _age(sent_at) > timeout_s and not self._any_mined(
            payment.relayer, payment.tx_nonce, payment.tx_hash, view
        ):
            self._noted.add(payment.id)
            log.warning(
                "payment %s stuck: its tx (nonce %s, %s) not mined %ds after it was sent "
                "(confirmation_timeout_s): re-sent, and the relayer's head-of-line tx "
                "replaced with higher fees (up to max_fee_per_gas_gwei); it can still land",
                payment.id,
                payment.tx_nonce,
                payment.tx_hash,
                timeout_s,
            )

    async def _complete_all(self, confirmed: list[tuple[Payment, str]]) -> int:
        """The callbacks of many confirmed payments, in ONE transaction: a mint creates its
        mint items; a facilitator settlement needs nothing more."""
        if not confirmed:
            return 0
        completions = [
            (
                payment.id,
                tx_hash,
                mint_ids(payment.payer, payment.id, payment.quantity)
                if payment.payment_type is PaymentType.MINT
                else [],
            )
            for payment, tx_hash in confirmed
        ]
        done = await self.store.complete_payments(
            completions, before_commit=lambda: faults.crash_point(faults.IN_CALLBACK)
        )
        completed = set(done)
        self._noted -= completed
        self._observe_completed([(p, tx) for p, tx in confirmed if p.id in completed])
        items = sum(len(ids) for payment_id, _, ids in completions if payment_id in completed)
        log.info(
            "%d payments confirmed (%d txs); created %dx mint items",
            len(done),
            len({tx for _, tx in confirmed}),
            items,
        )
        return len(done)

    # -- mint items -----------------------------------------------------------------

    async def _decide_mints(self, items: list[MintItem], view: ChainView) -> int:
        done = 0
        by_tx: dict[str, list[MintItem]] = {}
        for item in items:
            by_tx.setdefault(item.tx_hash or "", []).append(item)
        for tx_hash, tx_items in by_tx.items():
            first = tx_items[0]
            if first.relayer is None or first.tx_nonce is None:
                continue
            receipts = [
                view.counted[h]
                for h in self._candidates(first.relayer, first.tx_nonce, tx_hash, view)
                if h in view.counted
            ]
            succeeded = [r for r in receipts if r.success]
            action = decide_mint(
                MintFacts(
                    tx_nonce=first.tx_nonce,
                    relayer_nonce=view.nonces.get(first.relayer, 0),
                    receipt_success=True if succeeded else (False if receipts else None),
                )
            )
            if action is Action.COMPLETE:
                mined_by = succeeded[0].tx_hash
                await self.store.complete_mint_items([m.id for m in tx_items], mined_by)
                self._observe_minted(tx_items)
                log.info("minted %d items (tx %s)", len(tx_items), mined_by)
                done += len(tx_items)
            elif action is Action.REQUEUE:
                done += await self._retry_mints(
                    tx_items, "reverted" if receipts else "dropped", view.block
                )
        return done

    async def _retry_mints(self, tx_items: list[MintItem], why: str, block: int) -> int:
        """A batchMint that reverted or was dropped at depth: items minted at the decision
        block are done, the others go back to pending (or fail after MAX_MINT_ATTEMPTS)."""
        minted = await has_minted(self.chain, tx_items, block)
        done_ids = [m.id for m, yes in zip(tx_items, minted, strict=True) if yes]
        retry_ids = [m.id for m, yes in zip(tx_items, minted, strict=True) if not yes]
        if done_ids:
            await self.store.complete_mint_items(done_ids, None)
        if retry_ids:
            await self.store.retry_mint_items(retry_ids, f"mint tx {why}", MAX_MINT_ATTEMPTS)
            log.warning(
                "%d mint items: tx %s %s, retrying", len(retry_ids), tx_items[0].tx_hash, why
            )
        return len(done_ids)

    # -- payouts ----------------------------------------------------------------------

    def _payout_facts(self, payout: Payout, view: ChainView) -> PayoutFacts:
        """The counted receipts of every tx signed for the payout's nonce. The treasury is
        the key that signed it (`payout.relayer`)."""
        assert payout.relayer is not None
        paid_by = reverted_by = odd = None
        for tx_hash in self._candidates(payout.relayer, payout.tx_nonce, payout.tx_hash, view):
            receipt = view.counted.get(tx_hash)
            if receipt is None:
                continue
            if pays(receipt, payout, payout.relayer):
                paid_by = receipt.tx_hash
            elif not receipt.success:
                reverted_by = receipt.tx_hash
            else:
                odd = receipt.tx_hash
        return PayoutFacts(paid_by, reverted_by, odd)

    async def _decide_payouts(
        self, payouts: Sequence[Payout], view: ChainView, timeout_s: int
    ) -> int:
        """Completed (with its ledger entries, one transaction each) when paid at depth;
        failed when its tx reverted at depth, after reading the receipts once more;
        otherwise it waits, logged once when unmined past `timeout_s`."""
        done = 0
        decided = [(p, decide_payout(self._payout_facts(p, view))) for p in payouts]
        failing = [p for p, o in decided if o.action is Action.FAIL]
        if failing:
            await self._read_receipts(
                sorted(
                    {
                        h
                        for p in failing
                        for h in self._candidates(p.relayer, p.tx_nonce, p.tx_hash, view)
                    }
                ),
                view,
            )
            again = {p.id: decide_payout(self._payout_facts(p, view)) for p in failing}
            decided = [(p, again.get(p.id, o)) for p, o in decided]
        for payout, outcome in decided:
            if outcome.action is Action.COMPLETE:
                assert outcome.tx_hash is not None
                if await self.store.complete_payout(
                    payout.id,
                    outcome.tx_hash,
                    before_commit=lambda: faults.crash_point(faults.IN_CALLBACK),
                ):
                    done += 1
                    self._noted.discard(payout.id)
                    log.info(
                        "payout %s completed: %d of %s to %s (tx %s)",
                        payout.id,
                        payout.amount,
                        payout.asset,
                        payout.to_address,
                        outcome.tx_hash,
                    )
            elif outcome.action is Action.FAIL:
                if await self.store.fail_payout(payout.id, outcome.reason):
                    done += 1
                    log.warning("payout %s failed: %s", payout.id, outcome.reason)
            elif payout.id not in self._noted and (
                "without its transfer" in outcome.reason
                or (
                    _age(payout.updated_at.timestamp()) > timeout_s
                    and not self._any_mined(payout.relayer, payout.tx_nonce, payout.tx_hash, view)
                )
            ):
                self._noted.add(payout.id)
                log.warning(
                    "payout %s: %s %ds after it was sent (tx %s, nonce %s); it waits (it "
                    "is never signed anew: nothing would stop it being paid twice), re-sent "
                    "and fee-bumped; an operator may look at it",
                    payout.id,
                    outcome.reason,
                    int(_age(payout.updated_at.timestamp())),
                    payout.tx_hash,
                    payout.tx_nonce,
                )
        return done


def _with(facts: PaymentFacts, used: bool | None, used_by: str | None) -> PaymentFacts:
    return PaymentFacts(
        tx_nonce=facts.tx_nonce,
        relayer_nonce=facts.relayer_nonce,
        receipt=facts.receipt,
        chain_time=facts.chain_time,
        valid_before=facts.valid_before,
        authorization_used=used,
        used_by=used_by,
    )


def authorization_of(payment: Payment) -> AuthorizationRef:
    """The authorization this payment spends."""
    return AuthorizationRef(payment.payment_asset, payment.payer, payment.authorization.nonce)


async def has_minted(chain: Chain, items: list[MintItem], block: BlockId = "latest") -> list[bool]:
    """The token contracts' own word on whether each item's mint id is minted (at
    `block`)."""
    return await chain.has_minted([(m.token_address, m.mint_id) for m in items], block)


def _age(timestamp: float) -> float:
    return time.time() - timestamp
