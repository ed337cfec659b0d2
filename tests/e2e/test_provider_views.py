"""What providers read, through the HTTP app on real settlements (PostgreSQL and anvil):
`/v1/payments`, `/v1/payments/{id}` and `/v1/ledger/entries`, as JSON pages and CSV. A
provider sees its own payments and entries only, the operator everyone's, an agent
nothing; every bad query parameter is 400."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from payfirst.adapters.evm_chain import EvmChain
from payfirst.api.services import Services
from payfirst.api.views import ENTRY_COLUMNS, PAYMENT_COLUMNS, payment_view
from payfirst.app import build_app
from payfirst.domain.accounts import Role
from payfirst.domain.ledger import fee_of
from payfirst.domain.models import Token
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.ports.store import PaymentRow
from payfirst.usecases.deps import ServedNetworks
from payfirst.usecases.views import AssetInfo
from tests.e2e.harness import (
    SELLER,
    SETTLE_PAY_TO,
    SHOP,
    Harness,
    request_v2,
    requirements_v2,
)
from tests.e2e.test_admin_auth import Caller, assert_unauthorized, call, caller
from tests.fixtures.store import execute_raw, fetch_raw

#: The platform's treasury in these tests: payments to it are collected for a provider.
TREASURY = SHOP
FEE_BPS = 250
NETWORK = "eip155:31337"
# Each price says which provider and endpoint a payment is for (see `_for_endpoints`).
A_COLLECTED = 25_000  # to the treasury for provider A, through its endpoint a1
A_DIRECT = 26_000  # to the seller's address, through A's endpoint a2 (A not credited)
B_COLLECTED = 27_000  # to the treasury for provider B, through its endpoint b1
PLAIN = 28_000  # to the seller: no provider, no endpoint


@dataclass
class Paid:
    h: Harness
    operator: Caller
    a: Caller
    b: Caller
    agent: Caller
    a1: UUID
    a2: UUID
    b1: UUID
    ids: dict[int, list[UUID]]  # by price


async def _endpoint(h: Harness, provider: Caller, resource: str, pay_to: str) -> UUID:
    endpoint_id = uuid4()
    await execute_raw(
        h.store,
        "INSERT INTO endpoints (id, provider_id, method, resource, amount, asset, chain_id, pay_to)"
        " VALUES ($1, $2, 'GET', $3, 1000, $4, $5, $6)",
        endpoint_id,
        provider.account.id,
        resource,
        h.deployment.usdc,
        h.deployment.chain_id,
        pay_to,
    )
    return endpoint_id


def _for_endpoints(p: Paid) -> str:
    """A test-only trigger doing what the accept path of paid endpoints does: record, when
    the payment is accepted (long before it completes), the endpoint paid for and, when the
    treasury collects, the provider and its fee."""
    a, b = p.a.account.id, p.b.account.id
    return f"""
CREATE FUNCTION test_views_endpoints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.amount = {A_COLLECTED} THEN
        NEW.provider_id := '{a}'; NEW.fee_bps := {FEE_BPS}; NEW.endpoint_id := '{p.a1}';
    ELSIF NEW.amount = {A_DIRECT} THEN
        NEW.endpoint_id := '{p.a2}';
    ELSIF NEW.amount = {B_COLLECTED} THEN
        NEW.provider_id := '{b}'; NEW.fee_bps := {FEE_BPS}; NEW.endpoint_id := '{p.b1}';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER test_views_endpoints BEFORE INSERT ON payment_queue
    FOR EACH ROW EXECUTE FUNCTION test_views_endpoints();
"""


_DROP = """
DROP TRIGGER IF EXISTS test_views_endpoints ON payment_queue;
DROP FUNCTION IF EXISTS test_views_endpoints();
"""


async def _settle(h: Harness, payer: int, amount: int) -> None:
    pay_to = TREASURY if amount in (A_COLLECTED, B_COLLECTED) else SELLER
    body = request_v2(h.payer(payer), requirements_v2(h, amount, pay_to=pay_to))
    answer = (await h.http.post("/settle", json=body)).json()
    assert answer["success"] is True, answer


@pytest.fixture
async def paid(harness: Harness) -> AsyncIterator[Paid]:
    h = harness
    operator = await caller(h, Role.OPERATOR, "ops")
    a = await caller(h, Role.PROVIDER, "provider a")
    b = await caller(h, Role.PROVIDER, "provider b")
    agent = await caller(h, Role.AGENT, "agent")
    a1 = await _endpoint(h, a, "/a/one", TREASURY)
    a2 = await _endpoint(h, a, "/a/two", SELLER)
    b1 = await _endpoint(h, b, "/b/one", TREASURY)
    p = Paid(h, operator, a, b, agent, a1, a2, b1, {})
    await execute_raw(h.store, _for_endpoints(p))
    try:
        prices = [A_COLLECTED] * 3 + [A_DIRECT] * 2 + [B_COLLECTED] * 2 + [PLAIN]
        await asyncio.gather(*(_settle(h, 3 + i % 4, price) for i, price in enumerate(prices)))
        await h.settled()
        rows = await fetch_raw(h.store, "SELECT id, amount, status FROM payment_queue")
        assert {r["status"] for r in rows} == {"completed"}
        for price in set(prices):
            p.ids[price] = [r["id"] for r in rows if r["amount"] == price]
        yield p
    finally:
        await execute_raw(h.store, _DROP)


async def _get(p: Paid, who: Caller | None, path: str, **params: Any) -> httpx.Response:
    return await call(p.h, "GET", path, who, params=params)


async def _pages(p: Paid, who: Caller, path: str, key: str, **params: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    while True:
        extra = {} if cursor is None else {"cursor": cursor}
        answer = await _get(p, who, path, **params, **extra)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {key, "next_cursor"}
        pages.append(body[key])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50


def _ids(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [row["id"] for page in pages for row in page]


def _newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)


def _strs(ids: list[UUID]) -> set[str]:
    return {str(i) for i in ids}


async def test_a_provider_lists_its_own_payments_newest_first(paid: Paid) -> None:
    p = paid
    mine = p.ids[A_COLLECTED] + p.ids[A_DIRECT]
    pages = await _pages(p, p.a, "/v1/payments", "payments", limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    rows = [row for page in pages for row in page]
    assert set(_ids(pages)) == _strs(mine) and len(rows) == len(mine)
    assert rows == _newest_first(rows)
    usdc = p.h.deployment.usdc
    fee = fee_of(A_COLLECTED, FEE_BPS)
    for row in rows:
        assert row["status"] == "completed" and row["payment_type"] == "settle"
        assert (row["asset"], row["decimals"], row["network"]) == (usdc, 6, NETWORK)
        assert row["tx_hash"] and row["error"] is None
        assert datetime.fromisoformat(row["created_at"]).tzinfo is not None
        if row["amount"] == str(A_COLLECTED):
            assert row["provider_id"] == str(p.a.account.id)
            assert row["endpoint_id"] == str(p.a1) and row["pay_to"] == TREASURY
            assert (row["fee_bps"], row["fee"]) == (FEE_BPS, str(fee))
            assert row["net"] == str(A_COLLECTED - fee)
        else:
            assert row["amount"] == str(A_DIRECT) and row["endpoint_id"] == str(p.a2)
            assert (row["provider_id"], row["fee"], row["net"]) == (None, None, str(A_DIRECT))
    # One payment: what the listing shows.
    for row in rows:
        answer = await _get(p, p.a, f"/v1/payments/{row['id']}")
        assert answer.status_code == 200 and answer.json() == row
    # B its own; the operator everyone's, or one provider's.
    b_pages = await _pages(p, p.b, "/v1/payments", "payments")
    assert set(_ids(b_pages)) == _strs(p.ids[B_COLLECTED])
    every = _ids(await _pages(p, p.operator, "/v1/payments", "payments", limit=3))
    assert set(every) == _strs([i for ids in p.ids.values() for i in ids])
    as_a = _ids(await _pages(p, p.operator, "/v1/payments", "payments", provider_id=p.a.account.id))
    assert as_a == _ids(pages)


async def test_filters_by_status_time_and_endpoint(paid: Paid) -> None:
    p = paid

    async def listed(**params: Any) -> list[str]:
        return _ids(await _pages(p, p.a, "/v1/payments", "payments", limit=2, **params))

    everything = await listed()
    assert await listed(status="completed") == everything
    assert await listed(status=["pending", "failed"]) == []
    assert await listed(status="sent,confirmation_failed,completed") == everything
    assert set(await listed(endpoint_id=p.a2)) == _strs(p.ids[A_DIRECT])
    assert set(await listed(endpoint_id=p.a1, status="completed")) == _strs(p.ids[A_COLLECTED])
    rows = (await _get(p, p.a, "/v1/payments", limit=100)).json()["payments"]
    oldest = min(datetime.fromisoformat(r["created_at"]) for r in rows)
    newest = max(datetime.fromisoformat(r["created_at"]) for r in rows)
    assert await listed(since=oldest.isoformat()) == everything
    assert await listed(until=oldest.isoformat()) == []
    after = (newest + timedelta(microseconds=1)).isoformat()
    assert await listed(until=after, since=oldest.isoformat()) == everything
    at_newest = [r["id"] for r in rows if datetime.fromisoformat(r["created_at"]) == newest]
    assert sorted(await listed(since=newest.isoformat())) == sorted(at_newest)


async def test_pages_stay_whole_while_payments_arrive(paid: Paid) -> None:
    p = paid
    before = _ids(await _pages(p, p.a, "/v1/payments", "payments", limit=100))
    first = (await _get(p, p.a, "/v1/payments", limit=2)).json()
    # A payment settled for A between two pages: newer than every listed one.
    await _settle(p.h, 7, A_COLLECTED)
    rest = await _get(p, p.a, "/v1/payments", limit=100, cursor=first["next_cursor"])
    listed = [r["id"] for r in first["payments"] + rest.json()["payments"]]
    assert listed == before
    after = _ids(await _pages(p, p.a, "/v1/payments", "payments", limit=2))
    assert len(after) == len(before) + 1 and after[1:] == before


async def test_a_provider_never_sees_another_providers_payments_or_entries(paid: Paid) -> None:
    p = paid
    for payment_id in p.ids[B_COLLECTED] + p.ids[PLAIN]:
        answer = await _get(p, p.a, f"/v1/payments/{payment_id}")
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "unknown_payment"
    assert (await _get(p, p.a, f"/v1/payments/{uuid4()}")).status_code == 404
    # B's endpoint or payment as A's filter: nothing, as JSON and as CSV.
    on_b = await _get(p, p.a, "/v1/payments", endpoint_id=p.b1)
    assert on_b.json() == {"payments": [], "next_cursor": None}
    on_b_csv = await _get(p, p.a, "/v1/payments", endpoint_id=p.b1, format="csv")
    assert list(csv.reader(io.StringIO(on_b_csv.text))) == [list(PAYMENT_COLUMNS)]
    b_payment = p.ids[B_COLLECTED][0]
    entries = await _get(p, p.a, "/v1/ledger/entries", payment_id=b_payment)
    assert entries.json() == {"entries": [], "next_cursor": None}
    # Naming B is 404, like an account that does not exist.
    for path in ("/v1/payments", "/v1/ledger/entries"):
        answer = await _get(p, p.a, path, provider_id=p.b.account.id)
        assert answer.status_code == 404 and answer.json()["error"] == "unknown_account"
    # A's CSV holds none of B's payments.
    exported = (await _get(p, p.a, "/v1/payments", format="csv")).text
    assert not any(str(i) in exported for i in p.ids[B_COLLECTED] + p.ids[PLAIN])
    # A cursor of B's listing is refused to A.
    b_cursor = (await _get(p, p.b, "/v1/payments", limit=1)).json()["next_cursor"]
    assert b_cursor is not None
    answer = await _get(p, p.a, "/v1/payments", limit=1, cursor=b_cursor)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


async def test_a_provider_reads_the_entries_of_its_ledger_accounts(paid: Paid) -> None:
    p = paid
    pages = await _pages(p, p.a, "/v1/ledger/entries", "entries", limit=2)
    entries = [e for page in pages for e in page]
    net = A_COLLECTED - fee_of(A_COLLECTED, FEE_BPS)
    account = {
        "kind": "provider",
        "owner": str(p.a.account.id),
        "asset": p.h.deployment.usdc,
        "network": NETWORK,
    }
    assert {e["payment_id"] for e in entries} == _strs(p.ids[A_COLLECTED])
    for entry in entries:
        assert entry["account"] == account
        assert (entry["amount"], entry["decimals"]) == (str(net), 6)
        assert entry["transaction_kind"] == "payment"
    keys = [(e["created_at"], e["transaction_id"], e["position"]) for e in entries]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    one = p.ids[A_COLLECTED][0]
    only = await _get(p, p.a, "/v1/ledger/entries", payment_id=one)
    assert [e["payment_id"] for e in only.json()["entries"]] == [str(one)]
    # The operator: every entry of a payment, signed, balanced; the platform's fees.
    everything = await _get(p, p.operator, "/v1/ledger/entries", payment_id=one)
    amounts = [int(e["amount"]) for e in everything.json()["entries"]]
    assert sorted(amounts) == sorted([-A_COLLECTED, net, fee_of(A_COLLECTED, FEE_BPS)])
    fees = await _pages(p, p.operator, "/v1/ledger/entries", "entries", account_kind="fees")
    collected = p.ids[A_COLLECTED] + p.ids[B_COLLECTED]
    assert {e["payment_id"] for page in fees for e in page} == _strs(collected)


def _csv_rows(answer: httpx.Response, filename: str) -> list[dict[str, str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == f'attachment; filename="{filename}"'
    return list(csv.DictReader(io.StringIO(answer.text)))


async def test_csv_exports_hold_every_matching_row_and_run_no_formula(paid: Paid) -> None:
    p = paid
    listed = (await _get(p, p.a, "/v1/payments", limit=100)).json()["payments"]
    rows = _csv_rows(await _get(p, p.a, "/v1/payments", format="csv"), "payments.csv")
    assert [r["id"] for r in rows] == [r["id"] for r in listed]
    for row, json_row in zip(rows, listed, strict=True):
        assert row == {k: "" if json_row[k] is None else str(json_row[k]) for k in PAYMENT_COLUMNS}
    by_accept = await call(p.h, "GET", "/v1/payments", p.a, headers={"Accept": "text/csv"})
    assert _csv_rows(by_accept, "payments.csv") == rows
    filtered = await _get(p, p.a, "/v1/payments", format="csv", endpoint_id=p.a2)
    assert {r["id"] for r in _csv_rows(filtered, "payments.csv")} == _strs(p.ids[A_DIRECT])
    # A payment's error text starting with a formula (the pipeline stores node messages as
    # they come) is exported as text.
    target = p.ids[A_COLLECTED][0]
    evil = '=HYPERLINK("http://evil.example","x")'
    await execute_raw(p.h.store, "UPDATE payment_queue SET error = $2 WHERE id = $1", target, evil)
    await execute_raw(
        p.h.store, "UPDATE payment_queue SET error = '@SUM(1+1)' WHERE id = $1", p.ids[A_DIRECT][0]
    )
    rows = _csv_rows(await _get(p, p.a, "/v1/payments", format="csv"), "payments.csv")
    errors = {r["id"]: r["error"] for r in rows}
    assert errors[str(target)] == "'" + evil
    assert errors[str(p.ids[A_DIRECT][0])] == "'@SUM(1+1)"
    # Signed amounts stay numbers: the operator's entries export.
    answer = await _get(p, p.operator, "/v1/ledger/entries", format="csv")
    entries = _csv_rows(answer, "ledger-entries.csv")
    assert list(entries[0]) == list(ENTRY_COLUMNS)
    negative = [e["amount"] for e in entries if e["amount"].startswith("-")]
    assert negative and all(int(a) < 0 for a in negative)
    assert sum(int(e["amount"]) for e in entries) == 0
    count = await fetch_raw(p.h.store, "SELECT count(*) AS n FROM ledger_entries")
    assert len(entries) == count[0]["n"]
    mine = _csv_rows(await _get(p, p.a, "/v1/ledger/entries", format="csv"), "ledger-entries.csv")
    assert {e["account_owner"] for e in mine} == {str(p.a.account.id)}


_BAD_PAYMENT_PARAMS: list[dict[str, Any]] = [
    {"limit": "0"},
    {"limit": "101"},
    {"limit": "-1"},
    {"limit": "1.5"},
    {"limit": "ten"},
    {"limit": ""},
    {"cursor": "not-a-cursor"},
    {"cursor": "!!"},
    {"cursor": "A" * 300},
    {"status": "bogus"},
    {"status": ""},
    {"status": "completed,,failed"},
    {"since": "yesterday"},
    {"since": "2026-01-01"},
    {"until": "2026-01-01T00:00:00"},
    {"until": "2026-02-30T00:00:00Z"},
    {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    {"endpoint_id": "nope"},
    {"provider_id": "12"},
    {"format": "xml"},
    {"format": "csv", "limit": "5"},
    {"format": "csv", "cursor": "abc"},
    {"unknown": "1"},
    {"account_kind": "fees"},
]
_BAD_ENTRY_PARAMS: list[dict[str, Any]] = [
    {"limit": "1000"},
    {"cursor": "e30"},
    {"account_kind": "bogus"},
    {"payment_id": "nope"},
    {"since": "now"},
    {"status": "completed"},
    {"endpoint_id": str(uuid4())},
    {"format": "CSV"},
]


async def test_every_bad_query_parameter_is_400(harness: Harness) -> None:
    h = harness
    provider = await caller(h, Role.PROVIDER, "provider")
    cases = [("/v1/payments", q) for q in _BAD_PAYMENT_PARAMS]
    cases += [("/v1/ledger/entries", q) for q in _BAD_ENTRY_PARAMS]
    cases += [
        ("/v1/payments?limit=1&limit=2", {}),
        ("/v1/payments?since=2026-01-01T00:00:00Z&since=2026-01-01T00:00:00Z", {}),
        (f"/v1/payments/{uuid4()}", {"limit": "1"}),
        ("/v1/payments/not-a-uuid", {}),
    ]
    for path, params in cases:
        answer = await call(h, "GET", path, provider, params=params or None)
        assert answer.status_code == 400, (path, params, answer.text)
        body = answer.json()
        assert body["error"] == "invalid_request" and body["message"], (path, params)
    # An operator's account_kind is fine; a provider's own kind too.
    operator = await caller(h, Role.OPERATOR, "ops")
    ok = await call(h, "GET", "/v1/ledger/entries", operator, params={"account_kind": "fees"})
    assert ok.status_code == 200, ok.text
    own = await call(h, "GET", "/v1/ledger/entries", provider, params={"account_kind": "provider"})
    assert own.status_code == 200, own.text


@pytest.mark.parametrize(
    "path",
    ["/v1/payments", "/v1/payments/3f1d6a52-8a4e-4c1b-9d7e-2b5f0c9e6a11", "/v1/ledger/entries"],
)
async def test_an_agent_is_403_and_no_key_401(harness: Harness, path: str) -> None:
    h = harness
    agent = await caller(h, Role.AGENT, "agent")
    answer = await call(h, "GET", path, agent)
    assert answer.status_code == 403 and answer.json()["error"] == "forbidden"
    assert_unauthorized(await call(h, "GET", path))
    assert_unauthorized(await call(h, "GET", path, params={"format": "csv"}))


def _app(h: Harness, **config: Any) -> httpx.AsyncClient:
    services = Services(
        store=h.store,
        chain=EvmChain(h.rpc),
        chain_id=h.deployment.chain_id,
        settle_pay_to=SETTLE_PAY_TO,
        **config,
    )
    transport = httpx.ASGITransport(app=build_app(services))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_fee_and_net_are_shown_for_a_completed_payment_only(paid: Paid) -> None:
    """A payment not yet completed (or failed) is never shown as credited."""
    p = paid
    await p.h.worker.stop()
    body = request_v2(p.h.payer(8), requirements_v2(p.h, A_COLLECTED, pay_to=TREASURY))
    async with _app(p.h, settle_timeout_s=0.2) as http:
        answer = (await http.post("/settle", json=body)).json()
    assert answer["errorReason"] == "settlement_pending", answer
    (pending,) = await fetch_raw(
        p.h.store, "SELECT id FROM payment_queue WHERE status <> 'completed'"
    )
    path = f"/v1/payments/{pending['id']}"
    row = (await _get(p, p.a, path)).json()
    assert (row["status"], row["provider_id"], row["fee_bps"]) == (
        "pending",
        str(p.a.account.id),
        FEE_BPS,
    )
    assert (row["fee"], row["net"]) == (None, None)
    listed = (await _get(p, p.a, "/v1/payments", status="pending")).json()["payments"]
    assert listed == [row]
    exported = _csv_rows(await _get(p, p.a, "/v1/payments", format="csv"), "payments.csv")
    (as_csv,) = (r for r in exported if r["id"] == str(pending["id"]))
    assert (as_csv["fee"], as_csv["net"]) == ("", "")
    await p.h.worker.start()
    p.h.worker.payment_queued.set()
    await p.h.settled()
    done = (await _get(p, p.a, path)).json()
    fee = fee_of(A_COLLECTED, FEE_BPS)
    assert (done["status"], done["fee"], done["net"]) == (
        "completed",
        str(fee),
        str(A_COLLECTED - fee),
    )


@pytest.mark.parametrize("status", [s for s in PaymentStatus if s is not PaymentStatus.COMPLETED])
@pytest.mark.parametrize("provider_id", [None, UUID(int=7)])
def test_no_share_is_shown_before_completion(status: PaymentStatus, provider_id: UUID) -> None:
    row = PaymentRow(
        id=uuid4(),
        status=status,
        payment_type=PaymentType.SETTLE,
        payer=SELLER,
        amount=10_000,
        asset=SELLER,
        chain_id=31337,
        pay_to=TREASURY,
        endpoint_id=uuid4(),
        provider_id=provider_id,
        fee_bps=FEE_BPS if provider_id else None,
        tx_hash=None,
        error=None,
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )
    view = payment_view(row, AssetInfo(ServedNetworks([]), _no_tokens), lambda c, a: 6)
    assert (view["fee"], view["net"]) == (None, None)
    completed = payment_view(
        dataclasses.replace(row, status=PaymentStatus.COMPLETED),
        AssetInfo(ServedNetworks([]), _no_tokens),
        lambda c, a: 6,
    )
    assert completed["net"] == str(10_000 - (fee_of(10_000, FEE_BPS) if provider_id else 0))


async def _no_tokens() -> list[Token]:
    return []


async def test_an_export_of_more_rows_than_its_limit_is_400_before_any_row(paid: Paid) -> None:
    """Never an export cut short without a word: narrow it with since/until."""
    p = paid
    mine = p.ids[A_COLLECTED] + p.ids[A_DIRECT]  # 5 payments
    auth = p.a.headers
    async with _app(p.h, export_limit=len(mine) - 1) as http:
        over = await http.get("/v1/payments", params={"format": "csv"}, headers=auth)
        assert over.status_code == 400, over.text
        assert over.headers["content-type"] == "application/json"
        assert over.json()["error"] == "invalid_request"
        assert "since" in over.json()["message"]
        narrowed = await http.get(
            "/v1/payments", params={"format": "csv", "endpoint_id": str(p.a2)}, headers=auth
        )
        assert len(_csv_rows(narrowed, "payments.csv")) == len(p.ids[A_DIRECT])
        assert narrowed.headers["x-export-limit"] == str(len(mine) - 1)
        entries = await http.get(
            "/v1/ledger/entries", params={"format": "csv"}, headers=p.operator.headers
        )
        assert entries.status_code == 400, entries.text
    async with _app(p.h, export_limit=len(mine)) as http:
        exact = await http.get("/v1/payments", params={"format": "csv"}, headers=auth)
        assert {r["id"] for r in _csv_rows(exact, "payments.csv")} == _strs(mine)
