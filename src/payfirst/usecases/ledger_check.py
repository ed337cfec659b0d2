"""`payfirst ledger check`: the ledger's invariants, checked against the database and the chain.

1. Every ledger transaction sums to zero.
2. Every completed payment has its ledger transaction, whose entries are exactly the ones
   the rules give (`entries_for_payment`: the payer debited the payment's amount), and that
   amount moved on chain: the receipt of the payment's tx, in a canonical block, holds the
   asset's `AuthorizationUsed(payer, nonce)` and `Transfer(payer, payTo, amount)`. A reversed
   payment must have moved nothing; a ledger transaction of a payment that is not completed
   is a violation (one of no payment the database refuses).
3. Per network with a treasury, per asset: the treasury's on-chain balance equals what the
   ledger says it holds (provider balances + fees + its own external account) minus payouts
   in flight (their tx mined at the checked block, the ledger not showing them yet).
   Payments to it still being settled may explain a surplus (reported, not a violation);
   anything else is.

Bounded: payments are read a page at a time, each page's receipts and blocks in one round
trip per network.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from eth_utils.crypto import keccak

from payfirst.domain.ledger import Entry, entries_for_payment, reversal_of
from payfirst.domain.payouts import Payout, PayoutStatus
from payfirst.domain.statuses import PaymentStatus
from payfirst.ports.chain import AuthorizationRef, Chain, Receipt
from payfirst.ports.store import LedgerRecord, Store

# ERC-20's `Transfer(address indexed from, address indexed to, uint256 value)`.
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
PAGE_SIZE = 500
#: At most this many unbalanced ledger transactions are listed.
MAX_LISTED = 100


@dataclass(frozen=True, slots=True)
class CheckedNetwork:
    """A network the check reads: its chain, its treasury (None: none) and assets."""

    chain_id: int
    chain: Chain
    treasury: str | None = None
    assets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # balanced | recorded | on_chain | treasury
    subject: str  # a ledger transaction, a payment, or network/asset
    detail: str
    violation: bool = True


@dataclass
class LedgerReport:
    findings: list[Finding] = field(default_factory=list)
    payments_checked: int = 0

    @property
    def ok(self) -> bool:
        return not any(f.violation for f in self.findings)

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.violation]


async def payouts_in_flight(
    store: Store, chain: Chain, chain_id: int, payouts: Sequence[Payout], block: int
) -> dict[str, int]:
    """{asset (lowercase): what payouts moved out of the treasury on chain at `block` that the
    ledger does not show}: the amounts of payouts not yet completed whose tx (any tx signed
    for its nonce) has a successful canonical receipt at or below `block`, minus those
    completed in the ledger whose tx is not there (mined above `block`, while the check ran)."""
    by_relayer: dict[str, list[int]] = {}
    for payout in payouts:
        if payout.relayer is not None and payout.tx_nonce is not None:
            by_relayer.setdefault(payout.relayer, []).append(payout.tx_nonce)
    history: dict[tuple[str, int], list[str]] = {}
    for relayer, nonces in by_relayer.items():
        for nonce, hashes in (await store.tx_hashes(relayer, nonces, chain_id=chain_id)).items():
            history[(relayer, nonce)] = hashes
    candidates = {
        p.id: sorted(
            {h for h in [p.tx_hash, *history.get((p.relayer or "", p.tx_nonce or -1), [])] if h}
        )
        for p in payouts
    }
    receipts = await _canonical_receipts(
        chain, sorted({h for hs in candidates.values() for h in hs})
    )
    moved: dict[str, int] = {}
    for payout in payouts:
        mined = any(
            (r := receipts.get(h)) is not None and r.success and r.block_number <= block
            for h in candidates[payout.id]
        )
        asset = payout.asset.lower()
        if mined and payout.status is not PayoutStatus.COMPLETED:
            moved[asset] = moved.get(asset, 0) + payout.amount
        elif not mined and payout.status is PayoutStatus.COMPLETED:
            moved[asset] = moved.get(asset, 0) - payout.amount
    return moved


async def check_ledger(
    store: Store,
    networks: Sequence[CheckedNetwork],
    *,
    page_size: int = PAGE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> LedgerReport:
    """Every invariant, over every payment (`page_size` at a time) and every network with a
    treasury; the findings, violations and notes alike. `progress` is told the payments
    checked so far after each page (the command line's progress bar)."""
    report = LedgerReport()
    for transaction_id, total in await store.ledger_unbalanced(MAX_LISTED):
        report.findings.append(
            Finding("balanced", str(transaction_id), f"entries sum to {total}, not 0")
        )
    by_chain = {n.chain_id: n for n in networks}
    after: UUID | None = None
    while True:
        page = await store.ledger_records(after, page_size)
        if not page:
            break
        after = page[-1].payment_id
        report.payments_checked += len(page)
        for record in page:
            report.findings += _recorded_findings(record, by_chain.get(record.payment.chain_id))
        report.findings += await _on_chain_findings(page, by_chain)
        if progress is not None:
            progress(report.payments_checked)
    for network in networks:
        if network.treasury is not None:
            report.findings += await _treasury_findings(store, network, network.treasury)
    return report


def _same(a: Sequence[Entry], b: Sequence[Entry]) -> bool:
    return Counter(a) == Counter(b)


def _recorded_findings(record: LedgerRecord, network: CheckedNetwork | None) -> list[Finding]:
    """Invariant 2, the database's part: the ledger transaction is the rules' one."""
    subject = str(record.payment_id)
    payment = record.payment
    if record.status is not PaymentStatus.COMPLETED:
        if record.has_payment_transaction and record.reversal is None:
            return [Finding("recorded", subject, f"in the ledger, but {record.status.value}")]
        return []
    if not record.has_payment_transaction:
        return [Finding("recorded", subject, "completed without a ledger transaction")]
    found: list[Finding] = []
    expected = entries_for_payment(payment)
    if not _same(record.recorded, expected):
        found.append(
            Finding(
                "recorded",
                subject,
                f"entries {_describe(record.recorded)} are not the payment's {_describe(expected)}",
            )
        )
    if record.reversal is not None and not _same(record.reversal, reversal_of(record.recorded)):
        found.append(Finding("recorded", subject, "its reversal does not negate its entries"))
    if payment.provider_id is not None and network is not None:
        if network.treasury is None:
            found.append(Finding("recorded", subject, "collected for a provider: no treasury"))
        elif payment.pay_to.lower() != network.treasury.lower():
            found.append(
                Finding(
                    "recorded",
                    subject,
                    f"collected for a provider but paid to {payment.pay_to}, not the treasury",
                )
            )
    return found


def _describe(entries: Sequence[Entry]) -> str:
    return (
        "["
        + ", ".join(f"{e.account.kind.value}:{e.account.owner} {e.amount:+d}" for e in entries)
        + "]"
    )


async def _on_chain_findings(
    page: Sequence[LedgerRecord], by_chain: dict[int, CheckedNetwork]
) -> list[Finding]:
    """Invariant 2, the chain's part, for one page: one receipts and one blocks read per
    network."""
    found: list[Finding] = []
    wanted: dict[int, list[LedgerRecord]] = {}
    for record in page:
        if record.status is not PaymentStatus.COMPLETED or not record.has_payment_transaction:
            continue
        subject = str(record.payment_id)
        if record.payment.chain_id not in by_chain:
            found.append(
                Finding("on_chain", subject, f"chain {record.payment.chain_id} is not served")
            )
        elif record.tx_hash is None:
            found.append(Finding("on_chain", subject, "completed without a tx hash"))
        else:
            wanted.setdefault(record.payment.chain_id, []).append(record)
    for chain_id, records in wanted.items():
        receipts = await _canonical_receipts(
            by_chain[chain_id].chain, sorted({r.tx_hash for r in records if r.tx_hash})
        )
        transfers = {h: _transfers(r) for h, r in receipts.items() if r is not None}
        for record in records:
            assert record.tx_hash is not None
            receipt = receipts.get(record.tx_hash)
            available = transfers.get(record.tx_hash, Counter())
            found += _settlement_findings(record, receipt, available)
    return found


async def _canonical_receipts(chain: Chain, hashes: list[str]) -> dict[str, Receipt | None]:
    """Each tx's receipt if it is in the canonical chain (its block's hash is the one at its
    height now), else None."""
    receipts = await chain.get_receipts(hashes)
    heights = sorted({r.block_number for r in receipts if r is not None})
    blocks = dict(zip(heights, await chain.get_blocks(heights), strict=True))
    canonical: dict[str, Receipt | None] = {}
    for tx_hash, receipt in zip(hashes, receipts, strict=True):
        block = None if receipt is None else blocks.get(receipt.block_number)
        ok = receipt is not None and block is not None and block.hash == receipt.block_hash
        canonical[tx_hash] = receipt if ok else None
    return canonical


def _transfers(receipt: Receipt) -> Counter[tuple[str, str, str, int]]:
    """The successful tx's ERC-20 transfers: (token, from, to, value), lowercase."""
    moved: Counter[tuple[str, str, str, int]] = Counter()
    if not receipt.success:
        return moved
    for log in receipt.logs:
        if len(log.topics) == 3 and log.topics[0].lower() == TRANSFER_TOPIC and not log.removed:
            sender, receiver = ("0x" + t[-40:].lower() for t in log.topics[1:])
            moved[(log.address.lower(), sender, receiver, int(log.data, 16))] += 1
    return moved


def _settlement_findings(
    record: LedgerRecord,
    receipt: Receipt | None,
    available: Counter[tuple[str, str, str, int]],
) -> list[Finding]:
    """Did the payment's amount move on chain, as its ledger (reversed or not) says?
    `available`: its tx's transfers not yet matched to a payment (one backs one)."""
    subject = str(record.payment_id)
    payment = record.payment
    moved = False
    why = "its tx is not in the canonical chain"
    if receipt is not None:
        authorization = AuthorizationRef(payment.asset, payment.payer, record.auth_nonce)
        key = (payment.asset.lower(), payment.payer.lower(), payment.pay_to.lower(), payment.amount)
        if not receipt.used(authorization):
            why = f"tx {receipt.tx_hash} did not use its authorization"
        elif available[key] <= 0:
            why = f"tx {receipt.tx_hash} has no Transfer of {payment.amount} to {payment.pay_to}"
        else:
            available[key] -= 1
            moved = True
    if record.reversal is None and not moved:
        return [Finding("on_chain", subject, f"not on chain: {why} (payfirst ledger reverse)")]
    if record.reversal is not None and moved:
        return [Finding("on_chain", subject, "reversed in the ledger, but settled on chain")]
    if record.reversal is not None:
        return [Finding("on_chain", subject, "reversed: not on chain", violation=False)]
    return []


async def _treasury_findings(store: Store, network: CheckedNetwork, treasury: str) -> list[Finding]:
    """Invariant 3. Read in this order — balance at a block, then payments in flight, then
    the ledger with the payouts it may not show yet (one snapshot) — so a payment settling
    meanwhile is in flight or in the ledger, never in neither, and a payout is counted once:
    by the ledger, or as in flight when its tx is at or below the block but the ledger does
    not show it yet."""
    booked = await store.ledger_holdings(treasury, network.chain_id)
    names = {a.lower(): a for a in network.assets} | {a.lower(): a for a in booked}
    if not names:
        return []
    assets = sorted(names.values())
    block = await network.chain.block_number()
    balances = await network.chain.balances([(a, treasury) for a in assets], block)
    in_flight = _by_lower(await store.amounts_in_flight_to(treasury, network.chain_id))
    books, open_payouts = await store.treasury_books(treasury, network.chain_id)
    holdings = _by_lower(books)
    paying = await payouts_in_flight(store, network.chain, network.chain_id, open_payouts, block)
    found: list[Finding] = []
    for asset, balance in zip(assets, balances, strict=True):
        subject = f"{network.chain_id}/{asset}"
        payouts = paying.get(asset.lower(), 0)
        expected = holdings.get(asset.lower(), 0) - payouts
        arriving = in_flight.get(asset.lower(), 0)
        if balance is None:
            found.append(Finding("treasury", subject, "the chain gave no balance"))
        elif balance == expected:
            found.append(Finding("treasury", subject, f"{balance} as booked", violation=False))
        elif expected < balance <= expected + arriving:
            found.append(
                Finding(
                    "treasury",
                    subject,
                    f"on chain {balance}, booked {expected}: {balance - expected} of payments "
                    "still settling",
                    violation=False,
                )
            )
        else:
            found.append(
                Finding(
                    "treasury",
                    subject,
                    f"on chain {balance}, but the ledger says {expected} "
                    f"(providers + fees + its own - payouts in flight)",
                )
            )
    return found


def _by_lower(amounts: dict[str, int]) -> dict[str, int]:
    """Amounts by lowercase asset address (summed: two spellings are one asset)."""
    merged: dict[str, int] = {}
    for asset, amount in amounts.items():
        merged[asset.lower()] = merged.get(asset.lower(), 0) + amount
    return merged
