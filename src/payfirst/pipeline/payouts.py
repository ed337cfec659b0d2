"""The payout loop of a network's treasury: providers' automatic payouts created when their
terms call for them, then every pending payout claimed and signed as an ERC-20
`transfer(to, amount)` from the treasury in ONE database transaction with its nonce
(`Store.claim_payouts`, the write-ahead step), then broadcast. The confirmer decides them
(`Confirmer`: completed with its ledger entries, or failed when its tx reverted).

Only the RelayerLoops whose key IS the treasury runs this loop: a payout moves the
treasury's own tokens. When the treasury is not one of the network's relayer keys, payouts
wait (the worker logs it once) and never fail for it."""

from __future__ import annotations

import logging
from typing import Final

from eth_utils.crypto import keccak

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import SignedTx
from payfirst.domain.payouts import Payout, PayoutRequest
from payfirst.evm.abi import checksum, encode_call
from payfirst.pipeline import faults
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.relayer import current_fees
from payfirst.ports.chain import Receipt

log = logging.getLogger("payfirst.payouts")

#: ERC-20 `Transfer(address indexed from, address indexed to, uint256 value)`.
TRANSFER_TOPIC: Final = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
#: Explicit gas of a payout: a transfer into a fresh balance costs ~52k on DemoUSDC and
#: USDC; the margin keeps a proxy token's extra hop from running short.
GAS_PAYOUT: Final = 90_000
#: Payouts one tick signs.
MAX_PAYOUTS_PER_TICK: Final = 50


def transfer_call(to: str, amount: int) -> str:
    """Calldata of ERC-20 `transfer(address,uint256)`."""
    return encode_call("transfer(address,uint256)", [checksum(to), amount])


def pays(receipt: Receipt, payout: Payout, treasury: str) -> bool:
    """Whether the successful receipt holds the asset's Transfer(treasury, to, amount)."""
    if not receipt.success:
        return False
    for entry in receipt.logs:
        topics = entry.topics
        if (
            entry.address.lower() == payout.asset.lower()
            and not entry.removed
            and len(topics) == 3
            and topics[0].lower() == TRANSFER_TOPIC
            and "0x" + topics[1][-40:].lower() == treasury.lower()
            and "0x" + topics[2][-40:].lower() == payout.to_address.lower()
            and int(entry.data, 16) == payout.amount
        ):
            return True
    return False


class PayoutSender:
    """One treasury key's payout loop step."""

    def __init__(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster
        self.store = broadcaster.store
        self.chain_id = broadcaster.chain_id

    async def create_due(self) -> int:
        """The automatic payouts providers' terms call for now (threshold or schedule);
        each created as an on-demand one is, under its provider's row lock. Returns how
        many were created."""
        created = 0
        for candidate in await self.store.payout_candidates(self.chain_id):
            trigger = candidate.due()
            if trigger is None:
                continue
            try:
                payout = await self.store.create_payout(
                    PayoutRequest(
                        candidate.provider_id, candidate.asset, self.chain_id, None, trigger
                    )
                )
            except PaymentRejected as exc:  # changed meanwhile (another payout, its address)
                log.info("automatic payout of %s skipped: %s", candidate.provider_id, exc)
                continue
            created += 1
            log.info(
                "%s payout %s created: %d of %s to %s",
                trigger.value,
                payout.id,
                payout.amount,
                payout.asset,
                payout.to_address,
            )
        return created

    async def run_once(self) -> int:
        """Create the due payouts, then sign the pending ones and broadcast them; returns
        how many were signed."""
        await self.create_due()
        relayer = self.broadcaster.relayer
        fees = await current_fees(self.broadcaster.chain)

        def sign(payout: Payout, nonce: int) -> SignedTx:
            data = transfer_call(payout.to_address, payout.amount)
            return relayer.sign_call(payout.asset, data, nonce, GAS_PAYOUT, fees)

        async with self.broadcaster.lock:
            await self.broadcaster.sync_nonce()
            claimed = await self.store.claim_payouts(
                relayer.address, MAX_PAYOUTS_PER_TICK, sign, chain_id=self.chain_id
            )
            if not claimed:
                return 0
            for payout in claimed:
                log.info(
                    "payout %s signed: %d of %s to %s (nonce %d, tx %s)",
                    payout.id,
                    payout.amount,
                    payout.asset,
                    payout.to_address,
                    payout.tx_nonce,
                    payout.tx_hash,
                )
            faults.crash_point(faults.AFTER_PERSIST)
            await self.broadcaster.broadcast_unconfirmed_quietly(resend_sent=False)
        return len(claimed)
