"""What providers read (`/v1/payments`, `/v1/ledger/entries`), as JSON pages or CSV exports.

A provider's key reads its own payments and ledger entries, the operator's every one (or
one provider's, `provider_id`); an agent's key is 403. Amounts are strings of atomic units,
the asset's decimals alongside (null when payfirst does not know the asset). Every query
parameter is checked: an unknown or malformed one, or one given twice, is 400
invalid_request. The rules of who sees what are payfirst.usecases.views'."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from payfirst.api.accounts import admin
from payfirst.api.services import services
from payfirst.domain.accounts import Credential, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.ledger import fee_of
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus
from payfirst.ports.store import EntryRow, PaymentRow
from payfirst.usecases.accounts import check_id
from payfirst.usecases.views import (
    AssetInfo,
    DecimalsOf,
    EntryFilters,
    PaymentFilters,
    ProviderViews,
    check_account_kind,
    check_page_size,
    check_statuses,
    check_time,
)

T = TypeVar("T")
Row = dict[str, Any]

CSV_TYPE: Final = "text/csv; charset=utf-8"
_FORMATS: Final = ("json", "csv")
_PAYMENT_PARAMS: Final = frozenset(
    {"status", "since", "until", "endpoint_id", "provider_id", "limit", "cursor", "format"}
)
_ENTRY_PARAMS: Final = frozenset(
    {"since", "until", "payment_id", "provider_id", "account_kind", "limit", "cursor", "format"}
)
_REPEATABLE: Final = frozenset({"status"})
_MAX_PARAM_CHARS: Final = 1000

PAYMENT_COLUMNS: Final = (
    "id",
    "status",
    "payment_type",
    "payer",
    "amount",
    "asset",
    "decimals",
    "network",
    "pay_to",
    "endpoint_id",
    "provider_id",
    "fee_bps",
    "fee",
    "net",
    "tx_hash",
    "error",
    "created_at",
    "updated_at",
)
ENTRY_COLUMNS: Final = (
    "transaction_id",
    "transaction_kind",
    "payment_id",
    "position",
    "account_kind",
    "account_owner",
    "asset",
    "network",
    "amount",
    "decimals",
    "created_at",
)
#: Columns that hold integers: a signed one ("-25000") is written as it is, a number.
NUMBER_COLUMNS: Final = frozenset({"amount", "decimals", "fee_bps", "fee", "net", "position"})
_NUMBER: Final = re.compile(r"-?[0-9]+", re.ASCII)
#: A spreadsheet reads a cell starting so as a formula.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _views(request: Request) -> ProviderViews:
    svc = services(request)
    return ProviderViews(svc.store, svc.export_limit)


def _assets(request: Request) -> AssetInfo:
    svc = services(request)
    return AssetInfo(svc.served, svc.tokens.all)


@admin(Role.PROVIDER)
async def list_payments(request: Request, caller: Credential) -> Response:
    """
    summary: Payments, newest first, a page at a time, or all of them as CSV.
    description: >
      Provider or operator. A provider sees the payments collected for it and those paid to
      its endpoints; the operator every payment, or one provider's (provider_id). Filters:
      status (repeated or comma-separated), since (inclusive) and until (exclusive), RFC
      3339 date-times of creation, endpoint_id. limit (1..100, default 50) payments after
      `cursor` (the previous page's next_cursor, valid with the same filters only);
      next_cursor is null on the last page. Amounts are strings of atomic units, decimals
      alongside; fee and net are set for a completed payment only (null before, and for a
      failed one): net the payee's share, fee the platform's when it collected the payment
      (null otherwise). format=csv (or Accept text/csv) answers every matching payment as
      CSV (limit and cursor do not apply); more than 100000 matching is 400 before any row
      is sent: narrow the export with since/until.
    responses:
      200: {description: "payments and next_cursor, or CSV"}
      400: {description: "A bad or unknown query parameter, or too many rows for an export"}
      401: {description: No valid API key}
      403: {description: The key's role is neither provider nor operator}
      404: {description: "provider_id: no such account (or not the caller's)"}
    """
    params = _params(request, _PAYMENT_PARAMS)
    filters = PaymentFilters(
        provider_id=_id(params, "provider_id"),
        statuses=check_statuses(params.get("status", [])),
        since=_time(params, "since"),
        until=_time(params, "until"),
        endpoint_id=_id(params, "endpoint_id"),
    )
    csv_wanted = _wants_csv(request, params)
    views = _views(request)
    scope = await views.payment_scope(caller.account, filters)
    assets = _assets(request)
    decimals = await assets.decimals()
    if csv_wanted:
        return _csv(
            "payments.csv",
            PAYMENT_COLUMNS,
            await views.export_payments(scope),
            lambda row: payment_view(row, assets, decimals),
            views.export_limit,
        )
    limit = check_page_size(_one(params, "limit"))
    page = await views.payments(scope, limit, _one(params, "cursor"))
    return JSONResponse(
        {
            "payments": [payment_view(p, assets, decimals) for p in page.items],
            "next_cursor": page.next_cursor,
        }
    )


@admin(Role.PROVIDER)
async def get_payment(request: Request, caller: Credential) -> Response:
    """
    summary: One payment.
    description: >
      Provider or operator: one of the caller's payments (as listed by /v1/payments); the
      operator any.
    responses:
      200: {description: The payment}
      400: {description: "Not a payment id, or a query parameter"}
      401: {description: No valid API key}
      403: {description: The key's role is neither provider nor operator}
      404: {description: No such payment (or not the caller's)}
    """
    _params(request, ())
    payment_id = check_id(request.path_params["payment_id"], "the payment id")
    row = await _views(request).payment(caller.account, payment_id)
    assets = _assets(request)
    return JSONResponse(payment_view(row, assets, await assets.decimals()))


@admin(Role.PROVIDER)
async def list_entries(request: Request, caller: Credential) -> Response:
    """
    summary: Ledger entries, newest first, a page at a time, or all of them as CSV.
    description: >
      Provider or operator. A provider sees the entries of its own ledger accounts (kind
      provider); the operator every entry, or those of one provider (provider_id) or of one
      account kind (account_kind external, provider or fees). Filters: since (inclusive)
      and until (exclusive) RFC 3339 date-times, payment_id. Paged and exported as
      /v1/payments (more than 100000 matching an export is 400); amounts are signed
      strings of atomic units (negative leaves the account).
    responses:
      200: {description: "entries and next_cursor, or CSV"}
      400: {description: "A bad or unknown query parameter, or too many rows for an export"}
      401: {description: No valid API key}
      403: {description: The key's role is neither provider nor operator}
      404: {description: "provider_id: no such account (or not the caller's)"}
    """
    params = _params(request, _ENTRY_PARAMS)
    kind = _one(params, "account_kind")
    filters = EntryFilters(
        provider_id=_id(params, "provider_id"),
        account_kind=None if kind is None else check_account_kind(kind),
        payment_id=_id(params, "payment_id"),
        since=_time(params, "since"),
        until=_time(params, "until"),
    )
    csv_wanted = _wants_csv(request, params)
    views = _views(request)
    scope = await views.entry_scope(caller.account, filters)
    assets = _assets(request)
    decimals = await assets.decimals()
    if csv_wanted:
        return _csv(
            "ledger-entries.csv",
            ENTRY_COLUMNS,
            await views.export_entries(scope),
            lambda row: entry_csv_view(row, assets, decimals),
            views.export_limit,
        )
    limit = check_page_size(_one(params, "limit"))
    page = await views.entries(scope, limit, _one(params, "cursor"))
    return JSONResponse(
        {
            "entries": [entry_view(e, assets, decimals) for e in page.items],
            "next_cursor": page.next_cursor,
        }
    )


# --- query parameters --------------------------------------------------------------------


def _params(request: Request, allowed: Collection[str]) -> dict[str, list[str]]:
    """The query parameters by name: only `allowed` ones, each once (but `status`)."""
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise _invalid(f"unknown query parameter {name[:40]!r} (parameters: {names})")
        if len(value) > _MAX_PARAM_CHARS:
            raise _invalid(f"{name} is too long")
        if name in params and name not in _REPEATABLE:
            raise _invalid(f"{name} is given twice")
        params.setdefault(name, []).append(value)
    return params


def _invalid(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_REQUEST, message)


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return None if not values else values[0]


def _id(params: dict[str, list[str]], name: str) -> UUID | None:
    value = _one(params, name)
    return None if value is None else check_id(value, name)


def _time(params: dict[str, list[str]], name: str) -> datetime | None:
    value = _one(params, name)
    return None if value is None else check_time(value, name)


def _wants_csv(request: Request, params: dict[str, list[str]]) -> bool:
    """format=csv|json decides; without it, the Accept header's first of JSON and CSV."""
    given = _one(params, "format")
    if given is not None:
        if given not in _FORMATS:
            raise _invalid(f"format must be one of {', '.join(_FORMATS)}")
        wanted = given == "csv"
    else:
        wanted = _accepts_csv(request.headers.get("accept", ""))
    if wanted:
        for name in ("limit", "cursor"):
            if name in params:
                raise _invalid(f"{name} is for JSON pages: a CSV export holds every match")
    return wanted


def _accepts_csv(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media == "text/csv":
            return True
        if media in ("application/json", "application/*"):
            return False
    return False


# --- views -------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _iso(at: datetime) -> str:
    return at.isoformat()


def payment_view(row: PaymentRow, assets: AssetInfo, decimals: DecimalsOf) -> Row:
    # Only a completed payment is credited: before (and when it failed) no share is shown.
    done = row.status is PaymentStatus.COMPLETED
    collected = done and row.provider_id is not None
    fee = fee_of(row.amount, row.fee_bps or 0) if collected else None
    return {
        "id": str(row.id),
        "status": row.status.value,
        "payment_type": row.payment_type.value,
        "payer": row.payer,
        "amount": str(row.amount),
        "asset": row.asset,
        "decimals": decimals(row.chain_id, row.asset),
        "network": assets.network_of(row.chain_id),
        "pay_to": row.pay_to,
        "endpoint_id": _text(row.endpoint_id),
        "provider_id": _text(row.provider_id),
        "fee_bps": row.fee_bps,
        "fee": _text(fee),
        "net": str(row.amount - (fee or 0)) if done else None,
        "tx_hash": row.tx_hash,
        "error": row.error,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def entry_view(row: EntryRow, assets: AssetInfo, decimals: DecimalsOf) -> Row:
    return {
        "transaction_id": str(row.transaction_id),
        "transaction_kind": row.transaction_kind.value,
        "payment_id": _text(row.payment_id),
        "position": row.position,
        "account": {
            "kind": row.account_kind.value,
            "owner": row.owner,
            "asset": row.asset,
            "network": assets.network_of(row.chain_id),
        },
        "amount": str(row.amount),
        "decimals": decimals(row.chain_id, row.asset),
        "created_at": _iso(row.created_at),
    }


def entry_csv_view(row: EntryRow, assets: AssetInfo, decimals: DecimalsOf) -> Row:
    view = entry_view(row, assets, decimals)
    account = view.pop("account")
    view.update(
        account_kind=account["kind"],
        account_owner=account["owner"],
        asset=account["asset"],
        network=account["network"],
    )
    return view


# --- CSV ---------------------------------------------------------------------------------


def csv_cell(column: str, value: object) -> str:
    """A cell a spreadsheet never runs: text starting with = + - @ (or a tab or CR) gets a
    leading ', unless it is a plain integer in a number column."""
    if value is None:
        return ""
    text = str(value)
    if column in NUMBER_COLUMNS and _NUMBER.fullmatch(text):
        return text
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def csv_lines(columns: Sequence[str], rows: Iterable[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180: CRLF, quotes where needed
    for row in rows:
        writer.writerow([csv_cell(c, row[c]) for c in columns])
    return out.getvalue()


def _csv(
    filename: str,
    columns: Sequence[str],
    pages: AsyncIterator[list[T]],
    view: Callable[[T], Row],
    limit: int,
) -> Response:
    async def body() -> AsyncIterator[str]:
        yield csv_lines(columns, [dict(zip(columns, columns, strict=True))])
        async for rows in pages:
            yield csv_lines(columns, (view(r) for r in rows))

    return StreamingResponse(
        body(),
        media_type=CSV_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Export-Limit": str(limit),
        },
    )
