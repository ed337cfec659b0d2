"""What providers and the operator read, without HTTP: payments and ledger entries a page at
a time (newest first, behind an opaque cursor), one payment, every row of an export, and the
checks of what a caller asks for.

Who sees what is decided here. A provider sees the payments collected for it or paid to one
of its endpoints, and the entries of its own ledger accounts (kind `provider`, owner its
id); the operator sees everything and may narrow to one provider. A cursor only says where
a page starts: the scope is applied by the query every time, so a hand-made cursor can at
most move within the caller's own rows. It carries a digest of the filters it was made for,
and is refused with any others."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Final, Generic, TypeVar
from uuid import UUID

from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.ledger import AccountKind
from payfirst.domain.models import Token
from payfirst.domain.networks import KNOWN_NETWORKS, NetworkRegistry, caip2_id
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus
from payfirst.ports.store import (
    EntryKey,
    EntryRow,
    EntryScope,
    PaymentKey,
    PaymentRow,
    PaymentScope,
    Store,
)
from payfirst.usecases.deps import ServedNetworks

MAX_PAGE: Final = 100
DEFAULT_PAGE: Final = 50
#: The most rows one export holds: narrow a larger one with since/until.
EXPORT_LIMIT: Final = 100_000
#: An export reads this many rows at a time (its memory stays bounded).
EXPORT_PAGE: Final = 500
MAX_CURSOR_CHARS: Final = 200
MAX_TIME_CHARS: Final = 40

# RFC 3339 date-time, the offset required. A '+' left unencoded in a query string arrives
# as a space; it is read as the '+' it was.
_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+\- ][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_CURSOR_TEXT: Final = re.compile(r"[A-Za-z0-9_-]{1,200}", re.ASCII)
_CURSOR: Final = re.compile(
    r"(p|e)\.(-?[0-9]{1,19})\.([0-9a-f]{32})\.([0-9]{1,10})\.([0-9a-f]{16})", re.ASCII
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_POSITION: Final = 2**31 - 1

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class ViewPage(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: the last page


@dataclass(frozen=True, slots=True)
class PaymentFilters:
    """What a caller asked of the payments listing (checked values)."""

    provider_id: UUID | None = None  # the operator's narrowing; a provider's own id only
    statuses: tuple[PaymentStatus, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    endpoint_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class EntryFilters:
    """What a caller asked of the ledger entries listing (checked values)."""

    provider_id: UUID | None = None
    account_kind: AccountKind | None = None
    payment_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


# --- checks of what a caller gives (PaymentRejected(INVALID_REQUEST) says what is wrong) ---


def _invalid(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_REQUEST, message)


def check_statuses(values: Iterable[str]) -> tuple[PaymentStatus, ...]:
    """Statuses given repeated or comma-separated, each one of the payment statuses."""
    known = {s.value: s for s in PaymentStatus}
    found: set[PaymentStatus] = set()
    for value in values:
        for part in value.split(","):
            status = known.get(part.strip())
            if status is None:
                raise _invalid(f"status must be one of {', '.join(known)}")
            found.add(status)
    return tuple(sorted(found))


def check_time(value: str, what: str) -> datetime:
    """An RFC 3339 date-time with its offset (2026-01-31T12:00:00Z), as UTC."""
    if len(value) > MAX_TIME_CHARS or not _TIME.fullmatch(value):
        raise _invalid(
            f"{what} must be an RFC 3339 date-time with an offset (2026-01-31T12:00:00Z)"
        )
    text = value.upper().replace("Z", "+00:00")
    if text[-6] == " ":
        text = f"{text[:-6]}+{text[-5:]}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise _invalid(f"{what} is not a valid date-time") from None


def check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise _invalid("since must be before until")


def check_account_kind(value: str) -> AccountKind:
    try:
        return AccountKind(value)
    except ValueError:
        kinds = ", ".join(k.value for k in AccountKind)
        raise _invalid(f"account_kind must be one of {kinds}") from None


def check_page_size(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not re.fullmatch(r"[0-9]{1,4}", text, re.ASCII) or not 1 <= int(text) <= MAX_PAGE:
        raise _invalid(f"limit must be an integer 1..{MAX_PAGE}")
    return int(text)


# --- cursors ----------------------------------------------------------------------------


def _canonical(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return str(_micros(value))
    if isinstance(value, tuple):
        return ",".join(_canonical(v) for v in value)
    return str(value)


def _digest(kind: str, scope: PaymentScope | EntryScope) -> str:
    """The filters a cursor was made for, as a short digest (the same in every process)."""
    parts = [kind] + [_canonical(getattr(scope, f.name)) for f in fields(scope)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _micros(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_cursor(
    kind: str, scope: PaymentScope | EntryScope, at: datetime, row: UUID, pos: int
) -> str:
    text = f"{kind}.{_micros(at)}.{row.hex}.{pos}.{_digest(kind, scope)}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(
    kind: str, scope: PaymentScope | EntryScope, cursor: str
) -> tuple[datetime, UUID, int]:
    """The (created_at, id, position) a cursor made for this listing and these filters
    holds; 400 for anything else."""
    bad = _invalid("cursor is not one this listing gave with these filters")
    if len(cursor) > MAX_CURSOR_CHARS or not _CURSOR_TEXT.fullmatch(cursor):
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    match = _CURSOR.fullmatch(text)
    if match is None or match[1] != kind or match[5] != _digest(kind, scope):
        raise bad
    position = int(match[4])
    if position > _MAX_POSITION:
        raise bad
    try:
        at = _EPOCH + timedelta(microseconds=int(match[2]))
    except OverflowError:
        raise bad from None
    return at, UUID(hex=match[3]), position


# --- assets and networks ----------------------------------------------------------------

#: (chain id, asset address) -> the asset's decimals, or None when unknown.
DecimalsOf = Callable[[int | None, str], "int | None"]


class AssetInfo:
    """The network and decimals of what a row records. A row of no chain (from before
    migration 0009) is on the single served network, when there is exactly one. Decimals:
    the served network's asset, else a known network's (Base USDC: 6), else those the
    tokens sold here record for their payment asset; None when none knows it."""

    def __init__(
        self, served: ServedNetworks, tokens: Callable[[], Awaitable[list[Token]]]
    ) -> None:
        self._served = served
        self._known = NetworkRegistry(KNOWN_NETWORKS)
        self._tokens = tokens

    def chain_of(self, chain_id: int | None) -> int | None:
        if chain_id is not None:
            return chain_id
        return self._served.all[0].network.chain_id if len(self._served.all) == 1 else None

    def network_of(self, chain_id: int | None) -> str | None:
        chain = self.chain_of(chain_id)
        return None if chain is None else caip2_id(chain)

    async def decimals(self) -> DecimalsOf:
        """A lookup for one answer (the tokens read once, from their cache)."""
        by_token = {
            (t.chain_id, t.payment_asset.lower()): t.asset_decimals for t in await self._tokens()
        }

        def of(chain_id: int | None, asset: str) -> int | None:
            chain = self.chain_of(chain_id)
            if chain is None:
                return None
            served = self._served.by_chain_id(chain)
            found = served.network.asset(asset) if served is not None else None
            found = found or self._known.asset(chain, asset)
            if found is not None:
                return found.decimals
            return by_token.get((chain, asset.lower()))

        return of


# --- the views --------------------------------------------------------------------------


def _not_found() -> PaymentRejected:
    # The same answer for a payment that does not exist and one the caller may not see.
    return PaymentRejected(Reason.UNKNOWN_PAYMENT, "no such payment")


class ProviderViews:
    def __init__(self, store: Store, export_limit: int = EXPORT_LIMIT) -> None:
        self._store = store
        #: The most rows one export holds; more matching: the export is refused.
        self.export_limit = export_limit

    async def _provider(self, caller: Account, given: UUID | None) -> UUID | None:
        """The provider whose rows the caller reads: a provider itself (naming another is
        404, like a missing account); the operator the one it names, or None: all."""
        if caller.role is not Role.OPERATOR:
            if given is not None and given != caller.id:
                raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")
            return caller.id
        if given is not None and await self._store.get_account(given) is None:
            raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")
        return given

    async def payment_scope(self, caller: Account, filters: PaymentFilters) -> PaymentScope:
        check_window(filters.since, filters.until)
        return PaymentScope(
            provider_id=await self._provider(caller, filters.provider_id),
            statuses=filters.statuses,
            since=filters.since,
            until=filters.until,
            endpoint_id=filters.endpoint_id,
        )

    async def entry_scope(self, caller: Account, filters: EntryFilters) -> EntryScope:
        check_window(filters.since, filters.until)
        provider = await self._provider(caller, filters.provider_id)
        kind = filters.account_kind
        if provider is not None:
            if kind not in (None, AccountKind.PROVIDER):
                raise _invalid("a provider's ledger accounts are of kind provider")
            kind = AccountKind.PROVIDER
        return EntryScope(
            account_kind=kind,
            owner=None if provider is None else str(provider),
            payment_id=filters.payment_id,
            since=filters.since,
            until=filters.until,
        )

    async def payments(
        self, scope: PaymentScope, limit: int, cursor: str | None = None
    ) -> ViewPage[PaymentRow]:
        before: PaymentKey | None = None
        if cursor is not None:
            at, row_id, _ = decode_cursor("p", scope, cursor)
            before = (at, row_id)
        rows = await self._store.view_payments(scope, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        next_cursor = (
            None if last is None else encode_cursor("p", scope, last.created_at, last.id, 0)
        )
        return ViewPage(rows, next_cursor)

    async def payment(self, caller: Account, payment_id: UUID) -> PaymentRow:
        provider = None if caller.role is Role.OPERATOR else caller.id
        found = await self._store.view_payment(payment_id, provider)
        if found is None:
            raise _not_found()
        return found

    async def entries(
        self, scope: EntryScope, limit: int, cursor: str | None = None
    ) -> ViewPage[EntryRow]:
        before: EntryKey | None = None
        if cursor is not None:
            before = decode_cursor("e", scope, cursor)
        rows = await self._store.view_entries(scope, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        next_cursor = (
            None
            if last is None
            else encode_cursor("e", scope, last.created_at, last.transaction_id, last.position)
        )
        return ViewPage(rows, next_cursor)

    async def export_payments(
        self, scope: PaymentScope, page: int = EXPORT_PAGE
    ) -> AsyncIterator[list[PaymentRow]]:
        """Every payment in scope, newest first, `page` rows at a time. Checked before the
        first row is read: more than `export_limit` is invalid_request (an export is never
        cut short)."""
        count = await self._store.count_view_payments(scope, self.export_limit + 1)
        _check_export(count, self.export_limit)
        return _pages(
            lambda before, size: self._store.view_payments(scope, size, before),
            lambda row: (row.created_at, row.id),
            self.export_limit,
            page,
        )

    async def export_entries(
        self, scope: EntryScope, page: int = EXPORT_PAGE
    ) -> AsyncIterator[list[EntryRow]]:
        """Every entry in scope, newest first, `page` rows at a time; checked as
        export_payments."""
        count = await self._store.count_view_entries(scope, self.export_limit + 1)
        _check_export(count, self.export_limit)
        return _pages(
            lambda before, size: self._store.view_entries(scope, size, before),
            lambda row: (row.created_at, row.transaction_id, row.position),
            self.export_limit,
            page,
        )


def _check_export(count: int, limit: int) -> None:
    if count > limit:
        raise _invalid(f"more than {limit} rows match: narrow the export with since and until")


async def _pages(
    read: Callable[[K | None, int], Awaitable[list[T]]],
    key: Callable[[T], K],
    cap: int,
    page: int,
) -> AsyncIterator[list[T]]:
    before: K | None = None
    left = cap
    while left > 0:
        size = min(page, left)
        rows = await read(before, size)
        if rows:
            yield rows
        if len(rows) < size:
            return
        left -= len(rows)
        before = key(rows[-1])
