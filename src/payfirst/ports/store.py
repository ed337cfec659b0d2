"""The storage port: everything payfirst keeps goes through this Protocol. The PostgreSQL
adapter implements it and passes the conformance tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from payfirst.domain.accounts import Account, ApiKey, Credential
from payfirst.domain.endpoints import Endpoint
from payfirst.domain.ledger import AccountKind, Entry, LedgerPayment, TransactionKind
from payfirst.domain.models import MintItem, NewPayment, Payment, SignedTx, Token
from payfirst.domain.payouts import (
    Balance,
    Payout,
    PayoutCandidate,
    PayoutRequest,
    PayoutTerms,
    TermsChange,
)
from payfirst.domain.policies import AgentPayer, PayerChallenge, SpendingPolicy
from payfirst.domain.status import QueueSnapshot
from payfirst.domain.statuses import MintStatus, PaymentStatus, PaymentType
from payfirst.domain.webhooks import (
    Attempt,
    AttemptResult,
    DueDelivery,
    EndpointChange,
    EventType,
    WebhookEndpoint,
)

#: Why an authorization already queued is refused for another request: it is a different
#: purchase (type, token or payee, asset, quantity or payload differ).
REUSED = "this authorization was already submitted for another purchase"


@dataclass(frozen=True, slots=True)
class QueuedPayment:
    """The answer to queueing a payment: its id, and whether this call created it
    (False when the identical authorization was already queued)."""

    payment_id: UUID
    created: bool
    #: Created `awaiting_approval`: above its payer's spending policy's approval threshold.
    held: bool = False


@dataclass(frozen=True, slots=True)
class UnconfirmedTx:
    """A signed relayer transaction as persisted before its broadcast."""

    nonce: int
    tx_hash: str
    raw_tx: str
    sent: bool  # False while its rows are still `processing`


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """A payment as the ledger check reads it: the payment (its chain: the default
    network's when it recorded none), its status and settling tx, and the entries of its
    ledger transactions (empty when none was written)."""

    payment_id: UUID
    status: PaymentStatus
    payment: LedgerPayment
    tx_hash: str | None
    auth_nonce: str
    recorded: tuple[Entry, ...]  # the `payment` transaction's entries
    has_payment_transaction: bool
    reversal: tuple[Entry, ...] | None  # None: not reversed


# -- provider views (payfirst.usecases.views) ----------------------------------------

#: Where a page of payments ends: the last row's (created_at, id); the next page starts
#: after it, newest first.
PaymentKey = tuple[datetime, UUID]
#: Where a page of ledger entries ends: the last entry's (created_at, transaction_id, position).
EntryKey = tuple[datetime, UUID, int]


@dataclass(frozen=True, slots=True)
class PaymentScope:
    """Which payments a listing reads. `provider_id`: only that provider's (collected for
    it, or paid to one of its endpoints); None: every payment."""

    provider_id: UUID | None = None
    statuses: tuple[PaymentStatus, ...] = ()  # (): any status
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    endpoint_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """A payment as providers and the operator read it."""

    id: UUID
    status: PaymentStatus
    payment_type: PaymentType
    payer: str
    amount: int
    asset: str
    chain_id: int | None  # None: the default network
    pay_to: str
    endpoint_id: UUID | None
    provider_id: UUID | None
    fee_bps: int | None
    tx_hash: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EntryScope:
    """Which ledger entries a listing reads: those of the accounts of `account_kind` and
    `owner` (None: any), of one payment's transactions, created in [since, until)."""

    account_kind: AccountKind | None = None
    owner: str | None = None
    payment_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class EntryRow:
    """A ledger entry with its transaction and account."""

    transaction_id: UUID
    transaction_kind: TransactionKind
    payment_id: UUID | None
    position: int
    account_kind: AccountKind
    owner: str
    asset: str
    chain_id: int
    amount: int  # signed
    created_at: datetime


class Store(Protocol):
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""

    # tokens
    async def upsert_token(self, token: Token) -> None:
        """Insert or update a token's configuration; never touches reserved_count of an
        existing row. Raises ValueError for a token registered on another chain."""

    async def get_token(self, address: str) -> Token | None: ...

    async def list_tokens(self) -> list[Token]: ...

    # settings
    async def get_settings(self) -> dict[str, int]:
        """The `system_settings` rows as they are (name -> value): only the settings an
        operator set. Defaults and validation are the domain's
        (`payfirst.domain.settings.RuntimeSettings.from_rows`)."""

    async def set_setting(self, name: str, value: int) -> None:
        """Store a setting; raises SettingError (nothing written) for an unknown name or a
        value out of its bounds (`payfirst.domain.settings.check_setting`)."""

    async def unset_setting(self, name: str) -> bool:
        """Remove an operator's value, so the default applies again; False if none was set."""

    # relayers
    async def get_relayer_nonce(self, address: str, *, chain_id: int) -> int | None:
        """A relayer's next nonce on a chain, if it has one."""

    async def set_relayer_nonce(self, address: str, next_nonce: int, *, chain_id: int) -> None: ...

    # payments
    async def queue_payment(self, payment: NewPayment) -> QueuedPayment:
        """In one transaction: if (payer, authorization nonce) is already queued, return
        that payment's id with created=False when the authorization is identical, or raise
        PaymentRejected(Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED) when it differs;
        otherwise reserve `quantity` mints under the token's cap (raise
        PaymentRejected(Reason.SOLD_OUT) if they do not fit, PaymentRejected(Reason.UNKNOWN_TOKEN) if the token is unknown) and insert the payment as pending.
        Nothing is written when it raises. The payment records `payment.chain_id` (a mint
        given none: its token's chain; otherwise the default network's once adopted, else
        None)."""

    async def get_payment(self, payment_id: UUID) -> Payment | None: ...

    async def find_payment(self, payer: str, auth_nonce: str) -> Payment | None:
        """The payment queued for this authorization (payer, nonce), if any."""

    async def count_payments_by_status(self) -> dict[str, int]: ...

    async def count_mints_by_status(self) -> dict[str, int]: ...

    # -- networks -------------------------------------------------------------------
    #
    # Every pipeline method takes a required `chain_id` (keyword): the payments and mint
    # items of that chain only (a mint item's chain is its token's), and the relayer's state
    # (nonce, lease, recorded txs) on that chain: one key relays on several chains with
    # independent nonces. There is no "any chain": a claim must take the payments of the
    # chain whose nonce it signs with. Payments of no recorded chain (from before 0009) are
    # matched by no pipeline query until `adopt_default_chain` gives them one.

    async def adopt_default_chain(self, chain_id: int) -> None:
        """The default network (the legacy single chain: payments of no recorded chain,
        relayer state of no chain) is `chain_id`, read from that chain at startup: ONE
        transaction gives those rows the chain id (a relayer's nonce never lowered), and
        from then on a payment queued with no chain records `chain_id`, and the ledger counts
        any of no recorded chain as `chain_id`'s. Cheap when there is nothing to adopt (a
        partial index of the rows of no chain)."""

    async def default_network_rows(self) -> bool:
        """Whether unfinished payments of no recorded chain, or relayer nonces of the
        default network (chain 0), wait for `adopt_default_chain`."""

    # -- pipeline: payments ---------------------------------------------------------

    async def claim_payments(
        self,
        relayer: str,
        limit: int,
        sign: Callable[[Payment, int], SignedTx],
        *,
        only: Sequence[UUID] | None = None,
        chain_id: int,
    ) -> list[Payment]:
        """ONE transaction (the write-ahead step): take up to `limit` pending payments,
        oldest first (FOR UPDATE SKIP LOCKED on PostgreSQL), lock the relayer's row
        (created with next_nonce 0 if missing), give each payment the next nonce, call
        `sign(payment, nonce)`, store raw_tx, tx_hash, nonce, relayer and status
        `processing`, advance the relayer's next_nonce. Returns the updated payments in
        nonce order. If `sign` raises, nothing is written. With `only`, just those of
        the given ids (the ones the sender found able to pay) are taken."""

    async def claim_payments_one_tx(
        self,
        relayer: str,
        limit: int,
        sign: Callable[[list[Payment], int], SignedTx],
        *,
        only: Sequence[UUID] | None = None,
        chain_id: int,
    ) -> list[Payment]:
        """ONE transaction (the write-ahead step, as `claim_payments`), for ONE tx settling
        many payments: take up to `limit` pending payments of ONE payment asset (the asset
        of the oldest pending payment not locked by another claim), oldest first (FOR
        UPDATE SKIP LOCKED on PostgreSQL), lock the relayer's row (created with next_nonce
        0 if missing), call `sign(payments, nonce)` ONCE with its next nonce, store the
        same raw_tx, tx_hash and nonce, the relayer and status `processing` on every one,
        advance next_nonce by one. Returns the updated payments, oldest first. Nothing is
        signed or written when none is pending; nothing is written if `sign` raises. With
        `only`, just those of the given ids are taken."""

    async def list_payments(
        self,
        status: PaymentStatus,
        limit: int,
        *,
        expiring_before: int | None = None,
        chain_id: int,
    ) -> list[Payment]:
        """Payments in `status`, oldest first (`sent`: by processed_at; others by
        created_at); with `expiring_before`, only those whose authorization's
        valid_before is below it."""

    async def amounts_in_flight(
        self, payers: Sequence[str], *, chain_id: int
    ) -> dict[tuple[str, str], int]:
        """{(payment_asset, payer): the sum of these payers' payments signed but not yet
        decided (`processing` or `sent`)}: money their balances may still lose."""

    async def sent_payments(self, relayer: str, tx_limit: int, *, chain_id: int) -> list[Payment]:
        """The relayer's `sent` payments carried by its `tx_limit` oldest (lowest nonce)
        sent transactions — a batch transaction carries many — oldest first."""

    async def sent_mint_items(
        self, relayer: str, tx_limit: int, *, chain_id: int
    ) -> list[MintItem]:
        """The relayer's `sent` mint items of its `tx_limit` oldest sent transactions."""

    async def mark_sent(self, tx_hashes: Sequence[str]) -> None:
        """Payments and mint items in `processing` whose tx_hash is one of these become
        `sent` (payments: processed_at = now; mint items: updated_at = now)."""

    async def complete_payment(
        self,
        payment_id: UUID,
        tx_hash: str,
        mint_ids: Sequence[str],
        before_commit: Callable[[], None] | None = None,
    ) -> bool:
        """ONE transaction: only if the payment is `sent` or `processing`: set status
        `completed`, tx_hash (the tx that settled it), result {"queueIds": [mint item
        ids as str], "quantity": n}; insert one pending mint item per mint id (payer,
        token, payment_tx_hash = tx_hash). `before_commit` runs after the writes, before
        the commit. Returns False (writing nothing) when the payment was not in those
        statuses."""

    async def complete_payments(
        self,
        completions: Sequence[tuple[UUID, str, Sequence[str]]],
        before_commit: Callable[[], None] | None = None,
    ) -> list[UUID]:
        """`complete_payment` for many (payment id, tx hash, mint ids) in ONE transaction;
        returns the ids it completed (those not `sent`/`processing` are left as they are).
        A raising `before_commit` rolls all of them back. A payment whose completion is
        refused (a duplicate mint id, its ledger entries) is logged and left as it is; the
        others complete, each in a transaction of its own then."""

    async def fail_payment(
        self,
        payment_id: UUID,
        status: PaymentStatus,
        error: str,
        *,
        only_from: PaymentStatus | None = None,
    ) -> bool:
        """ONE transaction: only if the payment is not terminal (and, with `only_from`,
        is in that status): set `status` (failed or confirmation_failed) and `error`, and
        release its quantity from the token's reserved_count. Returns whether it changed
        anything."""

    async def requeue_payment(self, payment_id: UUID, error: str) -> bool:
        """`processing`/`sent` -> `pending`, clearing tx_hash, nonce, relayer, raw_tx,
        processed_at; `error` records why. Only for a tx that can never be mined."""

    # -- pipeline: mint items -------------------------------------------------------

    async def get_mint_items(self, payment_id: UUID) -> list[MintItem]: ...

    async def list_mint_items(
        self, status: MintStatus, limit: int, *, chain_id: int
    ) -> list[MintItem]:
        """Oldest first (by updated_at)."""

    async def pending_mint_items(self, limit: int, *, chain_id: int) -> list[MintItem]:
        """Up to `limit` pending items of ONE token (the token of the oldest pending
        item), oldest first. Does not claim them."""

    async def claim_mint_items(
        self,
        relayer: str,
        item_ids: Sequence[UUID],
        sign: Callable[[list[MintItem], int], SignedTx],
        *,
        chain_id: int,
    ) -> list[MintItem]:
        """ONE transaction: of `item_ids`, those still pending (FOR UPDATE SKIP LOCKED),
        all under ONE relayer nonce: call `sign(items, nonce)` once, store tx_hash, nonce,
        relayer, raw_tx and status `processing` on each, advance the relayer's
        next_nonce. Nothing is signed or written when none is still pending."""

    async def complete_mint_items(self, item_ids: Sequence[UUID], tx_hash: str | None) -> None:
        """Non-terminal items -> `completed` (tx_hash kept as is when None)."""

    async def retry_mint_items(
        self, item_ids: Sequence[UUID], error: str, max_attempts: int
    ) -> None:
        """attempts += 1; back to `pending` with tx fields cleared, or `failed` with
        `error` once attempts reach `max_attempts`."""

    # -- pipeline: unconfirmed relayer txs (the broadcaster) ------------------------

    async def unconfirmed_txs(
        self, relayer: str, from_nonce: int, *, chain_id: int
    ) -> list[UnconfirmedTx]:
        """The relayer's persisted txs with nonce >= from_nonce, from payments and mint
        items in ANY status that still carry a raw_tx, plus every still-`processing` one
        whatever its nonce (a nonce consumed by another tx must still reach `sent`, where
        the confirmer decides it); one per nonce, in nonce order; sent = False when the
        rows are `processing`."""

    async def sync_relayer_nonce(
        self, relayer: str, chain_next_nonce: int, *, chain_id: int
    ) -> int:
        """next_nonce = max(stored, chain_next_nonce) (row created if missing); returns it."""

    async def replace_tx(
        self,
        relayer: str,
        nonce: int,
        old_hash: str,
        new: SignedTx,
        *,
        chain_id: int,
    ) -> bool:
        """ONE transaction (the write-ahead step of a fee bump): only if payments or mint
        items in `processing`/`sent` carry (relayer, nonce, old_hash): record the old and
        the new tx in `relayer_txs` and give those rows the new tx_hash and raw_tx.
        Returns whether it replaced anything."""

    async def tx_hashes(
        self, relayer: str, nonces: Sequence[int], *, chain_id: int
    ) -> dict[int, list[str]]:
        """Every tx hash recorded in `relayer_txs` for these nonces of the relayer."""

    # -- relayer leases and wake-ups --------------------------------------------------

    async def acquire_relayer_lease(
        self, relayer: str, holder: str, ttl_s: float, *, chain_id: int
    ) -> bool:
        """Take or renew the lease on a relayer key for `ttl_s` seconds: succeeds when
        nobody holds it, `holder` already does, or the holder's lease has expired."""

    async def release_relayer_lease(self, relayer: str, holder: str, *, chain_id: int) -> None:
        """Give the key up (only if `holder` holds it)."""

    async def watch_new_payments(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever any process queues a payment (LISTEN / NOTIFY, fired
        by a trigger on commit)."""

    async def watch_payment_changes(self, callback: Callable[[UUID | None], None]) -> None:
        """Call `callback(payment_id)` whenever the status of that payment or of one of its
        mint items changes, in any process; `callback(None)` when changes may have been
        missed (the notice connection was lost and re-opened): re-read everything."""

    # -- operators ------------------------------------------------------------------

    async def payment_stats(self) -> dict[str, Any]:
        """{"payments": {status: count} (all six statuses, zeros included), "mints":
        {status: count} (all five), "oldest_sent_age_s": float | None,
        "completed_last_minute": int, "mints_completed_last_minute": int}."""

    async def queue_snapshot(self, *, stuck_after_s: int) -> QueueSnapshot:
        """The status page's view of the queue, read in one transaction: depths of the
        unfinished statuses, payments accepted, completed and failed lately, latency
        percentiles, the latest failures, and the payments `sent` for more than
        `stuck_after_s` seconds. Bounded work whatever the table's size (indexes 0017)."""

    # -- ledger (payfirst.domain.ledger) ----------------------------------------------
    #
    # `complete_payments` writes each completed payment's ledger transaction in the same
    # database transaction (entries by `entries_for_payment`); the methods below reverse
    # one and read what `payfirst ledger check` compares with the chain.

    async def reverse_payment(self, payment_id: UUID, reason: str) -> bool:
        """ONE transaction: a `reversal` ledger transaction negating the payment's ledger
        entries (an operator's, for a payment found not on chain). False, writing nothing,
        when the payment has no ledger transaction or was already reversed."""

    async def ledger_unbalanced(self, limit: int) -> list[tuple[UUID, int]]:
        """Up to `limit` ledger transactions whose entries do not sum to zero, with the
        sum (none while the database's commit-time check holds)."""

    async def ledger_records(self, after: UUID | None, limit: int) -> list[LedgerRecord]:
        """One page, by payment id after `after`: the payments that are `completed` or
        have a ledger transaction, with their entries."""

    async def ledger_holdings(self, holder: str, chain_id: int) -> dict[str, int]:
        """{asset: what the ledger says `holder` (a treasury) holds on the chain}: every
        provider and fee account, plus the holder's own external account."""

    async def amounts_in_flight_to(self, pay_to: str, chain_id: int) -> dict[str, int]:
        """{asset: the sum of payments to `pay_to` signed but not yet decided
        (`processing` or `sent`) on the chain}."""

    # -- accounts and API keys ---------------------------------------------------------

    async def create_account(self, account: Account, first_key: ApiKey | None = None) -> None:
        """ONE transaction: insert the account and, given, its first key."""

    async def get_account(self, account_id: UUID) -> Account | None: ...

    async def list_accounts(self, limit: int, *, after: UUID | None = None) -> list[Account]:
        """Up to `limit` accounts, oldest first (by created_at, then id), revoked ones
        included; with `after`, those listed after that account (none if it is unknown)."""

    async def revoke_account(self, account_id: UUID, at: datetime) -> Account | None:
        """Mark the account revoked at `at` (an earlier revocation's time is kept); None if
        there is no such account."""

    async def active_operator_exists(self) -> bool:
        """Whether any operator account is not revoked."""

    async def create_api_key(self, key: ApiKey) -> bool:
        """Insert a key (its prefix and hash, never the key) if its account exists and is
        not revoked; False (nothing written) otherwise."""

    async def find_api_key_by_prefix(self, prefix: str) -> Credential | None:
        """The key of this prefix with its account, revoked or expired ones included."""

    async def list_api_keys(
        self, account_id: UUID, limit: int, *, after: UUID | None = None
    ) -> list[ApiKey]:
        """The account's keys, as `list_accounts` pages accounts."""

    async def revoke_api_key(
        self, key_id: UUID, at: datetime, *, account_id: UUID | None = None
    ) -> ApiKey | None:
        """Mark the key revoked at `at` (an earlier revocation's time is kept); with
        `account_id`, only a key of that account. None if there is no such key."""

    async def touch_api_key(self, key_id: UUID, at: datetime) -> None:
        """Record the key's use at `at`, unless it was recorded less than a minute before."""

    # -- paid endpoints (payfirst.domain.endpoints) -------------------------------------

    async def create_endpoint(self, endpoint: Endpoint, *, limit: int | None = None) -> bool:
        """Insert an endpoint (its provider's account must exist); with `limit`, only while
        its provider has fewer enabled endpoints (False, nothing inserted, otherwise)."""

    async def get_endpoint(self, endpoint_id: UUID) -> Endpoint | None:
        """The endpoint, disabled or not; None if there is no such endpoint."""

    async def list_endpoints(
        self,
        limit: int,
        *,
        provider_id: UUID | None = None,
        after: UUID | None = None,
        include_disabled: bool = False,
    ) -> list[Endpoint]:
        """Up to `limit` endpoints, oldest first (created_at, then id): one provider's, or
        everyone's; disabled ones only with `include_disabled`; with `after`, those listed
        after that endpoint (none if it is unknown, or not the provider's)."""

    async def update_endpoint(self, endpoint: Endpoint) -> Endpoint | None:
        """Write an endpoint's terms and `updated_at` (its provider, creation and disabling
        are kept); the endpoint as stored, None if there is no such endpoint."""

    async def disable_endpoint(self, endpoint_id: UUID, at: datetime) -> Endpoint | None:
        """Disable it at `at` (an earlier time is kept); None if there is no such endpoint."""

    async def discoverable_endpoints(self, limit: int, offset: int) -> tuple[list[Endpoint], int]:
        """A page of the enabled, discoverable endpoints, oldest first, and how many there
        are in all."""

    # provider views (payfirst.usecases.views): pages newest first, each after `before`
    # (the previous page's last key; None: from the newest)
    async def view_payments(
        self, scope: PaymentScope, limit: int, before: PaymentKey | None = None
    ) -> list[PaymentRow]:
        """Up to `limit` payments in `scope`, by (created_at, id) descending."""

    async def view_payment(self, payment_id: UUID, provider_id: UUID | None) -> PaymentRow | None:
        """The payment, if it is in `provider_id`'s scope (None: any payment)."""

    async def view_entries(
        self, scope: EntryScope, limit: int, before: EntryKey | None = None
    ) -> list[EntryRow]:
        """Up to `limit` ledger entries in `scope`, by (created_at, transaction_id,
        position) descending."""

    async def count_view_payments(self, scope: PaymentScope, most: int) -> int:
        """How many payments are in `scope`, counted up to `most` (more: `most`)."""

    async def count_view_entries(self, scope: EntryScope, most: int) -> int:
        """How many ledger entries are in `scope`, counted up to `most` (more: `most`)."""

    # payouts (payfirst.domain.payouts; adapters/store_payouts.py)
    async def create_payout(self, request: PayoutRequest) -> Payout:
        """ONE transaction: lock the provider's account row (FOR UPDATE), and insert a
        `pending` payout of `request.amount` (None: all that is available) to its payout
        address if 0 < amount <= its ledger balance of the asset on the chain minus its
        payouts pending, processing or sent. Raises PaymentRejected (nothing written):
        UNKNOWN_ACCOUNT (no such provider), NO_PAYOUT_ADDRESS, INSUFFICIENT_BALANCE."""

    async def get_payout(self, payout_id: UUID) -> Payout | None: ...

    async def list_payouts(
        self, provider_id: UUID | None, limit: int, *, before: UUID | None = None
    ) -> list[Payout]:
        """Up to `limit` payouts (of `provider_id`; None: everyone's), newest first; with
        `before`, those listed after that payout."""

    async def provider_balances(self, provider_id: UUID) -> list[Balance]:
        """The provider's money per asset and chain, read in one snapshot."""

    async def payout_candidates(self, chain_id: int) -> list[PayoutCandidate]:
        """Providers with automatic payout terms, a payout address and money available on
        the chain, per asset."""

    async def get_payout_terms(self, account_id: UUID) -> PayoutTerms | None: ...

    async def update_account_terms(
        self, account_id: UUID, change: TermsChange
    ) -> tuple[Account, PayoutTerms] | None:
        """Set the fields named in `change.given`; the account and its payout terms, None
        if there is no such account."""

    async def claim_payouts(
        self,
        relayer: str,
        limit: int,
        sign: Callable[[Payout, int], SignedTx],
        *,
        chain_id: int,
    ) -> list[Payout]:
        """ONE transaction (the write-ahead step, as `claim_payments`): take up to `limit`
        pending payouts of the chain (FOR UPDATE SKIP LOCKED), lock the relayer's row, give
        each the next nonce, call `sign(payout, nonce)`, store relayer, nonce, tx_hash,
        raw_tx and `processing`, advance next_nonce. Nothing is written if `sign` raises."""

    async def sent_payouts(self, relayer: str, limit: int, *, chain_id: int) -> list[Payout]:
        """The relayer's `sent` payouts on the chain, lowest nonce first."""

    async def complete_payout(
        self,
        payout_id: UUID,
        tx_hash: str,
        before_commit: Callable[[], None] | None = None,
    ) -> bool:
        """ONE transaction: only if the payout is `processing` or `sent`: `completed` with
        the tx that paid it, and its `payout` ledger transaction (the provider's account
        -amount, the payee's external account +amount). False, writing nothing, otherwise."""

    async def fail_payout(self, payout_id: UUID, error: str) -> bool:
        """A `sent` payout whose tx reverted becomes `failed` (no ledger entry)."""

    async def treasury_books(
        self, holder: str, chain_id: int
    ) -> tuple[dict[str, int], list[Payout]]:
        """In one snapshot: `ledger_holdings(holder, chain_id)` and the chain's payouts whose
        tx may have moved money the ledger does not show yet (processing, sent) or that the
        ledger shows but may be above a block being checked (completed in the last hour)."""

    # spending policies (payfirst.domain.policies): agents' payer addresses, their policies
    # (enforced by queue_payment, in the transaction that queues), payments held for approval

    async def create_payer_challenge(self, challenge: PayerChallenge) -> None: ...

    async def open_payer_challenges(
        self, account_id: UUID, address: str, now: datetime
    ) -> list[PayerChallenge]:
        """The agent's unused challenges for `address` not expired at `now`, newest first."""

    async def register_payer(
        self, challenge_nonce: str, now: datetime
    ) -> tuple[AgentPayer | None, AgentPayer | None]:
        """ONE transaction: use the challenge once and attach its address to its agent.
        (created, None); (None, the payer as it was: the address is taken, maybe by the
        same agent); (None, None): the challenge is used or expired, nothing changed."""

    async def get_agent_payer(self, address: str) -> AgentPayer | None: ...

    async def list_agent_payers(
        self, account_id: UUID | None, limit: int, *, after: str | None = None
    ) -> list[AgentPayer]:
        """Payers of the agent (None: every agent's), by address, after `after`."""

    async def delete_agent_payer(self, address: str, account_id: UUID | None) -> bool:
        """Detach the payer (the agent's only, unless None) and its policy."""

    async def put_spending_policy(self, policy: SpendingPolicy, at: datetime) -> None:
        """Set the payer's whole policy (every API process is told: watch_policy_changes)."""

    async def get_spending_policy(self, payer: str) -> SpendingPolicy | None: ...

    async def delete_spending_policy(self, payer: str) -> bool: ...

    async def policy_spent(self, payer: str, asset: str) -> tuple[int, int]:
        """What the payer's payments in `asset` that did not fail add up to: in the last
        24 h, and this calendar month (UTC)."""

    async def watch_policy_changes(self, callback: Callable[[str | None], None]) -> None:
        """Call `callback(payer)` when a payer or its policy changes, in any process;
        `callback(None)`: anything may have changed (notices were lost)."""

    async def list_awaiting_approval(self, account_id: UUID | None, limit: int) -> list[Payment]:
        """Payments awaiting approval whose payer is the agent's (None: anyone's)."""

    async def approve_payment(self, payment_id: UUID, account_id: UUID | None) -> bool:
        """awaiting_approval -> pending (the agent's payer's only, unless None); wakes the
        senders. False, changing nothing, for any other payment."""

    async def reject_payment(self, payment_id: UUID, account_id: UUID | None, error: str) -> bool:
        """awaiting_approval -> failed with `error` (a mint's supply released), in one
        transaction. False, changing nothing, for any other payment."""

    # webhooks (payfirst.domain.webhooks; adapters/store_webhooks.py). The outbox is written
    # by the database itself (migration 0016's triggers), in the transaction of each status
    # change; these register endpoints, claim and settle deliveries, and replay.

    async def create_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None: ...

    async def webhook_endpoint(self, endpoint_id: UUID) -> WebhookEndpoint | None: ...

    async def webhook_endpoints(
        self, account_id: UUID | None, limit: int, after: UUID | None = None
    ) -> list[WebhookEndpoint]:
        """An account's endpoints (None: everyone's), oldest first, after `after`."""

    async def update_webhook_endpoint(
        self, endpoint_id: UUID, change: EndpointChange, at: datetime
    ) -> WebhookEndpoint | None:
        """Set the fields named in `change.given`; None if there is no such endpoint."""

    async def rotate_webhook_secret(
        self, endpoint_id: UUID, secret: str, previous_until: datetime
    ) -> WebhookEndpoint | None:
        """A new secret; the current one keeps signing until `previous_until`."""

    async def delete_webhook_endpoint(self, endpoint_id: UUID) -> bool: ...

    async def enable_webhook_endpoint(
        self, endpoint_id: UUID, at: datetime
    ) -> WebhookEndpoint | None:
        """Enabled again and not failing; None if there is no such endpoint."""

    async def webhook_attempts(
        self, endpoint_id: UUID, limit: int, before: int | None = None
    ) -> list[Attempt]:
        """An endpoint's delivery log, newest first, before the attempt `before`."""

    async def replay_webhook_messages(
        self,
        endpoint_id: UUID,
        *,
        message_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Deliver the endpoint's account's messages to it again (one by id, or those created
        in [since, until) of the types it wants), as new or restarted deliveries; how many."""

    async def emit_webhook_event(
        self, account_ids: list[UUID], event_type: EventType, data: dict[str, Any]
    ) -> None:
        """Write an event for the accounts with an enabled endpoint that wants it."""

    async def claim_webhook_deliveries(self, limit: int, lease_s: float) -> list[DueDelivery]:
        """Up to `limit` due deliveries of enabled endpoints (FOR UPDATE SKIP LOCKED), each
        leased for `lease_s` seconds: no other claim takes them until the lease runs out."""

    async def record_webhook_attempts(
        self, outcomes: Sequence[tuple[DueDelivery, AttemptResult, datetime | None]]
    ) -> list[bool]:
        """ONE transaction for all: log the attempts and, under each delivery's lease, mark
        it delivered (2xx) or due again at its time (None: failed); per outcome, whether
        its lease still held."""

    async def disable_failing_webhook_endpoints(
        self, failing_before: datetime, reason: str
    ) -> list[WebhookEndpoint]:
        """ONE transaction: disable endpoints failing since before `failing_before`, fail
        their pending deliveries, and write a `webhook.disabled` event to their owners."""

    async def watch_webhook_messages(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever messages are written (any process), and after the
        notice connection was lost and is back."""
