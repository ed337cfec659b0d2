"""Webhooks end to end: real PostgreSQL, the shared anvil chain, the real pipeline, and a
real receiver on 127.0.0.1 (tests/e2e/webhook_receiver.py) that verifies every request with
the `standardwebhooks` package.

The dispatcher runs in the test process with loopback allowed explicitly (as an operator
would with PAYFIRST_WEBHOOK_ALLOWED_CIDRS=127.0.0.0/8); the harness's own app keeps the
default (public addresses only) to show the refusals. Retries and the 3-day disable are
driven through the columns (next_attempt_at, failing_since), never by sleeping."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import pytest_asyncio

from payfirst.adapters.webhook_http import WebhookSender, checked_addresses
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.domain.accounts import Account, Role
from payfirst.domain.webhooks import AddressPolicy, EventType, WebhookEndpoint, parse_networks
from payfirst.pipeline.webhooks import WebhookDispatcher
from payfirst.usecases.accounts import Accounts, IssuedKey
from payfirst.usecases.webhooks import new_secret
from tests.e2e.harness import Harness
from tests.e2e.test_accounts_cli import payfirst
from tests.e2e.webhook_receiver import Receiver, running_receiver
from tests.fixtures.store import execute_raw, fetch_raw

LOOPBACK = AddressPolicy(allowed=parse_networks("127.0.0.0/8"))


async def loopback_check(url: str) -> object:
    return await checked_addresses(url, LOOPBACK)


@dataclass
class Owner:
    account: Account
    key: IssuedKey

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.text}"}


@dataclass
class Env:
    h: Harness
    receiver: Receiver
    api: httpx.AsyncClient  # the app with loopback allowed
    dispatchers: list[WebhookDispatcher]

    @property
    def dispatcher(self) -> WebhookDispatcher:
        return self.dispatchers[0]

    async def owner(self, role: Role = Role.PROVIDER, name: str = "owner") -> Owner:
        account, key = await Accounts(self.h.store).create_account(role, name)
        return Owner(account, key)

    async def register(
        self, owner: Owner, name: str, *, mode: str = "ok", **body: Any
    ) -> dict[str, Any]:
        answer = await self.api.post(
            "/v1/webhooks",
            json={"url": self.receiver.url(name), **body},
            headers=owner.headers,
        )
        assert answer.status_code == 201, answer.text
        view: dict[str, Any] = answer.json()
        self.receiver.expect(name, view["secret"], mode)
        return view

    async def start_dispatcher(self, policy: AddressPolicy = LOOPBACK) -> WebhookDispatcher:
        dispatcher = WebhookDispatcher(self.h.store, WebhookSender(policy), idle_s=0.2)
        await dispatcher.start()
        self.dispatchers.append(dispatcher)
        return dispatcher


@pytest_asyncio.fixture
async def env(harness: Harness) -> AsyncIterator[Env]:
    services = Services(store=harness.store, chain=None, webhook_url_check=loopback_check)
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(services)), base_url="http://127.0.0.1"
    )
    async with running_receiver() as receiver:
        e = Env(harness, receiver, api, [])
        try:
            await e.start_dispatcher()
            yield e
        finally:
            for dispatcher in e.dispatchers:
                await dispatcher.stop()
            await api.aclose()


async def until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 30, what: str = ""
) -> None:
    """Wait on a condition (polled), failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s}s: {what}")
        await asyncio.sleep(0.05)


async def rows(e: Env, sql: str, *args: Any) -> list[dict[str, Any]]:
    return await fetch_raw(e.h.store, sql, *args)


async def delivered(e: Env, count: int) -> None:
    """Until `count` deliveries are recorded delivered (the receiver answers first)."""

    async def check() -> bool:
        found = await rows(
            e, "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'delivered'"
        )
        return bool(found[0]["n"] >= count)

    await until(check, what=f"{count} deliveries recorded")


async def emit(e: Env, owner: Owner, count: int) -> None:
    for i in range(count):
        await e.h.store.emit_webhook_event(
            [owner.account.id], EventType.PAYMENT_COMPLETED, {"n": i}
        )


# --- a real payment ---------------------------------------------------------------------


async def test_a_real_payment_sends_signed_events_to_its_agent(env: Env) -> None:
    e = env
    agent = await e.owner(Role.AGENT, "agent")
    await e.register(agent, "agent")
    payer = e.h.payer(1)
    # The agent proved it controls the payer (migration 0015's table, written directly here).
    await execute_raw(
        e.h.store,
        "INSERT INTO agent_payers (address, account_id, verified_at) VALUES ($1, $2, now())",
        payer.address,
        agent.account.id,
    )
    answer = await e.h.buy(payer)
    assert answer.status_code == 202, answer.text
    payment_id = answer.json()["paymentQueueId"]
    await e.h.settled()
    await e.receiver.wait_for(3, "agent")
    by_type = {r.payload["type"]: r for r in e.receiver.received}
    assert set(by_type) == {"payment.queued", "payment.completed", "mint.completed"}
    completed = by_type["payment.completed"].payload
    data = completed["data"]
    assert data["id"] == payment_id and data["status"] == "completed"
    assert data["payer"] == payer.address
    assert isinstance(data["amount"], str) and int(data["amount"]) > 0
    assert data["network"] == f"eip155:{e.h.deployment.chain_id}"
    assert data["tx_hash"].startswith("0x")
    assert completed["timestamp"].endswith("Z")
    assert by_type["mint.completed"].payload["data"]["payment_id"] == payment_id
    # One id per message, each received once, none refused.
    ids = e.receiver.ids("agent")
    assert len(ids) == len(set(ids)) == 3
    assert all(i.startswith("msg_") for i in ids)
    assert e.receiver.refused == []
    stored = await rows(e, "SELECT count(*) AS n FROM webhook_messages")
    assert stored[0]["n"] == 3


async def test_no_endpoint_no_outbox_rows_and_a_rolled_back_change_writes_none(
    env: Env,
) -> None:
    e = env
    payer = e.h.payer(2)
    answer = await e.h.buy(payer)
    assert answer.status_code == 202
    await e.h.settled()
    assert (await rows(e, "SELECT count(*) AS n FROM webhook_messages"))[0]["n"] == 0
    # Subscribed now: a status change rolled back leaves no message, one committed does.
    provider = await e.owner()
    await e.register(provider, "p", event_types=["payment.failed"])
    payment = UUID(answer.json()["paymentQueueId"])
    await execute_raw(
        e.h.store,
        "UPDATE payment_queue SET provider_id = $2, fee_bps = 0 WHERE id = $1",
        payment,
        provider.account.id,
    )
    async with e.h.store.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("UPDATE payment_queue SET status = 'failed' WHERE id = $1", payment)
        inside = await conn.fetchval("SELECT count(*) FROM webhook_messages")
        await tx.rollback()
    assert inside == 1  # written by the very transaction of the change
    assert (await rows(e, "SELECT count(*) AS n FROM webhook_messages"))[0]["n"] == 0
    await execute_raw(
        e.h.store, "UPDATE payment_queue SET status = 'failed' WHERE id = $1", payment
    )
    await e.receiver.wait_for(1, "p")
    assert e.receiver.received[0].payload["type"] == "payment.failed"
    # Back as it was: the harness checks its invariants (a completed payment's mint items).
    await execute_raw(
        e.h.store, "UPDATE payment_queue SET status = 'completed' WHERE id = $1", payment
    )


async def test_payout_completed_reaches_its_provider(env: Env) -> None:
    e = env
    provider = await e.owner()
    await e.register(provider, "payouts", event_types=["payout.completed"])
    await execute_raw(
        e.h.store,
        "INSERT INTO payouts (id, provider_id, asset, chain_id, to_address, amount, status, "
        "trigger, relayer, nonce, tx_hash, raw_tx) VALUES (gen_random_uuid(), $1, $2, 31337, "
        "$2, 1000, 'sent', 'on_demand', $2, 7, '0xabc', '0xdef')",
        provider.account.id,
        e.h.deployment.usdc,
    )
    await execute_raw(e.h.store, "UPDATE payouts SET status = 'completed'")
    await e.receiver.wait_for(1, "payouts")
    data = e.receiver.received[0].payload["data"]
    assert data["amount"] == "1000" and data["tx_hash"] == "0xabc"


# --- failures, retries, the log -----------------------------------------------------------


async def test_a_failing_then_recovered_receiver_gets_every_event_once(env: Env) -> None:
    e = env
    owner = await e.owner()
    hook = await e.register(owner, "flaky", mode="fail")
    await emit(e, owner, 5)

    async def all_failed_once() -> bool:
        found = await rows(
            e,
            "SELECT count(*) AS n FROM webhook_deliveries WHERE attempts >= 1 AND status = 'pending'",
        )
        return bool(found[0]["n"] == 5)

    await until(all_failed_once, what="5 failed first attempts")
    view = (await e.api.get(f"/v1/webhooks/{hook['id']}", headers=owner.headers)).json()
    assert view["failing_since"] is not None and view["enabled"] is True
    # The receiver is back; the retries come due (driven, not waited for).
    e.receiver.modes["flaky"] = "ok"
    await execute_raw(e.h.store, "UPDATE webhook_deliveries SET next_attempt_at = now()")
    e.dispatcher.wake()
    await e.receiver.wait_for(5, "flaky")
    await delivered(e, 5)
    ids = e.receiver.ids("flaky")
    assert len(ids) == len(set(ids)) == 5  # every event once (2xx) per webhook-id
    done = await rows(e, "SELECT status, attempts FROM webhook_deliveries ORDER BY id")
    assert all(d["status"] == "delivered" and d["attempts"] >= 2 for d in done)
    view = (await e.api.get(f"/v1/webhooks/{hook['id']}", headers=owner.headers)).json()
    assert view["failing_since"] is None
    # The delivery log: the 500s with their body cut at 1 KiB, then the 200s.
    log = await e.api.get(f"/v1/webhooks/{hook['id']}/attempts?limit=100", headers=owner.headers)
    attempts = log.json()["attempts"]
    statuses = sorted(a["status"] for a in attempts)
    assert statuses.count(200) == 5 and statuses.count(500) >= 5
    failed = next(a for a in attempts if a["status"] == 500)
    assert len(failed["body"]) == 1024 and failed["latency_ms"] >= 0
    first = await e.api.get(f"/v1/webhooks/{hook['id']}/attempts?limit=2", headers=owner.headers)
    page = first.json()
    assert page["has_more"] is True and len(page["attempts"]) == 2
    rest = await e.api.get(
        f"/v1/webhooks/{hook['id']}/attempts?limit=100&before={page['next_before']}",
        headers=owner.headers,
    )
    assert len(rest.json()["attempts"]) == len(attempts) - 2


async def test_a_receiver_that_is_down_then_back_gets_every_event(env: Env) -> None:
    e = env
    owner = await e.owner()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    answer = await e.api.post(
        "/v1/webhooks",
        json={"url": f"http://127.0.0.1:{closed_port}/hook/down"},
        headers=owner.headers,
    )
    hook = answer.json()
    e.receiver.expect("down", hook["secret"])
    await emit(e, owner, 3)

    async def refused_three() -> bool:
        found = await rows(
            e, "SELECT count(*) AS n FROM webhook_attempts WHERE error LIKE 'ConnectError%'"
        )
        return bool(found[0]["n"] >= 3)

    await until(refused_three, what="3 refused connections logged")
    # The receiver comes up where the endpoint now points.
    patched = await e.api.patch(
        f"/v1/webhooks/{hook['id']}", json={"url": e.receiver.url("down")}, headers=owner.headers
    )
    assert patched.status_code == 200, patched.text
    await execute_raw(e.h.store, "UPDATE webhook_deliveries SET next_attempt_at = now()")
    e.dispatcher.wake()
    await e.receiver.wait_for(3, "down")
    assert sorted(e.receiver.arrivals.values()) == [1, 1, 1]


async def test_two_dispatchers_never_send_one_delivery_at_once(env: Env) -> None:
    e = env
    await e.start_dispatcher()
    owner = await e.owner()
    await e.register(owner, "busy")
    await emit(e, owner, 200)
    await e.receiver.wait_for(200, "busy", timeout_s=60)
    await delivered(e, 200)
    assert e.receiver.max_in_flight_per_id == 1
    assert set(e.receiver.arrivals.values()) == {1}  # no failure, so no second send
    assert e.dispatchers[0].delivered > 0 and e.dispatchers[1].delivered > 0
    assert e.dispatchers[0].delivered + e.dispatchers[1].delivered == 200


# --- replay, disable, enable ------------------------------------------------------------------


async def test_replay_one_message_or_a_time_range(env: Env) -> None:
    e = env
    owner = await e.owner()
    hook = await e.register(owner, "replay")
    before = datetime.now(UTC) - timedelta(seconds=1)
    await emit(e, owner, 3)
    await e.receiver.wait_for(3, "replay")
    first = e.receiver.ids("replay")[0]
    one = await e.api.post(
        f"/v1/webhooks/{hook['id']}/replay", json={"message_id": first}, headers=owner.headers
    )
    assert one.status_code == 202 and one.json() == {"queued": 1}

    async def twice() -> bool:
        return e.receiver.arrivals[first] == 2

    await until(twice, what="the replayed message")
    window = await e.api.post(
        f"/v1/webhooks/{hook['id']}/replay",
        json={"since": before.isoformat(), "until": datetime.now(UTC).isoformat()},
        headers=owner.headers,
    )
    assert window.json() == {"queued": 3}

    async def all_again() -> bool:
        return sum(e.receiver.arrivals.values()) == 3 + 1 + 3

    await until(all_again, what="the replayed range")
    assert set(e.receiver.ids("replay")) == set(e.receiver.arrivals)  # the same ids again
    unknown = await e.api.post(
        f"/v1/webhooks/{hook['id']}/replay", json={"message_id": "msg_nope"}, headers=owner.headers
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_webhook_message"
    bad = await e.api.post(
        f"/v1/webhooks/{hook['id']}/replay", json={"since": "yesterday"}, headers=owner.headers
    )
    assert bad.status_code == 400


async def test_an_endpoint_failing_for_three_days_is_disabled_and_its_owner_told(
    env: Env,
) -> None:
    e = env
    owner = await e.owner()
    failing = await e.register(owner, "dead", mode="fail")
    await e.register(owner, "alerts", event_types=["webhook.disabled"])
    await emit(e, owner, 1)

    async def failed_once() -> bool:
        found = await rows(
            e, "SELECT failing_since FROM webhook_endpoints WHERE id = $1", UUID(failing["id"])
        )
        return found[0]["failing_since"] is not None

    await until(failed_once, what="a failed attempt")
    assert await e.dispatcher.disable_failing(force=True) == 0  # not 3 days yet
    await execute_raw(
        e.h.store,
        "UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 minute' "
        "WHERE id = $1",
        UUID(failing["id"]),
    )
    assert await e.dispatcher.disable_failing(force=True) == 1
    view = (await e.api.get(f"/v1/webhooks/{failing['id']}", headers=owner.headers)).json()
    assert view["enabled"] is False and "3 days" in view["disabled_reason"]
    pending = await rows(
        e,
        "SELECT count(*) AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status = "
        "'pending'",
        UUID(failing["id"]),
    )
    assert pending[0]["n"] == 0
    await e.receiver.wait_for(1, "alerts")
    told = e.receiver.received[-1].payload
    assert told["type"] == "webhook.disabled" and told["data"]["endpoint_id"] == failing["id"]
    # Disabled: new events are kept, not sent. Enabled again: it gets new ones, and those it
    # missed by a replay.
    missed_from = datetime.now(UTC) - timedelta(seconds=1)
    await emit(e, owner, 1)
    (missed,) = await rows(
        e,
        "SELECT m.id FROM webhook_messages m WHERE m.event_type = 'payment.completed' "
        "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id)",
    )
    enabled = await e.api.post(f"/v1/webhooks/{failing['id']}/enable", headers=owner.headers)
    assert enabled.json()["enabled"] is True and enabled.json()["failing_since"] is None
    e.receiver.modes["dead"] = "ok"
    await emit(e, owner, 1)
    await e.receiver.wait_for(1, "dead")
    replay = await e.api.post(
        f"/v1/webhooks/{failing['id']}/replay",
        json={"since": missed_from.isoformat()},
        headers=owner.headers,
    )
    assert replay.json()["queued"] >= 2  # the missed one, and others (receivers dedupe)

    async def recovered() -> bool:
        return missed["id"] in e.receiver.ids("dead")

    await until(recovered, what="the missed message replayed")


# --- the SSRF guard -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook/x",
        "http://localhost:{port}/hook/x",  # a name resolving to loopback
        "http://[::1]:{port}/hook/x",
        "http://[::ffff:127.0.0.1]:{port}/hook/x",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0:{port}/",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
    ],
)
async def test_registration_refuses_private_addresses_by_default(env: Env, url: str) -> None:
    e = env
    owner = await e.owner()
    answer = await e.h.http.post(  # the harness's app: no allowance
        "/v1/webhooks", json={"url": url.format(port=e.receiver.port)}, headers=owner.headers
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_webhook_url"
    assert (await rows(e, "SELECT count(*) AS n FROM webhook_endpoints"))[0]["n"] == 0


async def test_delivery_refuses_an_address_not_allowed_even_if_registered(env: Env) -> None:
    e = env
    for dispatcher in e.dispatchers:
        await dispatcher.stop()
    e.dispatchers.clear()
    strict = await e.start_dispatcher(AddressPolicy())
    owner = await e.owner()
    # Registered while loopback was allowed (or the name resolved elsewhere back then).
    hook = await e.register(owner, "inside")
    # A host name that resolves to loopback, registered without any check at all.
    now = datetime.now(UTC)
    named = WebhookEndpoint(
        uuid4(),
        owner.account.id,
        e.receiver.url("named", host="localhost"),
        (),
        new_secret(),
        "",
        now,
        now,
    )
    await e.h.store.create_webhook_endpoint(named)
    e.receiver.expect("named", named.secret)
    await emit(e, owner, 1)

    async def refused() -> bool:
        found = await rows(
            e,
            "SELECT count(DISTINCT endpoint_id) AS n FROM webhook_attempts "
            "WHERE error LIKE '%refused%'",
        )
        return bool(found[0]["n"] == 2)

    await until(refused, what="refused attempts")
    assert e.receiver.arrivals == {}  # nothing reached the receiver
    for endpoint_id in (hook["id"], str(named.id)):
        log = await e.api.get(f"/v1/webhooks/{endpoint_id}/attempts", headers=owner.headers)
        attempt = log.json()["attempts"][-1]  # the first (a retry may follow soon)
        assert "loopback" in attempt["error"] and attempt["status"] is None
    assert strict.delivered == 0


# --- the API's rules ---------------------------------------------------------------------------


async def test_endpoints_are_their_owners_only(env: Env) -> None:
    e = env
    owner = await e.owner(Role.PROVIDER, "mine")
    other = await e.owner(Role.AGENT, "theirs")
    hook = await e.register(owner, "own", description="orders", event_types=["payment.completed"])
    assert hook["secret"].startswith("whsec_") and hook["event_types"] == ["payment.completed"]
    base = f"/v1/webhooks/{hook['id']}"
    secret = await e.api.get(f"{base}/secret", headers=owner.headers)
    assert secret.json() == {"secret": hook["secret"]}
    assert "secret" not in (await e.api.get(base, headers=owner.headers)).json()
    for method, path, body in [
        ("GET", base, None),
        ("PATCH", base, {"description": "x"}),
        ("DELETE", base, None),
        ("GET", f"{base}/secret", None),
        ("GET", f"{base}/attempts", None),
        ("POST", f"{base}/replay", {"message_id": "msg_x"}),
        ("POST", f"{base}/enable", None),
    ]:
        answer = await e.api.request(method, path, json=body, headers=other.headers)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"] == "unknown_webhook"
    listed = await e.api.get("/v1/webhooks", headers=other.headers)
    assert listed.json() == {"webhooks": [], "has_more": False}
    operator = await e.owner(Role.OPERATOR, "ops")
    everyone = await e.api.get("/v1/webhooks", headers=operator.headers)
    assert [w["id"] for w in everyone.json()["webhooks"]] == [hook["id"]]
    for bad in [{"event_types": ["nope"]}, {"url": "ftp://x"}, {"colour": "red"}]:
        answer = await e.api.patch(base, json=bad, headers=owner.headers)
        assert answer.status_code == 400, answer.text
    patched = await e.api.patch(base, json={"event_types": []}, headers=owner.headers)
    assert patched.json()["event_types"] == [] and patched.json()["description"] == "orders"
    deleted = await e.api.delete(base, headers=owner.headers)
    assert deleted.json() == {"id": hook["id"], "deleted": True}
    assert (await e.api.get(base, headers=owner.headers)).status_code == 404


async def test_webhooks_from_the_command_line(env: Env, pg_dsn: str) -> None:
    e = env
    owner = await e.owner()
    hook = await e.register(owner, "cli")
    await emit(e, owner, 2)
    await e.receiver.wait_for(2, "cli")
    await delivered(e, 2)
    code, out, err = await payfirst(e.h, pg_dsn, "webhooks", "list")
    assert code == 0, err
    assert hook["id"] in out and e.receiver.url("cli") in out and "enabled" in out
    code, out, _ = await payfirst(e.h, pg_dsn, "webhooks", "list", "--account", str(uuid4()))
    assert code == 0 and hook["id"] not in out
    first = e.receiver.ids("cli")[0]
    code, out, err = await payfirst(
        e.h, pg_dsn, "webhooks", "replay", hook["id"], "--message", first
    )
    assert code == 0 and "1 deliveries queued" in out, err

    async def replayed() -> bool:
        return e.receiver.arrivals[first] == 2

    await until(replayed, what="the message replayed from the command line")
    code, out, err = await payfirst(
        e.h, pg_dsn, "webhooks", "replay", hook["id"], "--since", "2020-01-01T00:00"
    )
    assert code == 2 and "31 days" in err  # a range is 31 days at most
    code, _, err = await payfirst(e.h, pg_dsn, "webhooks", "replay", hook["id"])
    assert code == 2 and "--message" in err
    code, _, err = await payfirst(
        e.h, pg_dsn, "webhooks", "replay", str(uuid4()), "--message", first
    )
    assert code == 2 and "unknown_webhook" in err


async def test_held_and_refused_payments_of_an_agent(env: Env) -> None:
    """A payment above its payer's approval threshold: payment.awaiting_approval, then
    payment.queued when approved. A payment its policy refuses (inserted, then removed in
    the same transaction) is no event at all."""
    e = env
    agent = await e.owner(Role.AGENT, "careful agent")
    await e.register(agent, "agent")
    payer = e.h.payer(3)
    await execute_raw(
        e.h.store,
        "INSERT INTO agent_payers (address, account_id, verified_at) VALUES ($1, $2, now())",
        payer.address,
        agent.account.id,
    )
    await execute_raw(
        e.h.store,
        "INSERT INTO spending_policies (payer, approval_threshold) VALUES ($1, $2)",
        payer.address,
        {"*": "1"},
    )
    held = await e.h.buy(payer)
    assert held.status_code == 202, held.text
    payment = UUID(held.json()["paymentQueueId"])
    await e.receiver.wait_for(1, "agent")
    assert e.receiver.received[0].payload["type"] == "payment.awaiting_approval"
    assert await e.h.store.approve_payment(payment, agent.account.id)
    await e.h.settled()
    await e.receiver.wait_for(4, "agent")
    types = [r.payload["type"] for r in e.receiver.received]
    assert types[:2] == ["payment.awaiting_approval", "payment.queued"]
    assert sorted(types[2:]) == ["mint.completed", "payment.completed"]
    # Refused by the policy (max per payment below the price): a 402 and no event.
    await execute_raw(
        e.h.store,
        "UPDATE spending_policies SET approval_threshold = NULL, max_per_payment = $2 "
        "WHERE payer = $1",
        payer.address,
        {"*": "1"},
    )
    refused = await e.h.buy(payer)
    assert refused.status_code == 402, refused.text
    messages = await rows(e, "SELECT event_type FROM webhook_messages")
    assert len(messages) == 4


async def test_an_endpoint_deleted_mid_delivery_does_not_stall_the_others(env: Env) -> None:
    e = env
    owner = await e.owner()
    doomed = await e.register(owner, "doomed", mode="hold")
    await e.register(owner, "steady")
    await emit(e, owner, 1)

    async def holding() -> bool:  # steady's delivered, doomed's held
        return len(e.receiver.ids("steady")) == 1 and sum(e.receiver.in_flight.values()) == 1

    await until(holding, what="the doomed delivery in flight")
    gone = await e.api.delete(f"/v1/webhooks/{doomed['id']}", headers=owner.headers)
    assert gone.status_code == 200
    e.receiver.release()  # its answer comes back for a delivery that no longer exists
    await emit(e, owner, 2)
    await e.receiver.wait_for(3, "steady")
    await delivered(e, 3)
    assert await rows(e, "SELECT count(*) AS n FROM webhook_endpoints") == [{"n": 1}]


async def test_a_rotated_secret_signs_alongside_the_old_one_for_a_while(env: Env) -> None:
    e = env
    owner = await e.owner()
    hook = await e.register(owner, "old")
    old = hook["secret"]
    rotated = await e.api.post(f"/v1/webhooks/{hook['id']}/secret/rotate", headers=owner.headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    shown = await e.api.get(f"/v1/webhooks/{hook['id']}/secret", headers=owner.headers)
    assert shown.json() == {"secret": new}
    # The receiver still verifies with the old secret: both sign for 24 h.
    await emit(e, owner, 1)
    await e.receiver.wait_for(1, "old")
    # Then with the new one.
    e.receiver.secrets["old"] = new
    await emit(e, owner, 1)
    await e.receiver.wait_for(2, "old")
    # Once the old one expired, a receiver that never switched refuses (and nothing is lost:
    # the delivery is retried).
    await execute_raw(
        e.h.store,
        "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second'",
    )
    e.receiver.secrets["old"] = old
    await emit(e, owner, 1)

    async def refused() -> bool:
        return bool(e.receiver.refused)

    await until(refused, what="a refused signature")
    assert e.receiver.ids("old")[:2] == e.receiver.ids("old")  # nothing more received
