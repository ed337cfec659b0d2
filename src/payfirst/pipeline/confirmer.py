"""The confirmer loop: receipts of sent transactions decide every payment's and mint
item's terminal state, always by what the chain says.

Payments, per receipt (payments sharing a tx — a BatchSettler `settle` of many
authorizations — are decided together by that one receipt; a direct
`transferWithAuthorization` tx is just a batch of one):
- success and the asset's `AuthorizationUsed(payer, nonce)` log in the receipt: in ONE
  transaction the mint items are created (the callback) and the payment becomes
  `completed`;
- reverted, or success without that log (the item failed inside the batch): if the
  authorization was used by another transaction (anyone may submit an
  EIP-3009 authorization), the payment is completed by that one; otherwise
  `confirmation_failed` and the reserved supply is released;
- not mined: re-sent (the same signed bytes) while it can still land. Once the relayer's
  nonce has passed it, it never will: then the authorization's state decides (unused:
  back to `pending`, to be sent anew). Once the chain's clock is past the
  authorization's validBefore it can no longer move money: `confirmation_failed`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from eth_utils.crypto import keccak

from payfirst.adapters import contracts
from payfirst.adapters.chain_rpc import RpcError
from payfirst.domain.models import MintItem, Payment
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.pipeline import faults
from payfirst.pipeline.mint_ids import mint_ids
from payfirst.pipeline.outbox import Outbox

log = logging.getLogger("payfirst.confirmer")

AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
# Unmined transactions older than this are re-sent (idempotent: same signed bytes): a
# node may lose a pooled tx (anvil does under bursts), which stalls every later nonce.
REBROADCAST_AFTER_S = 3.0
# How far back to look for another transaction that used an authorization.
LOG_LOOKBACK_BLOCKS = 50_000
MAX_MINT_ATTEMPTS = 3


class Confirmer:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.store = outbox.store
        self.rpc = outbox.rpc

    async def run_once(self, batch_size: int, timeout_s: int) -> int:
        """Checks the receipts of up to `batch_size` sent transactions of each kind
        (payments, mints) — all the payments or mint items each carries; returns how many
        reached a terminal state."""
        # Each worker confirms its own relayer's txs; a dead worker's are confirmed by
        # whoever takes its relayer lease over.
        relayer = self.outbox.relayer.address
        payments = await self.store.sent_payments(relayer, batch_size)
        mints = await self.store.sent_mint_items(relayer, batch_size)
        return await self.check(payments, mints, timeout_s)

    async def stuck_payments(self, older_than_s: int) -> list[Payment]:
        """Payments `sent` more than `older_than_s` seconds ago."""
        sent = await self.store.list_payments(PaymentStatus.SENT, 100_000)
        return [
            p for p in sent if _age((p.processed_at or p.created_at).timestamp()) > older_than_s
        ]

    async def check(self, payments: list[Payment], mints: list[MintItem], timeout_s: int) -> int:
        """Decide these sent payments and mint items by the chain; returns how many
        reached a terminal state."""
        if not payments and not mints:
            return 0
        relayers = sorted(
            {p.relayer for p in payments if p.relayer} | {m.relayer for m in mints if m.relayer}
        )
        # Nonces before receipts: a nonce seen consumed and then no receipt means the
        # transaction will never be mined.
        answers = await self.rpc.batch(
            [("eth_getTransactionCount", [r, "latest"]) for r in relayers]
            + [("eth_getBlockByNumber", ["latest", False])]
        )
        chain_nonces = {r: int(n, 16) for r, n in zip(relayers, answers, strict=False)}
        latest_block: dict[str, Any] = answers[-1]
        hashes = sorted(
            {p.tx_hash for p in payments if p.tx_hash} | {m.tx_hash for m in mints if m.tx_hash}
        )
        receipts = dict(
            zip(
                hashes,
                await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]),
                strict=True,
            )
        )
        log.info("🔍 checking %d sent payments, %d sent mint items", len(payments), len(mints))
        # Per mined tx, the authorizations it used: the per-item outcome of a batch.
        used = {h: authorizations_used(r) for h, r in receipts.items() if r is not None}
        resend = False
        done = 0
        confirmed: list[tuple[Payment, str]] = []
        for payment in sorted(payments, key=lambda p: (p.tx_hash or "", p.created_at)):
            receipt = receipts.get(payment.tx_hash or "")
            if receipt is not None and authorization_key(payment) in used[payment.tx_hash or ""]:
                confirmed.append((payment, str(receipt["transactionHash"])))
                continue
            outcome = await self._decide_payment(
                payment, receipts, used, chain_nonces, latest_block, timeout_s
            )
            done += outcome == "done"
            resend |= outcome == "resend"
        done += await self._complete_all(confirmed)
        done += await self._decide_mints(mints, receipts, chain_nonces)
        if resend or any(
            receipts.get(m.tx_hash or "") is None
            and _age(m.updated_at.timestamp()) > REBROADCAST_AFTER_S
            for m in mints
        ):
            async with self.outbox.lock:
                await self.outbox.flush_quietly(resend_sent=True)
        if done:
            log.info("   ✅ %d confirmed or settled", done)
        return done

    # -- payments -------------------------------------------------------------------

    async def _decide_payment(
        self,
        payment: Payment,
        receipts: dict[str, Any],
        used: dict[str, set[tuple[str, str, str]]],
        chain_nonces: dict[str, int],
        latest_block: dict[str, Any],
        timeout_s: int,
    ) -> str:
        receipt = receipts.get(payment.tx_hash or "")
        if receipt is not None:
            if authorization_key(payment) in used[payment.tx_hash or ""]:
                await self._complete(payment, str(receipt["transactionHash"]))
                return "done"
            if int(receipt["status"], 16) == 1:
                why = "authorization failed inside the batch transaction"
            elif str(receipt.get("to") or "").lower() != payment.payment_asset.lower():
                # A whole settle batch reverted (out of gas, say): its authorizations are
                # most likely unused, and then the payment is sent again, not failed.
                return await self._settle_dropped(payment)
            else:
                why = "transaction reverted"
            return await self._settle_reverted(payment, why)
        assert payment.nonce is not None and payment.relayer is not None
        if chain_nonces.get(payment.relayer, -1) > payment.nonce:
            return await self._settle_dropped(payment)
        if int(latest_block["timestamp"], 16) > payment.authorization.valid_before:
            if await self.store.fail_payment(
                payment.id,
                PaymentStatus.CONFIRMATION_FAILED,
                "not mined before the authorization expired",
                only_from=PaymentStatus.SENT,
            ):
                log.warning("❌ payment %s: not mined before its authorization expired", payment.id)
            return "done"
        sent_at = (payment.processed_at or payment.created_at).timestamp()
        if _age(sent_at) > timeout_s:
            log.warning(
                "⏳ payment %s not mined after %ds (nonce %d, tx %s): re-sending the same tx",
                payment.id,
                timeout_s,
                payment.nonce,
                payment.tx_hash,
            )
        return "resend" if _age(sent_at) > REBROADCAST_AFTER_S else "wait"

    async def _settle_reverted(self, payment: Payment, why: str) -> str:
        other_tx = await self._authorization_used_by(payment)
        if other_tx is not None:
            await self._complete(payment, other_tx)
            return "done"
        if await self.store.fail_payment(
            payment.id, PaymentStatus.CONFIRMATION_FAILED, why, only_from=PaymentStatus.SENT
        ):
            log.warning(
                "❌ payment %s confirmation failed: %s (tx %s)", payment.id, why, payment.tx_hash
            )
        return "done"

    async def _settle_dropped(self, payment: Payment) -> str:
        """The payment's tx will never move its money: the relayer's nonce passed it unmined,
        or the whole settle batch reverted. The authorization's on-chain state decides."""
        used = contracts.decode_result(
            ["bool"],
            await self.rpc.eth_call(
                payment.payment_asset,
                contracts.authorization_state(payment.payer, payment.authorization.nonce),
            ),
        )[0]
        if used:
            return await self._settle_reverted(payment, "authorization canceled by the payer")
        if await self.store.requeue_payment(payment.id, f"tx {payment.tx_hash} dropped; re-queued"):
            log.warning("↩️ payment %s: tx %s was dropped, re-queued", payment.id, payment.tx_hash)
        return "requeued"

    async def _authorization_used_by(self, payment: Payment) -> str | None:
        """The transaction that used this payment's authorization, if any did."""
        latest = await self.rpc.block_number()
        try:
            logs = await self.rpc.call(
                "eth_getLogs",
                {
                    "address": payment.payment_asset,
                    "fromBlock": hex(max(0, latest - LOG_LOOKBACK_BLOCKS)),
                    "toBlock": hex(latest),
                    "topics": [
                        AUTHORIZATION_USED_TOPIC,
                        "0x" + payment.payer[2:].lower().rjust(64, "0"),
                        payment.authorization.nonce,
                    ],
                },
            )
        except RpcError as exc:
            log.warning("log lookup failed for payment %s: %s", payment.id, exc.message)
            raise
        return str(logs[0]["transactionHash"]) if logs else None

    async def _complete_all(self, confirmed: list[tuple[Payment, str]]) -> int:
        """The callbacks of many confirmed payments, in ONE transaction."""
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
        items = sum(len(ids) for payment_id, _, ids in completions if payment_id in completed)
        log.info(
            "✅ %d payments confirmed (%d txs); created %dx mint items",
            len(done),
            len({tx for _, tx in confirmed}),
            items,
        )
        return len(done)

    async def _complete(self, payment: Payment, tx_hash: str) -> None:
        """The payment's callback, in the transaction that completes it: a mint creates
        its mint items; a facilitator settlement needs nothing more."""
        mint = payment.payment_type is PaymentType.MINT
        ids = mint_ids(payment.payer, payment.id, payment.quantity) if mint else []
        if await self.store.complete_payment(
            payment.id, tx_hash, ids, before_commit=lambda: faults.crash_point(faults.IN_CALLBACK)
        ):
            if mint:
                log.info(
                    "✅ payment %s confirmed (tx %s); created %dx mint items",
                    payment.id,
                    tx_hash,
                    len(ids),
                )
            else:
                log.info("✅ payment %s settled (tx %s)", payment.id, tx_hash)

    # -- mint items -----------------------------------------------------------------

    async def _decide_mints(
        self, items: list[MintItem], receipts: dict[str, Any], chain_nonces: dict[str, int]
    ) -> int:
        done = 0
        by_tx: dict[str, list[MintItem]] = {}
        for item in items:
            by_tx.setdefault(item.tx_hash or "", []).append(item)
        for tx_hash, batch in by_tx.items():
            receipt = receipts.get(tx_hash)
            if receipt is not None and int(receipt["status"], 16) == 1:
                await self.store.complete_mint_items([m.id for m in batch], tx_hash)
                log.info("🪙 minted %d items (tx %s)", len(batch), tx_hash)
                done += len(batch)
                continue
            first = batch[0]
            mined_or_dropped = receipt is not None or (
                first.relayer is not None
                and first.nonce is not None
                and chain_nonces.get(first.relayer, -1) > first.nonce
            )
            if mined_or_dropped:
                done += await self._retry_mints(batch, "reverted" if receipt else "dropped")
        return done

    async def _retry_mints(self, batch: list[MintItem], why: str) -> int:
        """A batchMint that reverted or was dropped: items already minted are done, the
        others go back to pending (or fail after MAX_MINT_ATTEMPTS)."""
        minted = await has_minted(self.rpc, batch)
        done_ids = [m.id for m, yes in zip(batch, minted, strict=True) if yes]
        retry_ids = [m.id for m, yes in zip(batch, minted, strict=True) if not yes]
        if done_ids:
            await self.store.complete_mint_items(done_ids, None)
        if retry_ids:
            await self.store.retry_mint_items(retry_ids, f"mint tx {why}", MAX_MINT_ATTEMPTS)
            log.warning(
                "↩️ %d mint items: tx %s %s, retrying", len(retry_ids), batch[0].tx_hash, why
            )
        return len(done_ids)


def authorizations_used(receipt: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(asset, authorizer topic, nonce) of every `AuthorizationUsed` log in a successful
    receipt, all lowercase (a reverted tx leaves no logs)."""
    if int(receipt["status"], 16) != 1:
        return set()
    return {
        (str(entry["address"]).lower(), str(topics[1]).lower(), str(topics[2]).lower())
        for entry in receipt.get("logs") or []
        if len(topics := entry.get("topics") or []) == 3
        and str(topics[0]).lower() == AUTHORIZATION_USED_TOPIC
    }


def authorization_key(payment: Payment) -> tuple[str, str, str]:
    """This payment's entry in `authorizations_used`."""
    return (
        payment.payment_asset.lower(),
        "0x" + payment.payer[2:].lower().rjust(64, "0"),
        payment.authorization.nonce.lower(),
    )


async def has_minted(rpc: Any, items: list[MintItem]) -> list[bool]:
    """The token contracts' own word on whether each item's mint id is already minted."""
    answers = await rpc.batch(
        [
            (
                "eth_call",
                [{"to": m.token_address, "data": contracts.has_minted(m.mint_id)}, "latest"],
            )
            for m in items
        ]
    )
    return [bool(contracts.decode_result(["bool"], a)[0]) for a in answers]


def _age(timestamp: float) -> float:
    return time.time() - timestamp
